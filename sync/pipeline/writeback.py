"""Write back: keep the original, put the result on the product, mark it as ours, wait for READY.

    enhanced ──backup──► backed_up ──write──► written ──verify──► done

`backup` stores the original bytes (content-addressed) before anything in Shopify changes.
`write` records its intent (`write_source`) before the mutation; after a crash, `replace` simply
writes again (same bytes, same media), and `append` first looks for the media it may already
have added (our upload's file name) so the product never gets a duplicate.

A media that Shopify failed to process (an earlier write of ours ended FAILED) cannot be updated
in place: `fileUpdate` answers NON_READY_STATE. Then `replace` works like `append` at the failed
media's own position, and once the new media is READY the failed one is deleted and the image row
follows the picture to its new media id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from retouch.plugin.providers.base import result_link_expired
from retouch.plugin.providers.errors import ProviderError
from retouch.plugin.providers.fetch import FetchError
from retouch.plugin.shopify.errors import ShopifyError, ShopifyResponseError, ShopifyUserError
from retouch.plugin.shopify.file_update import FileRow
from retouch.plugin.shopify.models import Media, Product
from retouch.storage import lifecycle
from retouch.storage.backups import BackupError
from retouch.storage.models import Image, ImageState

from .. import imaging
from ..decisions import (
    backoff,
    extension_of,
    filename_of,
    is_output_filename,
    marker_ids_after,
    mime_for,
    output_filename,
    pillow_format,
    verify_delay,
)
from .context import Context
from .jobs import JobProgress, ticket_for
from .log_fields import log_fields
from .review_step import auto_approve, hold_for_review, keep_result, kept_result, waits_for_owner

# Retries of one write-back step (backoff capped at 10 minutes: a few hours) before it fails.
MAX_ATTEMPTS = 25

# Codes Shopify gives when the media or product is gone: the merchant deleted it while in flight.
GONE_CODES = {"FILE_DOES_NOT_EXIST", "REFERENCE_TARGET_DOES_NOT_EXIST", "PRODUCT_DOES_NOT_EXIST", "NOT_FOUND"}


class Skip(Exception):
    """The product or media is gone: the image ends `skipped` with this reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Fail(Exception):
    """This image cannot be written: it ends `failed` with this reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Held(Exception):
    """Shopify refused this image's row of a shared write for a reason a later try may not meet (a
    file still processing, a source it could not use): the image keeps its state, with this reason,
    and is written again later (a fresh upload), until MAX_ATTEMPTS."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# Codes of a fileUpdate row that no later try changes: the image fails at once instead of being held.
PERMANENT_ROW_CODES = {
    "INVALID_FILENAME_EXTENSION",
    "ALT_VALUE_LIMIT_EXCEEDED",
    "UNSUPPORTED_MEDIA_TYPE_FOR_FILENAME_UPDATE",
    "CANNOT_SPECIFY_SOURCE_AND_VERSION_ID",
}


# Products written to at once. The images of one product always go together, one step after another:
# they share its media order and its marker metafield.
PRODUCTS_AT_ONCE = 4

# The states write-back moves on: backup -> write -> verify.
WRITE_BACK_STATES = (ImageState.ENHANCED, ImageState.BACKED_UP, ImageState.WRITTEN)

# What a step may raise for one image: its answer is recorded on the image (`_failed`).
STEP_ERRORS = (Skip, Fail, Held, ShopifyError, BackupError, ProviderError)


