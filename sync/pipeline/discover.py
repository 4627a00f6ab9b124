"""Discovery: read products from Shopify and turn new original images into image rows.

Incremental by default (products updated since the stored cursor, minus an overlap); `resync`
reads every product or the ones asked for. Whatever is ours — known to the DB, listed in the
product's marker, or named like our uploads — is recorded as output and never queued.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, timezone

from retouch.plugin.shopify.models import Product
from retouch.storage.models import ImageState

from ..decisions import Discovery, MediaFacts, classify_media, filename_of, is_excluded
from .context import BASELINE_RECORDED, CURSOR, LAST_DISCOVERY, Context

# Images that a resync puts back in the queue (`include_baseline` adds the baseline).
REQUEUE_ON_RESYNC = (ImageState.FAILED, ImageState.SKIPPED)


async def discover(ctx: Context, *, product_ids: Sequence[str] | None = None, full: bool = False,
                   include_baseline: bool = False, include_reverted: bool = False, live: bool = False) -> Counter[str]:
    """One discovery pass; returns counts per outcome (queue, baseline, output, requeued …).

    `live`: a Shopify webhook's pass over `product_ids` — the incremental pass's rules for just
    those products: nothing failed or skipped is requeued, and the cursor and the health check's
    last-discovery time stay with the full passes (the safety net)."""
    first_run = ctx.store.get_meta(BASELINE_RECORDED) is None
    counts: Counter[str] = Counter()
    newest: datetime | None = None
    resync = (full or product_ids is not None) and not live
    async for product in _products(ctx, product_ids=product_ids, full=full):
        if product is None:
            continue
        newest = max(newest, product.updated_at) if newest else product.updated_at
        requeue = REQUEUE_ON_RESYNC if resync else ()
        requeue += (ImageState.BASELINE,) if include_baseline else ()
        requeue += (ImageState.REVERTED,) if include_reverted else ()
        # A resync of the whole store before any baseline still records one (new_only), unless the
        # owner asked for the whole catalog (--all) or named products.
        baseline_now = first_run and product_ids is None and not include_baseline
        _discover_product(ctx, product, first_run=baseline_now, counts=counts, requeue=requeue)
        counts["products"] += 1
    if product_ids is None:
        # Only a pass over the whole store may move the cursor or close the baseline.
        if newest is not None:
            ctx.store.set_meta(CURSOR, newest.isoformat())
        if first_run:
            ctx.store.set_meta(BASELINE_RECORDED, datetime.now(timezone.utc).isoformat())
    if not live:
        ctx.store.set_meta(LAST_DISCOVERY, str(ctx.clock()))
    ctx.log.info("discovered", **{k: v for k, v in counts.items() if v}, **({"trigger": "webhook"} if live else {}))
    return counts


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
                      requeue: tuple[ImageState, ...]) -> None:
    store = ctx.store
    known_outputs = store.output_media_of_product(product.id)
    rows = store.images_by_media(m.id for m in product.media)
    excluded = is_excluded(product.tags, ctx.settings.selection.exclude_tags)
    present: set[str] = set()
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
                row = rows.get(media.id)
                store.add_output(media.id, product.id, row.id if row else None)
            counts["output"] += 1
        elif decision in (Discovery.BASELINE, Discovery.QUEUE):
            state = ImageState.BASELINE if decision is Discovery.BASELINE else ImageState.DISCOVERED
            store.insert_image(
                media_id=media.id, product_id=product.id, product_legacy_id=str(product.legacy_id), state=state,
                source_url=media.url, filename=filename_of(media.url or media.original_url),
                mime_type=media.mime_type, alt=media.alt, position=position,
            )
            counts["baseline" if state is ImageState.BASELINE else "queued"] += 1
            if state is ImageState.DISCOVERED:
                ctx.log.info("queued", product_id=product.id, media_id=media.id)
        elif decision is Discovery.EXCLUDED:
            counts["excluded"] += 1
        elif facts.tracked and rows[media.id].state in requeue and not excluded:
            row = rows[media.id]
            store.update_image(row.id, state=ImageState.DISCOVERED, source_url=media.url, job_id=None,
                               item_index=None, result_url=None, attempts=0, next_attempt_at=None,
                               error_code=None, error_message=None, position=position, alt=media.alt,
                               write_source=None)
            counts["requeued"] += 1
            ctx.log.info("requeued", product_id=product.id, media_id=media.id, was=row.state)
    # An original removed by the merchant before we sent it: nothing to do for it any more.
    for row in store.images_of_product(product.id):
        if row.media_id not in present and row.state == ImageState.DISCOVERED:
            store.update_image(row.id, state=ImageState.SKIPPED, error_code="media_deleted",
                               error_message="the merchant deleted this media before it was sent")
            counts["skipped"] += 1
            ctx.log.info("skipped", product_id=product.id, media_id=row.media_id, reason="media_deleted")
