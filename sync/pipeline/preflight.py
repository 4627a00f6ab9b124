"""Pre-flight: look at each original before it is sent, so that nothing is paid for an image that
can only fail, and an animation is never replaced by one enhanced frame.

The original is downloaded from Shopify's CDN and judged by `imaging.check_source`: not an image
(or truncated), a decompression bomb, or animated -> the image fails with that reason and the
rest of the batch goes on. A download that fails (CDN down, timeout) fails nothing: the image
waits a little and is looked at again. This costs one CDN download per image; write-back
downloads the original again for its backup, later, when it may have changed.
"""

from __future__ import annotations

import asyncio

from retouch.plugin.shopify.errors import ShopifyError, ShopifyResponseError
from retouch.storage.models import Image, ImageState

from .. import imaging
from .context import Context
from .writeback import Skip, still_there

DOWNLOADS_AT_ONCE = 4
SOURCE_UNAVAILABLE = "source_unavailable"


async def usable_sources(ctx: Context, images: list[Image]) -> list[Image]:
    """The images whose original can be sent, in their order; the others are failed or put back."""
    gate = asyncio.Semaphore(DOWNLOADS_AT_ONCE)

    async def one(image: Image) -> bool:
        async with gate:
            return await _judge(ctx, image)

    verdicts = await asyncio.gather(*(one(image) for image in images))
    return [image for image, usable in zip(images, verdicts) if usable]


async def _judge(ctx: Context, image: Image) -> bool:
    log = ctx.log.bind(product_id=image.product_id, media_id=image.media_id)
    try:
        data, _ = await ctx.shopify.download(image.source_url or "")
    except ShopifyResponseError as exc:
        if exc.status is None or not 400 <= exc.status < 500:
            return _wait(ctx, image, exc)
        # The CDN refuses this URL for good: gone with its media (skipped), or unusable (failed).
        try:
            await still_there(ctx, image)
        except Skip as gone:
            ctx.store.update_image(image.id, state=ImageState.SKIPPED, error_code=gone.code, error_message=gone.message)
            log.info("skipped", reason=gone.code)
            return False
        except ShopifyError as again:
            return _wait(ctx, image, again)
        ctx.store.update_image(image.id, state=ImageState.FAILED, error_code="source_unavailable",
                               error_message=f"the original could not be downloaded: {str(exc)[:300]}")
        log.warning("failed", reason="source_unavailable", message=str(exc)[:200])
        return False
    except ShopifyError as exc:
        return _wait(ctx, image, exc)
    try:
        await asyncio.to_thread(imaging.check_source, data)  # decoding a big photo takes a while
    except imaging.ImageDataError as exc:
        ctx.store.update_image(image.id, state=ImageState.FAILED, error_code=f"source_{exc.code}",
                               error_message=f"the original is {exc}")
        log.warning("failed", reason=f"source_{exc.code}", message=str(exc))
        return False
    if image.error_code == SOURCE_UNAVAILABLE:
        ctx.store.update_image(image.id, error_code=None, error_message=None)
    return True


def _wait(ctx: Context, image: Image, exc: ShopifyError) -> bool:
    """A download that may work later (CDN down, timeout, 5xx): look again in a few ticks."""
    wait = 4 * ctx.settings.schedule.tick
    ctx.store.update_image(image.id, next_attempt_at=ctx.clock() + wait, error_code=SOURCE_UNAVAILABLE,
                           error_message=f"the original could not be downloaded: {str(exc)[:300]}")
    ctx.log.warning("source_unavailable", product_id=image.product_id, media_id=image.media_id,
                    reason=str(exc)[:200], wait=wait)
    return False
