"""Revert: put the backed-up originals back and forget that the media are ours.

`replace` mode: upload the original bytes (same file name, so Shopify's extension rule holds) and
replace the media in place again; `append` mode: delete the media we added. Either way the output
id leaves the marker and the DB, and the image ends `reverted`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from retouch.plugin.shopify.errors import ShopifyError
from retouch.storage.backups import BackupError
from retouch.storage.models import Image, ImageState

from ..decisions import extension_of, filename_of, mime_for
from .context import Context
from .log_fields import log_fields
from .writeback import Skip, remove_failed_media, set_marker

REVERTIBLE = (ImageState.WRITTEN, ImageState.DONE, ImageState.FAILED)
# With a daemon running, a `written` image is the daemon's (it is verifying it): leave it alone.
REVERTIBLE_BESIDE_DAEMON = (ImageState.DONE, ImageState.FAILED)


def revertible(
    ctx: Context, product_ids: Sequence[str] | None = None, *, states: Sequence[ImageState] = REVERTIBLE
) -> list[Image]:
    """The images `revert` would put back (for its count, dry run and confirmation)."""
    return [
        i for i in ctx.store.images_in_state(*states, product_ids=product_ids) if i.output_media_id and i.backup_sha256
    ]


async def revert(
    ctx: Context,
    product_ids: Sequence[str] | None = None,
    *,
    states: Sequence[ImageState] = REVERTIBLE,
    progress: Callable[[int], object] | None = None,
) -> tuple[int, list[str]]:
    """Revert the given products (or all); returns (reverted count, one line per failure).
    `progress(done)` is called after each image (the CLI's bar)."""
    images = revertible(ctx, product_ids, states=states)
    reverted, failures = 0, []
    for done, image in enumerate(images, 1):
        if progress is not None:
            progress(done - 1)
        try:
            await _revert_one(ctx, image)
            reverted += 1
        except (ShopifyError, BackupError, Skip, TimeoutError) as exc:
            failures.append(f"{image.product_id} {image.media_id}: {exc}")
            ctx.log.error("revert_failed", **log_fields(image), reason=str(exc))
    return reverted, failures


async def _revert_one(ctx: Context, image: Image) -> None:
    assert image.output_media_id and image.backup_sha256
    log = ctx.log.bind(**log_fields(image), output_media_id=image.output_media_id)
    product = await ctx.shopify.get_product(image.product_id)
    if product is None:
        raise Skip("product_deleted", "the product no longer exists")
    if image.backup_pruned_at is not None and image.output_media_id == image.media_id:
        raise Skip("original_pruned", pruned_message(product.title, image.backup_pruned_at))
    restored: dict[str, str] = {}
    if image.output_media_id == image.media_id:
        current = next((m for m in product.media if m.id == image.media_id), None)
        if current is None:
            raise Skip("media_deleted", "the merchant deleted this image")
        original = ctx.backups.get(image.backup_sha256)
        extension = extension_of(image.filename, image.mime_type)
        name = image.filename or f"original-{image.media_id.rsplit('/', 1)[-1]}.{extension}"
        if current.status == "FAILED":
            # Shopify failed our result; a failed media cannot be updated in place (NON_READY_STATE):
            # the original goes back as a new media in its place, and the failed one is removed.
            again = next(
                (
                    m
                    for m in product.media
                    if m.id != current.id and m.status != "FAILED" and filename_of(m.url or m.original_url) == name
                ),
                None,
            )  # a revert cut short
            position = [m.id for m in product.media].index(current.id)
            new_id = (
                again.id
                if again
                else await ctx.shopify.add_media(
                    product.id, await ctx.shopify.staged_upload(name, mime_for(extension), original), current.alt
                )
            )
            await ctx.shopify.move_media(product.id, new_id, position)
            await _wait_ready(ctx, new_id)
            await remove_failed_media(ctx, current.id)
            restored["media_id"] = new_id
        else:
            resource_url = await ctx.shopify.staged_upload(name, mime_for(extension), original)
            await ctx.shopify.replace_media_source(image.media_id, resource_url)
            await _wait_ready(ctx, image.media_id)
    elif any(m.id == image.output_media_id for m in product.media):
        await ctx.shopify.delete_media([image.output_media_id])
    ctx.store.remove_output(image.output_media_id)
    await set_marker(ctx, product, remove={image.output_media_id})
    # (the revert clears the output, the write and the error: lifecycle.py)
    ctx.store.transition(image.id, "revert", expect=image.state, reverted_at=time.time(), **restored)
    log.info("reverted")


def pruned_message(title: str, pruned_at: float) -> str:
    day = datetime.fromtimestamp(pruned_at, timezone.utc).date().isoformat()
    return (
        f"{title}: its original was pruned on {day} ([backup] keep); retouch has nothing to put back "
        "(upload the original again in Shopify if you have it)"
    )


async def _wait_ready(ctx: Context, media_id: str) -> None:
    deadline = ctx.clock() + ctx.settings.writeback.wait_ready
    while True:
        media = await ctx.shopify.get_media(media_id)
        if media is None:
            raise Skip("media_deleted", "the media no longer exists")
        if media.status == "READY" and media.url:
            return
        if media.status == "FAILED":
            raise ShopifyError(f"Shopify could not process the restored original ({media.errors})")
        if ctx.clock() > deadline:
            raise TimeoutError("the restored original did not become READY in time")
        await asyncio.sleep(0.5)