async def write_back(ctx: Context) -> int:
    """Advance every image that is due by one step; returns how many moved."""
    approved = auto_approve(ctx)  # [review] auto_approve_after: those approved are written below
    due = ctx.store.images_in_state(*WRITE_BACK_STATES, due_by=ctx.clock())
    by_product: dict[str, list[Image]] = {}
    for image in due:
        by_product.setdefault(image.product_id, []).append(image)
    seen = await _written_media(ctx, [i for i in due if i.state == ImageState.WRITTEN])
    gate = asyncio.Semaphore(PRODUCTS_AT_ONCE)

    async def one_product(images: list[Image]) -> int:
        async with gate:
            moved = await _back_up_or_verify(
                ctx, [image for image in images if image.state != ImageState.BACKED_UP], seen
            )
            to_write = [image for image in images if image.state == ImageState.BACKED_UP]
            return moved + (await write_product(ctx, to_write) if to_write else 0)

    # A TaskGroup, not gather: if one product's step fails unexpectedly, the others are cancelled
    # with it instead of running on outside the daemon's step lock.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one_product(images)) for images in by_product.values()]
    return approved + sum(task.result() for task in tasks)


async def _written_media(ctx: Context, written: list[Image]) -> dict[str, Media | None]:
    """The current state of every written image's media, read together (one request per 250, not
    one each). Empty when that read fails: each image then asks on its own, and meets the failure
    on its own retry path."""
    if not written:
        return {}
    try:
        return await ctx.shopify.get_media_many(i.output_media_id or i.media_id for i in written)
    except ShopifyError as exc:
        ctx.log.info("media_read_one_by_one", reason=str(exc)[:200])
        return {}


async def _back_up_or_verify(ctx: Context, images: list[Image], seen: Mapping[str, Media | None] | None) -> int:
    """The backup step of the `enhanced` images and the verify step of the `written` ones, one image
    after another; the changes of those that moved are recorded together. Returns how many moved.
    `seen`: media states read for this round (the verify step uses them)."""
    outcomes: list[tuple[Image, dict[str, Any]]] = []
    moved = 0
    for image in images:
        step = "backup" if image.state == ImageState.ENHANCED else "verify"
        try:
            changes = await (_backup(ctx, image) if step == "backup" else _verify(ctx, image, seen))
        except STEP_ERRORS as exc:
            moved += _failed(ctx, image, step, exc)
            continue
        if changes is not None:
            outcomes.append((image, changes))
    return moved + _moved(ctx, outcomes)


async def _settle(ctx: Context, image: Image, step: str, work: Awaitable[dict[str, Any] | None]) -> bool:
    """Run one image's step and record its outcome: its changes, or its answer (`_failed`)."""
    try:
        changes = await work
    except STEP_ERRORS as exc:
        return _failed(ctx, image, step, exc)
    return _moved(ctx, [(image, changes)] if changes is not None else []) > 0


def _failed(ctx: Context, image: Image, step: str, exc: BaseException) -> bool:
    """Record a step's failure on the image; True when that ends the image (skipped or failed)."""
    log = ctx.log.bind(**log_fields(image), job_id=image.job_id)
    if isinstance(exc, Skip):
        ctx.store.transition(image.id, "skip", expect=image.state, error_code=exc.code, error_message=exc.message)
        log.info("skipped", reason=exc.code)
        return True
    if isinstance(exc, Fail):
        ctx.store.transition(image.id, "fail", expect=image.state, error_code=exc.code, error_message=exc.message)
        log.warning("failed", reason=exc.code, message=exc.message)
        return True
    # Transient, or a store that answers oddly: the image keeps its state and tries again later,
    # until it has tried for hours; then it fails with the reason (resync brings it back).
    attempts = image.attempts + 1
    code = exc.code if isinstance(exc, Held) else exc.__class__.__name__
    if attempts >= MAX_ATTEMPTS:
        ctx.store.transition(
            image.id, "fail", expect=image.state, attempts=attempts, error_code=code, error_message=str(exc)[:500]
        )
        log.warning("failed", reason=code, message=str(exc)[:200], attempts=attempts)
        return True
    delay = backoff(attempts, base=ctx.settings.schedule.tick, cap=600)
    ctx.store.update_image(
        image.id, attempts=attempts, next_attempt_at=ctx.clock() + delay, error_code=code, error_message=str(exc)[:500]
    )
    log.warning("writeback_retry", step=step, reason=str(exc)[:200], attempt=attempts, wait=round(delay, 1))
    return False


