"""Write-back in replace mode writes the images of one product together: one product read, one
stagedUploadsCreate, one fileUpdate and one marker update for all of them. When Shopify refuses a
shared call, the images go one at a time, so that only the image the refusal is about is held."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import pipeline_settings, run_async, until_enhanced
from retouch.plugin.providers.fetch import Fetched
from retouch.plugin.shopify.errors import ShopifyUserError, UserError
from retouch.storage.models import ImageState
from retouch.sync.runtime import open_context, run_until_settled


def operations(shop) -> dict[str, int]:
    return dict(shop.stats()["operations"])


def spent(before: dict[str, int], after: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def settle(settings, prepare=None):
    """Run the pipeline in-process until every image is enhanced (so that write-back finds them all
    in one round, as it does for a job's results), then `prepare(ctx)`, then on until every image is final."""

    async def scenario():
        async with open_context(settings) as ctx:
            await until_enhanced(ctx)
            if prepare is not None:
                prepare(ctx)
            await run_until_settled(ctx)
            return {image.media_id: image for image in ctx.store.images_in_state(*ImageState)}

    return run_async(scenario())


def test_the_images_of_one_product_share_each_shopify_write(shop, provider, tmp_path: Path) -> None:
    (product,) = shop.seed(products=1, images_per_product=5, seed=7)
    before = operations(shop)
    images = settle(pipeline_settings(shop, provider, tmp_path))
    after = operations(shop)
    assert sorted(images) == sorted(m["id"] for m in product["media"])
    assert all(image.state == ImageState.DONE for image in images.values())
    # Five images, one product: each write is one call, not five.
    assert spent(before, after, "StagedUploadsCreate") == 1
    assert spent(before, after, "FileUpdate") == 1
    assert spent(before, after, "MetafieldsSet") == 1
    # Every result is on the product, each in its own media.
    served = {m["id"]: m["sha256"] for m in shop.product(product["legacy_id"])["media"]}
    originals = {m["id"]: m["sha256"] for m in product["media"]}
    assert all(served[media_id] != originals[media_id] for media_id in originals)


def test_a_refused_shared_file_update_holds_only_the_image_it_is_about(shop, provider, tmp_path: Path) -> None:
    """The merchant deletes one media between our product read and the shared fileUpdate. This
    sandbox (default profile) refuses the whole call (FILE_DOES_NOT_EXIST names the missing id):
    that image is skipped, and the other four, neither answered as written nor named, are sent again
    one at a time. (The production profile applies them at once: test_writeback_partial.py.)"""
    (product,) = shop.seed(products=1, images_per_product=5, seed=8)
    doomed = product["media"][2]["id"]

    def prepare(ctx):
        shared = ctx.shopify.replace_media_sources

        async def merchant_deletes_first(sources):
            if len(sources) > 1:
                shop.delete_media(doomed.rsplit("/", 1)[-1])
            return await shared(sources)

        ctx.shopify.replace_media_sources = merchant_deletes_first

    before = operations(shop)
    images = settle(pipeline_settings(shop, provider, tmp_path), prepare)
    after = operations(shop)
    assert images[doomed].state == ImageState.SKIPPED and images[doomed].error_code == "media_deleted"
    others = [image for media_id, image in images.items() if media_id != doomed]
    assert len(others) == 4 and all(image.state == ImageState.DONE for image in others)
    # The refused shared call, then one each of the others; the production profile applied them at once.
    assert spent(before, after, "FileUpdate") == (1 if shop.profile == "production" else 1 + 4)


def test_a_refused_shared_staged_upload_goes_one_file_at_a_time(shop, provider, tmp_path: Path) -> None:
    (product,) = shop.seed(products=1, images_per_product=3, seed=9)
    refusals = []

    def prepare(ctx):
        shared = ctx.shopify.staged_uploads

        async def refuse(files, **options):
            if len(files) == 1:
                return await shared(files, **options)
            refusals.append(len(files))
            raise ShopifyUserError(
                "StagedUploadsCreate", [UserError(code=None, field=["input", "1"], message="Invalid mime type")]
            )

        ctx.shopify.staged_uploads = refuse

    before = operations(shop)
    images = settle(pipeline_settings(shop, provider, tmp_path), prepare)
    after = operations(shop)
    assert refusals == [3]
    assert len(images) == 3 and all(image.state == ImageState.DONE for image in images.values())
    assert spent(before, after, "StagedUploadsCreate") == 3  # one each, after the refusal
    assert spent(before, after, "FileUpdate") == 1  # the uploads went through: the write is shared again


def test_a_products_results_are_converted_in_one_thread_hand_off_and_a_bad_one_fails_alone(
    shop, provider, tmp_path: Path, monkeypatch
) -> None:
    """Converting each result into its original's format happens in a worker thread, all of one
    product's results in one hand-off (every hand-off costs the event loop a thread switch). A result
    that cannot be read fails its own image (`result_unreadable`); the others are written."""
    (product,) = shop.seed(products=1, images_per_product=4, seed=10)
    broken = product["media"][1]["id"]
    hand_offs: list[str] = []

    def prepare(ctx):
        real_to_thread, fetch = asyncio.to_thread, ctx.results.fetch
        result_url = ctx.store.image_by_media(broken).result_url

        async def counted(func, *args, **kwargs):
            hand_offs.append(func.__name__)
            return await real_to_thread(func, *args, **kwargs)

        async def garbled(url, *args, **kwargs):
            fetched = await fetch(url, *args, **kwargs)
            return Fetched(b"not a picture", fetched.media_type) if url == result_url else fetched

        monkeypatch.setattr(asyncio, "to_thread", counted)
        ctx.results.fetch = garbled

    images = settle(pipeline_settings(shop, provider, tmp_path), prepare)
    assert (images[broken].state, images[broken].error_code) == (ImageState.FAILED, "result_unreadable")
    others = [image for media_id, image in images.items() if media_id != broken]
    assert len(others) == 3 and all(image.state == ImageState.DONE for image in others)
    assert hand_offs.count("convert_all") == 1 and len(hand_offs) == 1
