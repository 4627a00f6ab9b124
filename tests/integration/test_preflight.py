"""Pre-flight, when the CDN refuses an original: gone for now (the image waits and is looked at
again), replaced by the merchant (the new picture is looked at instead), or refused for good
(the image fails with `source_refused`) — never an endless wait at the head of the queue. And a
job already on its way whose original is refused for good fails with that reason instead of
being sent again every tick."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import pipeline_settings, run_async
from retouch.plugin.providers import errors as provider_errors
from retouch.plugin.providers.base import TicketItem
from retouch.storage.backups import BackupError
from retouch.storage.models import ImageState, Job
from retouch.sync.pipeline import discover
from retouch.sync.pipeline.jobs import JobProgress
from retouch.sync.pipeline.preflight import SOURCE_REFUSED, SOURCE_UNAVAILABLE, usable_sources
from retouch.sync.runtime import open_context


def the_image(ctx):
    (image,) = ctx.store.images_in_state(ImageState.DISCOVERED)
    return image


def cdn_forgets(shop, url: str) -> None:
    """The CDN answers 404 for this file from now on, while the product still lists it."""
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    with shop._store.lock:
        del shop._store.filenames[filename]


def test_a_stale_url_is_replaced_by_the_products_current_one(shop, provider, tmp_path: Path) -> None:
    shop.add_product("mug", images=[{"filename": "mug.jpg"}])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            image = the_image(ctx)
            current = image.source_url
            base = current.split("/cdn/", 1)[0]
            ctx.store.update_image(image.id, source_url=f"{base}/cdn/files/gone-by-now.jpg?v=1")
            first = await usable_sources(ctx, [the_image(ctx)])
            after_first = the_image(ctx)
            second = await usable_sources(ctx, [after_first])
            return first, after_first, current, second

    first, image, current, second = run_async(scenario())
    assert first == [] and image.state == ImageState.DISCOVERED
    assert image.source_url == current and image.error_code == SOURCE_UNAVAILABLE
    assert [i.id for i in second] == [image.id]


def test_an_original_refused_for_good_fails_the_image_with_the_reason(shop, provider, tmp_path: Path) -> None:
    shop.add_product("mug", images=[{"filename": "mug.jpg"}])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            cdn_forgets(shop, the_image(ctx).source_url)
            usable = await usable_sources(ctx, [the_image(ctx)])
            return usable, ctx.store.images_in_state(*ImageState)

    usable, (image,) = run_async(scenario())
    assert usable == [] and (image.state, image.error_code) == (ImageState.FAILED, SOURCE_REFUSED)
    assert "HTTP 404" in image.error_message


def test_a_job_whose_original_is_refused_for_good_is_rejected_not_resent(shop, provider, tmp_path: Path) -> None:
    shop.add_product("mug", images=[{"filename": "mug.jpg"}])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            image = the_image(ctx)
            cdn_forgets(shop, image.source_url)
            item = TicketItem(
                0,
                image.product_id,
                image.product_legacy_id,
                image.media_id,
                image.source_url,
                image.filename,
                image.mime_type,
            )
            await JobProgress(
                ctx, Job(id=None, provider="aigenstudio", idempotency_key="k", state="pending")
            ).source_bytes(item)

    with pytest.raises(provider_errors.Rejected, match="HTTP 404"):
        run_async(scenario())


def test_each_original_is_checked_and_backed_up_in_one_thread_hand_off(
    shop, provider, tmp_path: Path, monkeypatch
) -> None:
    """Decoding, hashing and the fsync run in a worker thread, both in one hand-off per original
    (every hand-off costs the event loop a thread switch); the digest is recorded on the image."""
    shop.add_product("mug", images=[{"filename": "mug.jpg"}, {"filename": "mug-2.png"}, {"filename": "mug-3.webp"}])
    settings = pipeline_settings(shop, provider, tmp_path)
    hand_offs: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counted(func, *args, **kwargs):
        hand_offs.append(func.__name__)
        return await real_to_thread(func, *args, **kwargs)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            monkeypatch.setattr(asyncio, "to_thread", counted)
            usable = await usable_sources(ctx, ctx.store.images_in_state(ImageState.DISCOVERED))
            return usable, [ctx.backups.has(image.backup_sha256) for image in usable]

    usable, backed_up = run_async(scenario())
    assert len(usable) == 3 and backed_up == [True, True, True]
    assert hand_offs == ["_checked_backup"] * 3


def test_an_original_that_cannot_be_backed_up_yet_still_goes(shop, provider, tmp_path: Path) -> None:
    """A backup that fails in pre-flight (a full disk, say) holds nothing: the image goes without a
    digest, and write-back's backup step stores the original before anything in Shopify changes."""
    shop.add_product("mug", images=[{"filename": "mug.jpg"}])
    settings = pipeline_settings(shop, provider, tmp_path)

    def disk_full(data: bytes) -> str:
        raise BackupError("No space left on device")

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            ctx.backups.put = disk_full
            return await usable_sources(ctx, [the_image(ctx)])

    (image,) = run_async(scenario())
    assert image.backup_sha256 is None and image.state == ImageState.DISCOVERED