def _moved(ctx: Context, outcomes: list[tuple[Image, dict[str, Any]]]) -> int:
    """Record each image's changes, all in one transaction; returns how many moved. Each is the
    transition from the state the step read the image in (a compare-and-set): an image that moved
    on meanwhile (a revert beside the daemon) is left as it is."""
    moves = [lifecycle.move_from(image.id, image.state, changes) for image, changes in outcomes]
    moved = set(ctx.store.transitions(moves))
    for (image, changes), move in zip(outcomes, moves, strict=True):
        if image.id not in moved:
            ctx.log.debug(
                "not_moved", **log_fields(image), job_id=image.job_id, transition=move.name, expected=image.state
            )
            continue
        ctx.log.info(
            changes.get("state", "progress"),
            **log_fields(image),
            job_id=image.job_id,
            output_media_id=changes.get("output_media_id"),
        )
    return len(moved)


async def _backup(ctx: Context, image: Image) -> dict[str, Any]:
    done = {"state": ImageState.BACKED_UP, "attempts": 0, "error_code": None, "error_message": None}
    if image.backup_sha256 and ctx.backups.path_for(image.backup_sha256).exists():
        # Pre-flight stored the original when it looked at it (`_write` verifies the bytes before
        # anything in Shopify changes).
        return done
    if not image.source_url:
        raise Fail("no_source", "the original's URL is unknown")
    try:
        data, _ = await ctx.shopify.download(image.source_url)
    except ShopifyResponseError:
        await still_there(ctx, image)  # a CDN 404 usually means the merchant deleted it
        raise
    try:
        imaging.sniff_format(data)
    except imaging.ImageDataError as exc:
        raise Fail("original_unreadable", f"the original is {exc}") from None
    # A new backup: a prune date of an earlier one (an image enhanced again) no longer applies.
    return {**done, "backup_sha256": ctx.backups.put(data), "backup_pruned_at": None}


async def _keep_for_review(ctx: Context, image: Image) -> int:
    """[review]: the result is fetched, checked and converted exactly as the write would do it, and
    kept (review_step.py); the image then waits for the owner. Nothing in Shopify changes."""
    # A fresh download: a result kept for an earlier attempt is not this one.
    data = await _converted_result(ctx, image, extension_of(image.filename, image.mime_type), fresh=True)
    try:
        sha256 = keep_result(ctx, data)
    except BackupError as exc:
        raise BackupError(f"cannot keep the result for review: {exc}") from None
    return int(hold_for_review(ctx, image, sha256))


async def still_there(ctx: Context, image: Image) -> Product:
    """The image's product, read fresh; Skip when the product or the media is gone."""
    product = await _read_product(ctx, image.product_id)
    _media_on(product, image)
    return product


async def _read_product(ctx: Context, product_id: str) -> Product:
    product = await ctx.shopify.get_product(product_id)
    if product is None:
        raise Skip("product_deleted", "the merchant deleted the product while it was being enhanced")
    return product


def _media_on(product: Product, image: Image) -> Media:
    media = next((m for m in product.media if m.id == image.media_id), None)
    if media is None:
        raise Skip("media_deleted", "the merchant deleted this image while it was being enhanced")
    return media


def _writable_original(ctx: Context, image: Image, product: Product) -> Media | dict[str, Any] | None:
    """The image's media as the product was just read, when the result may be written over it now.
    Otherwise what becomes of the image instead: changes (the merchant put a new picture there, which
    is queued anew) or None (a new file is being processed in it: look again soon)."""
    if not ctx.backups.has(image.backup_sha256 or ""):
        raise BackupError("the original's backup is missing; not touching Shopify without it")
    original = _media_on(product, image)
    if original.status in ("UPLOADED", "PROCESSING"):
        # A new file is going into this media right now (the merchant's, or a write of ours from
        # before a crash): look again once Shopify has processed it.
        ctx.store.update_image(image.id, next_attempt_at=ctx.clock() + 2 * ctx.settings.schedule.tick)
        return None
    if _merchant_replaced(image, original.url):
        return _requeue_new_picture(ctx, image, original)
    return original


