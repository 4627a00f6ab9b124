"""Discovery: read products from Shopify and turn new original images into image rows.

Incremental by default (products updated since the stored cursor, minus an overlap); `resync`
reads every product or the ones asked for. Whatever is ours — known to the DB, listed in the
product's marker, or named like our uploads — is recorded as output and never queued.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from retouch.plugin.shopify.models import Product
from retouch.storage.models import ImageState

from ..bulk_decisions import bulk_cursor, use_bulk
from . import bulk
from .context import BASELINE_RECORDED, CURSOR, LAST_DISCOVERY, Context
from .discover_plan import (
    Action,
    DiscoverOptions,
    Excluded,
    MediaGone,
    NewRow,
    RecordOutput,
    Requeue,
    RuleSkip,
    plan_product,
)

# Images that a resync puts back in the queue (`include_baseline` adds the baseline).
REQUEUE_ON_RESYNC = (ImageState.FAILED, ImageState.SKIPPED)


async def discover(
    ctx: Context,
    *,
    product_ids: Sequence[str] | None = None,
    full: bool = False,
    include_baseline: bool = False,
    include_reverted: bool = False,
    live: bool = False,
) -> Counter[str]:
    """One discovery pass; returns counts per outcome (queue, baseline, output, requeued …), and
    `bulk` (1 when the pass read a bulk export), `partial` (1 when that export was incomplete).

    `live`: a Shopify webhook's pass over `product_ids` — the incremental pass's rules for just
    those products: nothing failed or skipped is requeued, and the cursor and the health check's
    last-discovery time stay with the full passes (the safety net).

    A pass over the whole store with no cursor to start from (the first run, `resync --all`) reads
    a bulk export when the store has `[shop] bulk_threshold` products or more (pipeline/bulk.py).
    Partial export data is processed, but such a pass moves no cursor, closes no baseline and
    takes no absent media for deleted."""
    first_run = ctx.store.get_meta(BASELINE_RECORDED) is None
    counts: Counter[str] = Counter()
    newest: datetime | None = None
    resync = (full or product_ids is not None) and not live
    read = await _bulk_export(ctx) if product_ids is None and not live and (full or _no_cursor(ctx)) else None
    products = _staged(read) if read is not None else _products(ctx, product_ids=product_ids, full=full)
    async for product in products:
        if product is None:
            continue
        newest = max(newest, product.updated_at) if newest else product.updated_at
        requeue: tuple[ImageState, ...] = REQUEUE_ON_RESYNC if resync else ()
        requeue += (ImageState.BASELINE,) if include_baseline else ()
        requeue += (ImageState.REVERTED,) if include_reverted else ()
        # A resync of the whole store before any baseline still records one (new_only), unless the
        # owner asked for the whole catalog (--all) or named products.
        baseline_now = first_run and product_ids is None and not include_baseline
        _discover_product(
            ctx, product, first_run=baseline_now, counts=counts, requeue=requeue, complete=read is None or read.complete
        )
        counts["products"] += 1
    if read is not None:
        counts["bulk"] = 1
        if not read.complete:
            counts["partial"] = 1
            ctx.log.warning(
                "discovery_partial",
                reason=read.reason,
                operation_id=read.operation.id,
                note="the cursor and the baseline stay; the next full pass reads again",
            )
        else:
            newest = bulk_cursor(newest, read.operation.created_at)
        read.finish()
    if product_ids is None and (read is None or read.complete):
        # Only a complete pass over the whole store may move the cursor or close the baseline.
        if newest is not None:
            ctx.store.set_meta(CURSOR, newest.isoformat())
        if first_run:
            ctx.store.set_meta(BASELINE_RECORDED, datetime.now(timezone.utc).isoformat())
    if not live:
        ctx.store.set_meta(LAST_DISCOVERY, str(ctx.clock()))
    ctx.log.info("discovered", **{k: v for k, v in counts.items() if v}, **({"trigger": "webhook"} if live else {}))
    return counts


def _no_cursor(ctx: Context) -> bool:
    return ctx.store.get_meta(CURSOR) is None


async def _bulk_export(ctx: Context) -> bulk.BulkRead | None:
    """The staged export for a whole-store pass, or None to page: a store below the threshold, or
    an export that could not be had (pipeline/bulk.py says when). An export this database started
    earlier is resumed without counting again."""
    count = None
    if ctx.store.get_meta(bulk.BULK_OPERATION) is None:
        threshold = ctx.settings.shop.bulk_threshold
        # Counted in full (no limit; same 10 points): the total also aims the export's polls.
        count, _exact = await ctx.shopify.products_count(limit=None)
        if not use_bulk(count, threshold):
            return None
        ctx.log.info("bulk_chosen", products=count, threshold=threshold)
    return await bulk.export(ctx, products=count)


async def _staged(read: bulk.BulkRead) -> AsyncIterator[Product | None]:
    for product in read.products():
        yield product


async def _products(ctx: Context, *, product_ids: Sequence[str] | None, full: bool) -> AsyncIterator[Product | None]:
    if product_ids is not None:
        for product_id in product_ids:
            product = await ctx.shopify.get_product(product_id)
            if product is None:
                ctx.log.warning("product_missing", product_id=product_id)
            yield product
        return
    since = None
    cursor = ctx.store.get_meta(CURSOR)
    if cursor and not full:
        since = datetime.fromisoformat(cursor) - timedelta(seconds=ctx.settings.schedule.discover_overlap)
    async for product in ctx.shopify.iter_products(updated_since=since):
        yield product


def _discover_product(
    ctx: Context,
    product: Product,
    *,
    first_run: bool,
    counts: Counter[str],
    requeue: tuple[ImageState, ...],
    complete: bool = True,
) -> None:
    """`complete`: the product's media list is whole. A partial bulk export may have lost some of
    a product's media lines, so there an absent media is not taken for deleted."""
    store = ctx.store
    options = DiscoverOptions(
        first_run=first_run,
        new_only=ctx.settings.selection.new_only,
        exclude_tags=ctx.settings.selection.exclude_tags,
        rules=ctx.settings.rules,
        provider_name=ctx.provider_name,
        requeue=requeue,
        complete=complete,
    )
    rows = store.images_by_media(m.id for m in product.media)
    _keep_title(ctx, product, rows.values())
    actions = plan_product(
        product,
        rows,
        store.images_of_product(product.id) if complete else (),
        store.output_media_of_product(product.id),
        options,
    )
    _apply(ctx, product, actions, counts)


