"""The pipeline against the Shopify sandbox's hard cases: THROTTLED and 429 recovered, media that
end FAILED, a result whose format differs from the original's, products and media deleted in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import pipeline_settings, run_async
from retouch.storage.models import ImageState
from retouch.sync.pipeline import discover, submit, track
from retouch.sync.runtime import open_context, run_until_settled


def test_throttled_and_429_are_recovered(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=4, images_per_product=1, seed=10)
    settings = pipeline_settings(shop, provider, tmp_path)
    shop.add_fault(throttle=True)
    shop.add_fault(status=429, count=2, retry_after=0.2)
    shop.add_fault(status=503, count=1)

    async def scenario():
        async with open_context(settings) as ctx:
            counts = await discover(ctx)
            return counts, ctx.shopify.stats

    counts, client_stats = run_async(scenario())
    assert counts["queued"] == 4
    stats = shop.stats()
    assert stats["throttled"] >= 1
    assert stats["faults_served"] >= 3


def test_media_failed_after_write_is_recorded(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=1, images_per_product=1, seed=11)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            shop.add_fault(fail_media_processing=1, code="IMAGE_PROCESSING_FAILURE")
            await run_until_settled(ctx)
            return ctx.store.images_in_state(ImageState.FAILED)

    (failed,) = run_async(scenario())
    assert failed.error_code == "IMAGE_PROCESSING_FAILURE"
    assert "backup" in failed.error_message
    assert failed.backup_sha256 == products[0]["media"][0]["sha256"]  # the original is safe
    assert (tmp_path / "backups" / failed.backup_sha256[:2] / failed.backup_sha256).exists()


def test_png_result_for_jpeg_original_is_converted(shop, provider, tmp_path: Path) -> None:
    product = shop.add_product(title="Mug", tags=[], images=[{"filename": "mug.jpg", "alt": "Mug"}])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    assert run_async(scenario()) == {"done": 1}
    media = shop.product(product["legacy_id"])["media"][0]
    assert media["mime_type"] == "image/jpeg"
    assert media["filename"].endswith(".jpg")
    assert shop.stats()["operations"].get("FileUpdate", 0) >= 1


def test_deleted_product_and_media_in_flight_end_skipped(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=2, images_per_product=1, seed=12)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            images = ctx.store.images_in_state(ImageState.DISCOVERED)
            await submit(ctx)
            while len(ctx.store.images_in_state(ImageState.ENHANCED)) < 2:
                await asyncio.sleep(0.2)
                await track(ctx)
            # The merchant deletes one product and one media after the provider finished them.
            shop.delete_product(products[0]["legacy_id"])
            shop.delete_media(images[1].media_id.rsplit("/", 1)[-1])
            await run_until_settled(ctx)
            return {i.media_id: (i.state, i.error_code) for i in ctx.store.images_in_state(ImageState.SKIPPED)}

    skipped = run_async(scenario())
    assert sorted(code for _, code in skipped.values()) == ["media_deleted", "product_deleted"]


def test_excluded_tags_and_originals_still_processing(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=1, images_per_product=1, seed=13)
    settings = pipeline_settings(shop, provider, tmp_path)
    kept = shop.add_product(title="Gift card", tags=["No-Retouch"], images=[{"filename": "card.jpg", "alt": "card"}])

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            late = shop.add_image(
                shop.products()[0]["legacy_id"], filename="late.png", alt="late", processing=True
            )  # the merchant's upload is still processing
            if shop.search_lag_seconds:  # a search would not see it yet: read it by id, as its webhook does
                await discover(ctx, product_ids=[shop.products()[0]["id"]], live=True)
            else:
                await discover(ctx)
            row = ctx.store.image_by_media(late["id"])
            assert row is not None and row.source_url is None
            await run_until_settled(ctx)
            return ctx.store.counts_by_state(), ctx.store.image_by_media(late["id"])

    counts, late_row = run_async(scenario())
    assert counts == {"done": 2}
    assert late_row.state == "done" and late_row.source_url
    assert shop.product(kept["legacy_id"])["media"][0]["sha256"] == kept["media"][0]["sha256"]


def test_requests_per_image_stay_few(shop, provider, tmp_path: Path) -> None:
    """What an image costs in requests, counted (bench/overhead.py times it): pre-flight's download of
    the original is its backup (no second download), and the READY check of a round's written images
    is one `nodes` read, not one read per image. Per image: download the original, read the product,
    download the result, stage, upload, fileUpdate, marker."""
    shop.seed(products=2, images_per_product=5, seed=21)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            before = ctx.shopify.stats.requests
            await run_until_settled(ctx)
            return ctx.shopify.stats.requests - before, ctx.store.images_in_state(ImageState.DONE)

    requests, done = run_async(scenario())
    assert len(done) == 10
    operations = shop.stats()["operations"]
    assert "Media" not in operations and operations["MediaNodes"] < len(done)
    assert requests <= 7 * len(done) + operations["MediaNodes"], requests


def test_a_product_with_more_than_250_media_is_discovered_whole(shop, provider, tmp_path: Path) -> None:
    """Media come 10 to a product page, the rest in ProductMediaPage pages: all 300 are queued,
    in position order (more than one connection page of Shopify's maximum 250 could hold)."""
    from retouch.plugin.shopify.sandbox import product_photo

    tiny = product_photo(3, "JPEG", (32, 32))
    product = shop.add_product("Swatch book", images=[{"filename": f"s{i}.jpg", "data": tiny} for i in range(300)])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            counts = await discover(ctx)
            rows = ctx.store.images_of_product(product["id"])
            return counts, [(row.media_id, row.position) for row in rows]

    counts, rows = run_async(scenario())
    assert counts["queued"] == 300
    assert rows == [(media["id"], i) for i, media in enumerate(product["media"])]
    assert shop.stats()["operations"]["ProductMediaPage"] == 29  # 10 on the product's page, then 29 x 10