def write_mode(ctx: Context, image: Image) -> str:
    """The mode of this image's write: the one recorded with its write intent once the write has
    started (a SIGHUP that changes `[writeback] mode` must not change a write half done: append's
    new media would be taken for a replaced one, and the original queued again); until then, the
    config's."""
    return image.write_mode or ctx.settings.writeback.mode


async def write_product(ctx: Context, images: list[Image]) -> int:
    """The write step for images of one product (all `backed_up`); returns how many moved.

    In replace mode they go together: one product read, one stagedUploadsCreate, one fileUpdate
    and one marker update serve them all. A mutation costs Shopify's bucket the same for one input
    as for 250, and every request costs this process CPU. Each image still meets its own answer: a
    shared call that Shopify refuses (a user error names one input) is made again one image at a
    time. Append mode, and a media Shopify failed to process (it cannot be updated in place), go
    one image at a time (`_write`): each new media shifts the positions the next is placed by.
    The shared fileUpdate is not all-or-nothing: Shopify applies the valid rows and names the bad
    ones, so only the images it names are held or refused (`_replace_sources`).
    A result kept for review and not approved is never written: it goes to `awaiting_review`."""
    held = [image for image in images if waits_for_owner(ctx.settings.review.on, image)]
    if held:
        images = [image for image in images if image not in held]
        moved = 0
        for image in held:
            try:
                moved += await _keep_for_review(ctx, image)
            except STEP_ERRORS as exc:
                moved += _failed(ctx, image, "review", exc)
        return moved + (await write_product(ctx, images) if images else 0)
    alone = [image for image in images if write_mode(ctx, image) != "replace"]
    moved = sum([await _settle(ctx, image, "write", _write(ctx, image)) for image in alone])
    images = [image for image in images if write_mode(ctx, image) == "replace"]
    if not images:
        return moved
    try:
        product = await _read_product(ctx, images[0].product_id)
    except STEP_ERRORS as exc:
        return moved + sum(_failed(ctx, image, "write", exc) for image in images)
    downloaded: list[tuple[Image, str, bytes]] = []  # (image, the original's extension, the provider's result)
    for image in images:
        try:
            original = _writable_original(ctx, image, product)
            if not isinstance(original, Media):
                moved += _moved(ctx, [(image, original)] if original is not None else [])
            elif original.status == "FAILED":
                moved += await _settle(ctx, image, "write", _write(ctx, image))
            else:
                extension = extension_of(image.filename, image.mime_type)
                downloaded.append((image, extension, await _download_result(ctx, image)))
        except STEP_ERRORS as exc:
            moved += _failed(ctx, image, "write", exc)
    converted = await _in_original_formats([(result, extension) for _, extension, result in downloaded])
    results: list[tuple[Image, tuple[str, str, bytes]]] = []  # (image, (upload name, MIME type, bytes))
    for (image, extension, _), data in zip(downloaded, converted, strict=True):
        if isinstance(data, Fail):
            moved += _failed(ctx, image, "write", data)
        else:
            results.append((image, (output_filename(image.media_id, extension), mime_for(extension), data)))
    if results:
        moved += await _replace_in_place(ctx, product, results)
    return moved


