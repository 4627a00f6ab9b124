"""Pre-flight: look at each original before it is sent, so that nothing is paid for an image that
can only fail, and an animation is never replaced by one enhanced frame.

The original is downloaded from Shopify's CDN and judged by `imaging.check_source`: not an image
(or truncated), a decompression bomb, or animated -> the image fails with that reason and the
rest of the batch goes on. A download that fails for now (CDN down, timeout) fails nothing: the
image waits a little and is looked at again. One refused for good (a 4xx, too big, not a download
URL) is looked up on the product: gone (skipped), replaced by the merchant (the new picture is
looked at instead), or unusable as it is (failed, `source_refused`). This costs one CDN download
per image, and those bytes are the backup: an original that passes is stored here (content-addressed,
fsync'd) and its digest recorded with the job, so write-back's backup step need not download it
again. (They are the bytes write-back would have fetched: the CDN URL names one version of the file;
a merchant's new picture has another URL, and write-back queues it anew instead of writing over it.)
"""

from __future__ import annotations

import asyncio

from retouch.plugin.shopify.errors import ShopifyError, ShopifyResponseError
from retouch.storage.backups import BackupError, BackupStore
from retouch.storage.models import Image, ImageState

from .. import imaging
from .context import Context
from .log_fields import log_fields
from .writeback import Skip, still_there

DOWNLOADS_AT_ONCE = 4
SOURCE_UNAVAILABLE = "source_unavailable"  # for now: the image waits and is looked at again
SOURCE_REFUSED = "source_refused"  # for good: the image fails


async def usable_sources(ctx: Context, images: list[Image]) -> list[Image]:
    """The images whose original can be sent, in their order; the others are failed or put back.
    Each usable one's `backup_sha256` is set (on the row object: submit records it with the job)."""
    gate = asyncio.Semaphore(DOWNLOADS_AT_ONCE)

    async def one(image: Image) -> bool:
        async with gate:
            return await _judge(ctx, image)

    # A task group, not gather: if one judgement raises (the database locked, say), the others are
    # cancelled with it instead of going on outside the step's lock.
    async with asyncio.TaskGroup() as group:
        verdicts = [group.create_task(one(image)) for image in images]
    return [image for image, usable in zip(images, verdicts) if usable.result()]


async def _judge(ctx: Context, image: Image) -> bool:
    log = ctx.log.bind(**log_fields(image))
    try:
        data, _ = await ctx.shopify.download(image.source_url or "")
    except ShopifyResponseError as exc:
        if exc.status is not None and not 400 <= exc.status < 500:
            return _wait(ctx, image, exc)
        # Refused for good (a 4xx, too big, not a download URL; the client retried what may pass).
        try:
            product = await still_there(ctx, image)
        except Skip as gone:
            ctx.store.transition(
                image.id, "skip", expect=ImageState.DISCOVERED, error_code=gone.code, error_message=gone.message
            )
            log.info("skipped", reason=gone.code)
            return False
        except ShopifyError as again:
            return _wait(ctx, image, again)
        media = next(m for m in product.media if m.id == image.media_id)
        if media.url and media.url != image.source_url:
            # The merchant put a new picture in this media since discovery: that one is the original.
            ctx.store.update_image(image.id, source_url=media.url)
            return _wait(ctx, image, exc)
        ctx.store.transition(
            image.id,
            "fail",
            expect=ImageState.DISCOVERED,
            error_code=SOURCE_REFUSED,
            error_message=f"the original could not be downloaded: {str(exc)[:300]}",
        )
        log.warning("failed", reason=SOURCE_REFUSED, message=str(exc)[:200])
        return False
    except ShopifyError as exc:
        return _wait(ctx, image, exc)
    try:
        # Decoding a big photo, hashing and an fsync take a while: off the event loop, in one hand-off
        # to a worker thread (each hand-off costs the loop a thread switch).
        image.backup_sha256, backup_failure = await asyncio.to_thread(_checked_backup, ctx.backups, data)
    except imaging.ImageDataError as exc:
        ctx.store.transition(
            image.id,
            "fail",
            expect=ImageState.DISCOVERED,
            error_code=f"source_{exc.code}",
            error_message=f"the original is {exc}",
        )
        log.warning("failed", reason=f"source_{exc.code}", message=str(exc))
        return False
    if backup_failure is not None:
        # No backup, no harm: write-back's backup step downloads it again, and says so if it fails too.
        log.warning("backup_deferred", reason=str(backup_failure)[:200])
    if image.error_code == SOURCE_UNAVAILABLE:
        ctx.store.update_image(image.id, error_code=None, error_message=None)
    return True


def _checked_backup(backups: BackupStore, data: bytes) -> tuple[str | None, BackupError | None]:
    """The original's check (raises `imaging.ImageDataError`), then its backup: (digest, None), or
    (None, why) when it could not be stored. Runs in a worker thread."""
    imaging.check_source(data)
    try:
        return backups.put(data), None
    except BackupError as exc:
        return None, exc


def _wait(ctx: Context, image: Image, exc: ShopifyError) -> bool:
    """A download that may work later (CDN down, timeout, 5xx): look again in a few ticks."""
    wait = 4 * ctx.settings.schedule.tick
    ctx.store.update_image(
        image.id,
        next_attempt_at=ctx.clock() + wait,
        error_code=SOURCE_UNAVAILABLE,
        error_message=f"the original could not be downloaded: {str(exc)[:300]}",
    )
    ctx.log.warning("source_unavailable", **log_fields(image), reason=str(exc)[:200], wait=wait)
    return False
