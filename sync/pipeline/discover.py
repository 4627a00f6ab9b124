"""Discovery: read products from Shopify and turn new original images into image rows.

Incremental by default (products updated since the stored cursor, minus an overlap); `resync`
reads every product or the ones asked for. Whatever is ours — known to the DB, listed in the
product's marker, or named like our uploads — is recorded as output and never queued.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from retouch.plugin.shopify.models import Product
from retouch.storage.models import ImageState

from ..bulk_decisions import bulk_cursor, use_bulk
from ..decisions import Discovery, MediaFacts, classify_media, filename_of, is_excluded
from . import bulk
from ..rules import decision as rule_decision, facts_of, first_match
from .context import BASELINE_RECORDED, CURSOR, LAST_DISCOVERY, Context

# Images that a resync puts back in the queue (`include_baseline` adds the baseline).
REQUEUE_ON_RESYNC = (ImageState.FAILED, ImageState.SKIPPED)


async def discover(ctx: Context, *, product_ids: Sequence[str] | None = None, full: bool = False,
                   include_baseline: bool = False, include_reverted: bool = False, live: bool = False) -> Counter[str]:
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
        _discover_product(ctx, product, first_run=baseline_now, counts=counts, requeue=requeue,
                          complete=read is None or read.complete)
        counts["products"] += 1
    if read is not None:
        counts["bulk"] = 1
        if not read.complete:
            counts["partial"] = 1
            ctx.log.warning("discovery_partial", reason=read.reason, operation_id=read.operation.id,
                            note="the cursor and the baseline stay; the next full pass reads again")
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


def _discover_product(ctx: Context, product: Product, *, first_run: bool, counts: Counter[str],
                      requeue: tuple[ImageState, ...], complete: bool = True) -> None:
    """`complete`: the product's media list is whole. A partial bulk export may have lost some of
    a product's media lines, so there an absent media is not taken for deleted."""
    store = ctx.store
    known_outputs = store.output_media_of_product(product.id)
    rows = store.images_by_media(m.id for m in product.media)
    excluded = is_excluded(product.tags, ctx.settings.selection.exclude_tags)
    # [[rules]]: decided once per product, recorded with each image it queues (its intent).
    rule = first_match(ctx.settings.rules, facts_of(product)) if ctx.settings.rules else None
    ruled = None if rule is None else rule_decision(rule, ctx.provider_name)
    rule_skip = {} if rule is None or not rule.settings.skip else dict(
        state=ImageState.SKIPPED, error_code="rule_skip", error_message=f"rule {rule.label} skips this product")
    present: set[str] = set()
    new_rows: list[dict[str, Any]] = []  # inserted together once the product is read through
    for position, media in enumerate(product.media):
        present.add(media.id)
        facts = MediaFacts(
            media_id=media.id, is_image=media.content_type == "IMAGE",
            filename=filename_of(media.url or media.original_url),
            in_marker=media.id in product.marker_media_ids, known_output=media.id in known_outputs,
            tracked=media.id in rows,
        )
        decision = classify_media(facts, first_run=first_run, new_only=ctx.settings.selection.new_only,
                                  excluded=excluded)
        if decision is Discovery.OUTPUT:
            if media.id not in known_outputs:
                row: Any = rows.get(media.id)  # Any: the name holds a stored row here, a new row's fields below
                store.add_output(media.id, product.id, row.id if row else None)
            counts["output"] += 1
        elif decision in (Discovery.BASELINE, Discovery.QUEUE):
            state = ImageState.BASELINE if decision is Discovery.BASELINE else ImageState.DISCOVERED
            row = dict(
                media_id=media.id, product_id=product.id, product_legacy_id=str(product.legacy_id), state=state,
                source_url=media.url, filename=filename_of(media.url or media.original_url),
                mime_type=media.mime_type, alt=media.alt, position=position,
            )
            if state is ImageState.DISCOVERED and rule is not None:
                row.update(rule=ruled, **rule_skip)
            new_rows.append(row)
        elif decision is Discovery.EXCLUDED:
            counts["excluded"] += 1
        elif facts.tracked and rows[media.id].state in requeue and not excluded:
            row = rows[media.id]
            if rule_skip:
                if row.state != ImageState.SKIPPED or row.rule != ruled:
                    store.update_image(row.id, rule=ruled, **rule_skip)
                counts["skipped_by_rule"] += 1
                continue
            store.update_image(row.id, state=ImageState.DISCOVERED, source_url=media.url, job_id=None,
                               item_index=None, result_url=None, attempts=0, next_attempt_at=None,
                               error_code=None, error_message=None, position=position, alt=media.alt,
                               write_source=None, write_mode=None, rule=ruled)
            counts["requeued"] += 1
            ctx.log.info("requeued", product_id=product.id, media_id=media.id, was=row.state,
                         **({"rule": rule.label} if rule else {}))
    store.insert_images(new_rows)
    for row in new_rows:
        if row["state"] is ImageState.SKIPPED:
            counts["skipped_by_rule"] += 1
            ctx.log.info("skipped", product_id=product.id, media_id=row["media_id"], reason="rule_skip",
                         rule=rule.label if rule else None)
            continue
        counts["baseline" if row["state"] is ImageState.BASELINE else "queued"] += 1
        if row["state"] is ImageState.DISCOVERED:
            ctx.log.info("queued", product_id=product.id, media_id=row["media_id"],
                         **({"rule": rule.label} if rule else {}))
    # An original removed by the merchant before we sent it: nothing to do for it any more.
    for row in store.images_of_product(product.id) if complete else ():
        if row.media_id not in present and row.state == ImageState.DISCOVERED:
            store.update_image(row.id, state=ImageState.SKIPPED, error_code="media_deleted",
                               error_message="the merchant deleted this media before it was sent")
            counts["skipped"] += 1
            ctx.log.info("skipped", product_id=product.id, media_id=row.media_id, reason="media_deleted")