async def _replace_in_place(ctx: Context, product: Product, results: list[tuple[Image, tuple[str, str, bytes]]]) -> int:
    files = {image.id: file for image, file in results}
    uploaded, moved = await _together(
        ctx,
        [image for image, _ in results],
        lambda images: ctx.shopify.staged_uploads([files[image.id] for image in images]),
        lambda image: ctx.shopify.staged_upload(*files[image.id]),
    )
    if not uploaded:
        return moved
    # Intents, before the mutation; with the mode they were started in (`write_mode`).
    ctx.store.update_images({image.id: {"write_source": url, "write_mode": "replace"} for image, url in uploaded})
    sources = {image.id: url for image, url in uploaded}
    replaced, refused = await _replace_sources(ctx, [image for image, _ in uploaded], sources)
    moved += refused
    if not replaced:
        return moved
    try:
        outcomes = await _finish_write(ctx, product, [(image, image.media_id) for image, _ in replaced])
    except STEP_ERRORS as exc:
        return moved + sum(_failed(ctx, image, "write", exc) for image, _ in replaced)
    return moved + _moved(ctx, outcomes)


async def _together(
    ctx: Context,
    images: list[Image],
    together: Callable[[list[Image]], Awaitable[Any]],
    alone: Callable[[Image], Awaitable[Any]],
) -> tuple[list[tuple[Image, Any]], int]:
    """One Shopify call for all the images (`together`, answering one result per image, in order),
    or, when Shopify refuses it with a user error, one call per image (`alone`), so that the image
    the error is about meets it and the others go on. Returns the images that went through with
    their results, and how many images the failures moved (`_failed`)."""
    if len(images) > 1:
        try:
            answers = await together(images)
            return list(zip(images, answers if answers is not None else [None] * len(images), strict=True)), 0
        except ShopifyUserError:
            pass  # one image at a time, below
        except STEP_ERRORS as exc:
            return [], sum(_failed(ctx, image, "write", exc) for image in images)
    went, moved = [], 0
    for image in images:
        try:
            went.append((image, await alone(image)))
        except STEP_ERRORS as exc:
            moved += _failed(ctx, image, "write", exc)
    return went, moved


async def _replace_sources(
    ctx: Context, images: list[Image], sources: Mapping[int, str]
) -> tuple[list[tuple[Image, None]], int]:
    """The shared fileUpdate of replace mode. Shopify applies the valid rows and names each bad one
    (plugin/shopify/file_update.py): a row it answers as written is written (never sent again: no
    second processing, no duplicate); a named row meets its own refusal (`_row_refusal`); a row it
    neither answers nor names is sent again on its own. Returns the images written and how many
    images the failures moved (`_failed`)."""
    if len(images) == 1:
        rows = [FileRow(images[0].media_id, "unknown")]  # the one-file call below gives its own answer
    else:
        try:
            rows = await ctx.shopify.replace_media_sources([(image.media_id, sources[image.id]) for image in images])
        except STEP_ERRORS as exc:
            return [], sum(_failed(ctx, image, "write", exc) for image in images)
    went: list[tuple[Image, None]] = []
    moved = 0
    for image, row in zip(images, rows, strict=True):
        try:
            if row.status == "refused":
                # Shopify named this row: it was not applied. The intent (and the mode recorded with it)
                # is void, so the next try sees a picture the merchant puts there meanwhile as theirs
                # (`_merchant_replaced`), and a reload's mode applies to a write not yet made.
                ctx.store.update_image(image.id, write_source=None, write_mode=None)
                raise _row_refusal(ShopifyUserError("FileUpdate", row.errors))
            if row.status == "unknown":
                await _replace_one(ctx, image, sources[image.id])
            went.append((image, None))
        except STEP_ERRORS as exc:
            moved += _failed(ctx, image, "write", exc)
    return went, moved


def _row_refusal(exc: ShopifyUserError) -> Skip | Fail | Held:
    """What Shopify's refusal of one image's row of a shared fileUpdate means: gone (skipped), a
    reason no later try changes (failed), or else held, to be written again later."""
    codes = {e.code for e in exc.errors}
    if codes & GONE_CODES or codes & PERMANENT_ROW_CODES:
        return _refusal(exc)
    return Held((sorted(c for c in codes if c) or ["shopify_rejected"])[0], str(exc)[:500])


