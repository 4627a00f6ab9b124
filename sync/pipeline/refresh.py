"""Queued originals that were still processing in Shopify when discovered get their URL here."""

from __future__ import annotations

from retouch.storage.models import ImageState

from ..decisions import filename_of
from .context import Context
from .log_fields import log_fields

REFRESH_LIMIT = 50  # per cycle, so a burst of new uploads cannot starve the other steps


async def refresh_unready(ctx: Context) -> None:
    for image in ctx.store.images_in_state(ImageState.DISCOVERED, has_source=False, limit=REFRESH_LIMIT):
        media = await ctx.shopify.get_media(image.media_id)
        log = ctx.log.bind(**log_fields(image))
        if media is None:
            ctx.store.transition(
                image.id,
                "skip",
                expect=ImageState.DISCOVERED,
                error_code="media_deleted",
                error_message="the merchant deleted this media before it was sent",
            )
            log.info("skipped", reason="media_deleted")
        elif media.status == "FAILED":
            error = media.errors[0] if media.errors else None
            ctx.store.transition(
                image.id,
                "skip",
                expect=ImageState.DISCOVERED,
                error_code=error.code if error else "MEDIA_FAILED",
                error_message=error.message if error else "Shopify could not process the original",
            )
            log.info("skipped", reason="original_failed_in_shopify")
        elif media.status == "READY" and media.url:
            ctx.store.update_image(
                image.id,
                source_url=media.url,
                filename=filename_of(media.url),
                mime_type=media.mime_type,
                alt=media.alt,
            )
