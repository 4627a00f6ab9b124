"""The reads behind `resync --dry-run` and the `resync --all` confirmation: the database opened
read-only (storage/read_only.py: no copy, no file created or changed) and Shopify's catalog read page
by page, or only counted on a store the real run would export in bulk (sync/resync_plan.py says why).
The decisions are pipeline/discover_plan.py's, the same the real run executes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.models import Product
from retouch.storage.models import ImageState
from retouch.storage.read_only import ReadOnlyStore, open_read_only

from ..bulk_decisions import use_bulk
from ..config import Settings
from ..pipeline.bulk import BULK_OPERATION
from ..pipeline.context import BASELINE_RECORDED, CURSOR
from ..pipeline.discover import REQUEUE_ON_RESYNC
from ..pipeline.discover_plan import Action, DiscoverOptions, plan_product
from ..resync_plan import Preview, per_product_estimate, tally, to_send, unread_to_send
from ..runtime import shopify_client

# Products read to learn how many images a product has, when a large store has no complete pass yet:
# one page of the catalog read (ShopifyClient.iter_products' default page).
SAMPLE_PRODUCTS = 16


async def preview(settings: Settings, product_ids: list[str] | None, *, include_baseline: bool, force: bool) -> Preview:
    """What `resync` with these switches would send, from reads alone."""
    store = open_read_only(settings.database_url)
    shopify = shopify_client(settings)
    try:
        return await _preview(settings, store, shopify, product_ids, include_baseline=include_baseline, force=force)
    finally:
        await shopify.aclose()
        if store is not None:
            store.close()


async def _preview(
    settings: Settings,
    store: ReadOnlyStore | None,
    shopify: ShopifyClient,
    product_ids: list[str] | None,
    *,
    include_baseline: bool,
    force: bool,
) -> Preview:
    meta = store.get_meta if store is not None else (lambda _key: None)
    # As the real run calls discovery (resync.py `_scan`): named products count as "--all".
    baseline_too = include_baseline or product_ids is not None
    requeue = REQUEUE_ON_RESYNC + ((ImageState.BASELINE,) if baseline_too else ())
    # --force first reverts the done images (done -> reverted), then requeues the reverted ones.
    requeue += (ImageState.REVERTED, ImageState.DONE) if force else ()
    first_run = meta(BASELINE_RECORDED) is None
    options = DiscoverOptions(
        first_run=first_run and product_ids is None and not baseline_too,
        new_only=settings.selection.new_only,
        exclude_tags=settings.selection.exclude_tags,
        rules=settings.rules,
        provider_name=settings.provider.name,
        requeue=requeue,
    )
    plan = Preview()
    if product_ids is not None:
        products = _named(shopify, product_ids)
    else:
        plan.products_in_store, _exact = await shopify.products_count(limit=None)
        plan.bulk = meta(BULK_OPERATION) is not None or use_bulk(plan.products_in_store, settings.shop.bulk_threshold)
        products = shopify.iter_products()
        cursor = meta(CURSOR)
        if plan.bulk and cursor:
            since = datetime.fromisoformat(cursor) - timedelta(seconds=settings.schedule.discover_overlap)
            products = shopify.iter_products(updated_since=since)  # what changed since the last complete pass
    planned: list[tuple[str, list[Action]]] = []
    read_rows: Counter[str] = Counter()
    read_ids: list[str] = []
    async for product in products:
        rows = store.images_by_media(m.id for m in product.media) if store else {}
        of_product = store.images_of_product(product.id) if store else []
        outputs = store.output_media_of_product(product.id) if store else set()
        planned.append((product.id, plan_product(product, rows, of_product, outputs, options)))
        read_rows.update(str(row.state) for row in of_product)
        read_ids.append(product.id)
        if plan.bulk and not meta(CURSOR) and len(read_ids) >= SAMPLE_PRODUCTS:
            break  # a sample: see SAMPLE_PRODUCTS
    await _close(products)
    plan.products_read = len(read_ids)
    plan.counts = tally(actions for _, actions in planned)
    waiting = store.images_in_state(ImageState.DISCOVERED, product_ids=read_ids) if store and read_ids else []
    plan.exact = to_send(waiting, planned)
    if not plan.bulk:
        return plan
    # A large store: the products not read are counted (sync/resync_plan.py).
    if meta(CURSOR):
        plan.counted = unread_to_send(store.counts_by_state() if store else {}, read_rows, requeue)
        plan.bound = "at most"
    else:
        # The sample only gives a rate: its images are not listed, the whole store is estimated.
        plan.counted = per_product_estimate(len(plan.exact), plan.products_read, plan.products_in_store or 0)
        plan.exact = []
        plan.baseline = per_product_estimate(plan.counts["baseline"], plan.products_read, plan.products_in_store or 0)
        plan.bound = "about"
    return plan


async def _named(shopify: ShopifyClient, product_ids: Sequence[str]) -> AsyncIterator[Product]:
    for product_id in product_ids:
        product = await shopify.get_product(product_id)
        if product is not None:
            yield product


async def _close(products: Any) -> None:
    close = getattr(products, "aclose", None)
    if close is not None:
        await close()