async def _replace_one(ctx: Context, image: Image, resource_url: str) -> None:
    try:
        await ctx.shopify.replace_media_source(image.media_id, resource_url)
    except ShopifyUserError as exc:
        raise _refusal(exc) from None


def _refusal(exc: ShopifyUserError) -> Skip | Fail:
    """What Shopify's refusal of our write means for the image: gone (skipped) or failed, with its code."""
    codes = {e.code for e in exc.errors}
    if codes & GONE_CODES:
        return Skip("media_deleted", "the merchant deleted this image while it was being written")
    return Fail((sorted(c for c in codes if c) or ["shopify_rejected"])[0], str(exc)[:500])


async def _converted_result(ctx: Context, image: Image, extension: str, *, fresh: bool = False) -> bytes:
    """The provider's result in the original's format (Shopify keeps a media's file extension)."""
    [data] = await _in_original_formats([(await _download_result(ctx, image, fresh=fresh), extension)])
    if isinstance(data, Fail):
        raise data
    return data


async def _in_original_formats(results: list[tuple[bytes, str]]) -> list[bytes | Fail]:
    """Each (provider result, original's extension) as bytes in that format, or the image's Fail
    when the result cannot be read. Decoding and re-encoding a big photo takes a while, so this is
    not done on the event loop; and all of them go to one worker thread together, because every
    hand-off to a thread costs the loop a thread switch."""

    def convert_all() -> list[bytes | Fail]:
        converted: list[bytes | Fail] = []
        for result, extension in results:
            try:
                converted.append(imaging.convert(result, pillow_format(extension)))
            except imaging.ImageDataError as exc:
                converted.append(Fail("result_unreadable", f"the provider's result is {exc}"))
        return converted

    return await asyncio.to_thread(convert_all) if results else []


async def _write(ctx: Context, image: Image) -> dict[str, Any] | None:
    """The write step for one image, as a new media (append mode, or in a failed media's place)
    or in place (replace mode, where `write_product` is the usual way)."""
    product = await still_there(ctx, image)
    original = _writable_original(ctx, image, product)
    if not isinstance(original, Media):
        return original
    mode = write_mode(ctx, image)
    in_place = mode == "replace" and original.status != "FAILED"
    # Where a new media goes: after the original (append), or in the failed media's place.
    position = [m.id for m in product.media].index(original.id) + (1 if mode == "append" else 0)
    extension = extension_of(image.filename, image.mime_type)
    upload_name = output_filename(image.media_id, extension)

    if not in_place and image.write_source:
        # We may have added the media before a crash: adopt it instead of adding a second one.
        existing = next((m for m in product.media if filename_of(m.url or m.original_url) == upload_name), None)
        if existing is not None:
            ctx.log.info("adopted", **log_fields(image), output_media_id=existing.id)
            # The crash may have come before the move.
            product = await _move_into_place(ctx, product.id, existing.id, position)
            return await _finish_one(ctx, image, product, existing.id)

    data = await _converted_result(ctx, image, extension)
    resource_url = await ctx.shopify.staged_upload(upload_name, mime_for(extension), data)
    ctx.store.update_image(image.id, write_source=resource_url, write_mode=mode)  # intent, before the mutation
    if in_place:
        await _replace_one(ctx, image, resource_url)
        return await _finish_one(ctx, image, product, image.media_id)
    try:
        output_id = await ctx.shopify.add_media(product.id, resource_url, original.alt)
        product = await _move_into_place(ctx, product.id, output_id, position)
    except ShopifyUserError as exc:
        raise _refusal(exc) from None
    return await _finish_one(ctx, image, product, output_id)