def _apply(ctx: Context, product: Product, actions: list[Action], counts: Counter[str]) -> None:
    """Discovery's executor: carry out one product's plan (pipeline/discover_plan.py), count and log it.
    Every state change is a compare-and-set transition from the state the plan saw (storage/lifecycle.py)."""
    store = ctx.store
    new_rows: list[NewRow] = []  # inserted together once the product is read through
    for action in actions:
        if isinstance(action, RecordOutput):
            if action.new:
                store.add_output(action.media_id, product.id, action.image_id)
            counts["output"] += 1
        elif isinstance(action, NewRow):
            new_rows.append(action)
        elif isinstance(action, Excluded):
            counts["excluded"] += 1
        elif isinstance(action, RuleSkip):
            if action.fields is not None:
                store.transition(action.image_id, "skip", expect=action.was, **action.fields)
            counts["skipped_by_rule"] += 1
        elif isinstance(action, Requeue):
            # (the requeue clears the job, its result, the write and the step's errors: lifecycle.py)
            if not store.transition(action.image_id, "requeue", expect=action.was, **action.fields):
                ctx.log.debug(
                    "not_moved",
                    product_id=product.id,
                    media_id=action.media_id,
                    transition="requeue",
                    expected=action.was,
                )
                continue
            counts["requeued"] += 1
            ctx.log.info(
                "requeued",
                product_id=product.id,
                product_title=product.title,
                media_id=action.media_id,
                was=action.was,
                **({"rule": action.rule_label} if action.rule_label else {}),
            )
    store.insert_images([action.fields for action in new_rows])
    for action in new_rows:
        if action.state is ImageState.SKIPPED:
            counts["skipped_by_rule"] += 1
            ctx.log.info("skipped", **_named(action.fields), reason="rule_skip", rule=action.rule_label)
            continue
        counts["baseline" if action.state is ImageState.BASELINE else "queued"] += 1
        if action.state is ImageState.DISCOVERED:
            ctx.log.info(
                "queued", **_named(action.fields), **({"rule": action.rule_label} if action.rule_label else {})
            )
    for action in actions:
        if isinstance(action, MediaGone):
            store.transition(action.image_id, "skip", expect=ImageState.DISCOVERED, **action.fields)
            counts["skipped"] += 1
            ctx.log.info(
                "skipped",
                product_id=product.id,
                product_title=product.title,
                media_id=action.media_id,
                reason="media_deleted",
            )


def _named(row: dict[str, Any]) -> dict[str, Any]:
    """A new row's log fields (as `log_fields` gives a stored image's)."""
    return {key: row[key] for key in ("product_id", "media_id", "product_title", "filename") if row.get(key)}


def _keep_title(ctx: Context, product: Product, rows: Iterable[Any]) -> None:
    """A renamed product: its images carry the new title (messages name products by title). The rows are
    read anyway; only a title that changed costs a write."""
    renamed = [row for row in rows if row.product_title != product.title]
    if renamed:
        ctx.store.update_images({row.id: {"product_title": product.title} for row in renamed})
        for row in renamed:
            row.product_title = product.title  # the pass logs these rows as read