async def _move_into_place(ctx: Context, product_id: str, media_id: str, position: int) -> Product:
    """Move a new media to `position` and read the order back: productReorderMedia answers a job and
    no error for a media that is gone, and the move silently does nothing (NOTES.md, real captures).
    A media that is not where it was moved is held (the next try adopts it and moves it again);
    one that is gone is the merchant's deletion. Returns the product as read back."""
    await ctx.shopify.move_media(product_id, media_id, position)
    product = await _read_product(ctx, product_id)
    order = [m.id for m in product.media]
    if media_id not in order:
        raise Skip("media_deleted", "the merchant deleted the enhanced image while it was being put in place")
    if order.index(media_id) != min(position, len(order) - 1):
        raise Held(
            "reorder_not_applied",
            f"Shopify did not move the enhanced image to position {position + 1} "
            f"(it is at {order.index(media_id) + 1}); it is moved again",
        )
    return product


async def _download_result(ctx: Context, image: Image, *, fresh: bool = False) -> bytes:
    """The provider's result, through the fetch seam. A link its provider says expired (the provider
    that took the job, even after a switch) is renewed by that provider, once. An approved result kept
    for review: the kept bytes, the very ones the owner approved."""
    if image.result_sha256 is not None and not fresh:
        if image.approved_at is None:  # (write_product holds these; never written unapproved)
            raise Held("awaiting_review", "the result waits for the owner's approval")
        return kept_result(ctx, image)
    try:
        return (await ctx.results.fetch(image.result_url or "")).data
    except FetchError as exc:
        failure = exc
    job = ctx.store.job(image.job_id) if image.job_id is not None else None
    owner = ctx.context_of(job.provider) if job is not None else None
    if not result_link_expired((owner or ctx).provider, failure):
        raise failure
    if job is None or job.provider_job_id is None:
        raise Fail("result_link_expired", "the provider's download link expired and the job is unknown")
    if owner is None:
        raise Fail(
            "result_link_expired",
            f"the provider's download link expired and {job.provider}, which made it, is no longer configured",
        )
    renewed = await owner.provider.fresh_results(
        ticket_for(owner, job, ctx.store.job_images(job.id)), JobProgress(owner, job)
    )
    url = renewed.get(image.item_index if image.item_index is not None else -1)
    if url is None:
        raise Fail("result_link_expired", "the provider's download link expired and it gave no new one")
    ctx.store.update_image(image.id, result_url=url)
    ctx.log.info("result_link_renewed", **log_fields(image), job_id=job.id)
    return (await ctx.results.fetch(url)).data


def _merchant_replaced(image: Image, current_url: str | None) -> bool:
    """Did the merchant put another picture into this media since we read it? Its CDN URL changes
    with every new file (the version in it, or the file name). Our own output (a write we may have
    made before a crash) is not the merchant's."""
    if image.write_source:
        return False  # we may have written already (a crash before we recorded it): the change is ours
    if not current_url or not image.source_url or current_url == image.source_url:
        return False
    return not is_output_filename(filename_of(current_url))


def _requeue_new_picture(ctx: Context, image: Image, media: Media) -> dict[str, Any]:
    """Never put an enhancement of the old picture over the merchant's new one: the new one is
    queued instead, like an image the merchant just added (the old original stays backed up)."""
    ctx.log.info(
        "source_changed",
        **log_fields(image),
        note="the merchant replaced this picture while it was being enhanced; the new one is queued",
    )
    return {
        "state": ImageState.DISCOVERED,
        "source_url": media.url,
        "filename": filename_of(media.url),
        "mime_type": media.mime_type,
        "alt": media.alt,
        "job_id": None,
        "item_index": None,
        "result_url": None,
        "backup_sha256": None,
        "backup_pruned_at": None,
        "write_source": None,
        "write_mode": None,
        "attempts": 0,
        "next_attempt_at": None,
        "error_code": "source_changed",
        "error_message": "the merchant replaced this picture while the old one was being enhanced; the new one "
        "was queued and the old one's enhancement was not written",
    }


async def _finish_write(
    ctx: Context, product: Product, written: list[tuple[Image, str]]
) -> list[tuple[Image, dict[str, Any]]]:
    """Record what was written, each image with the media that now shows its result, in the DB and
    in the product's marker; returns each image's changes to `written`."""
    # The DB first (cheap, local), then the product's marker, which survives a lost DB.
    ctx.store.add_outputs(product.id, {output_id: image.id for image, output_id in written})
    await set_marker(ctx, product, add={output_id for _, output_id in written})
    now = ctx.clock()
    return [
        (
            image,
            {
                "state": ImageState.WRITTEN,
                "output_media_id": output_id,
                "attempts": 0,
                "written_at": now,
                "next_attempt_at": now + 0.5,
                "error_code": None,
                "error_message": None,
            },
        )
        for image, output_id in written
    ]


async def _finish_one(ctx: Context, image: Image, product: Product, output_id: str) -> dict[str, Any]:
    ((_, changes),) = await _finish_write(ctx, product, [(image, output_id)])
    return changes


async def remove_failed_media(ctx: Context, media_id: str) -> None:
    """Delete a media Shopify failed to process; anything else (gone, or READY after all) is left alone."""
    media = await ctx.shopify.get_media(media_id)
    if media is not None and media.status == "FAILED":
        try:
            await ctx.shopify.delete_media([media_id])
        except ShopifyUserError as exc:
            if not {e.code for e in exc.errors} & GONE_CODES:
                raise
        ctx.log.info("failed_media_removed", media_id=media_id)


async def set_marker(
    ctx: Context,
    product: Product,
    *,
    add: frozenset[str] | set[str] = frozenset(),
    remove: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Update the product's list of retouch output media, retrying once on a concurrent change."""
    for attempt in (1, 2):
        ids = marker_ids_after(
            product.marker_media_ids | ctx.store.output_media_of_product(product.id), add=add, remove=remove
        )
        try:
            await ctx.shopify.set_marker(product.id, ids, product.marker_digest)
            return
        except ShopifyUserError as exc:
            if attempt == 2 or "STALE_OBJECT" not in {e.code for e in exc.errors}:
                raise
            fresh = await ctx.shopify.get_product(product.id)
            if fresh is None:
                raise Skip("product_deleted", "the merchant deleted the product while it was being written") from None
            product = fresh


async def _verify(ctx: Context, image: Image, seen: Mapping[str, Media | None] | None = None) -> dict[str, Any] | None:
    media_id = image.output_media_id or image.media_id
    media = seen[media_id] if seen and media_id in seen else await ctx.shopify.get_media(media_id)
    if media is None:
        raise Skip("media_deleted", "the merchant deleted this image after it was written")
    if media.status == "READY" and media.url:
        done: dict[str, Any] = {
            "state": ImageState.DONE,
            "attempts": 0,
            "next_attempt_at": None,
            "error_code": None,
            "error_message": None,
        }
        if write_mode(ctx, image) == "replace" and image.output_media_id not in (None, image.media_id):
            # The result took a failed media's place: remove that one, and the row follows the picture.
            await remove_failed_media(ctx, image.media_id)
            done["media_id"] = image.output_media_id
        return done
    if media.status == "FAILED":
        error = media.errors[0] if media.errors else None
        raise Fail(
            error.code if error else "MEDIA_FAILED",
            (error.message if error else "Shopify could not process the result")
            + "; the original is kept in the backup (retouch revert restores it)",
        )
    age = ctx.clock() - (image.written_at or ctx.clock())
    if age > ctx.settings.writeback.wait_ready:
        raise Fail("MEDIA_TIMEOUT", f"Shopify did not finish processing the result in {age:.0f} s")
    ctx.store.update_image(image.id, next_attempt_at=ctx.clock() + verify_delay(age, ctx.settings.schedule.tick))
    return None
