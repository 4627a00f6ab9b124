"""The media processing lifecycle, computed from timestamps (no timers, no threads).

A new or replaced image is UPLOADED for the first half of `processing_seconds`, PROCESSING for
the second half, then READY (or FAILED with `mediaErrors`). Its outcome — the processed image or
the failure — is decided when the processing starts (the source is fetched then) and only shown
once the time has passed.

What Shopify shows meanwhile (from the captures in ../shared/reference/shopify/captures):
- `image` is null until READY; `mimeType` is null until the first READY.
- While a READY file is being replaced (fileUpdate with a new originalSource), `fileStatus`
  stays READY, `image` reads null, and `preview.image` still shows the previous image
  (2026-04/media/media-file-update-source-semantics.json). `status` goes through
  UPLOADED -> PROCESSING -> READY again.
- Media `updatedAt` moves when processing finishes; the product's `updatedAt` does not.
"""

from __future__ import annotations

from .model import Image, Media, MediaFailure

UPLOADED, PROCESSING, READY, FAILED = "UPLOADED", "PROCESSING", "READY", "FAILED"


def processing_done_at(media: Media, processing_seconds: float) -> float | None:
    return None if media.processing is None else media.processing.started_at + processing_seconds


def media_status(media: Media, now: float, processing_seconds: float) -> str:
    """MediaStatus at `now`."""
    if media.processing is not None:
        elapsed = now - media.processing.started_at
        if elapsed < processing_seconds / 2:
            return UPLOADED
        if elapsed < processing_seconds:
            return PROCESSING
        return FAILED if isinstance(media.processing.outcome, MediaFailure) else READY
    if media.failure is not None:
        return FAILED
    return READY


def file_status(media: Media, now: float, processing_seconds: float) -> str:
    """FileStatus at `now`: like `media_status`, except that a READY file being replaced stays READY."""
    status = media_status(media, now, processing_seconds)
    if status in (UPLOADED, PROCESSING) and media.ready is not None and media.failure is None:
        return READY
    return status


def visible_image(media: Media, now: float, processing_seconds: float) -> tuple[Image, int] | None:
    """The image (and its version) `MediaImage.image` shows: only when READY."""
    if media_status(media, now, processing_seconds) != READY:
        return None
    if media.processing is not None:  # finished, not yet settled
        assert not isinstance(media.processing.outcome, MediaFailure)
        return media.processing.outcome, media.processing.version
    if media.ready is None or media.ready_version is None:
        return None
    return media.ready, media.ready_version


def preview_image(media: Media, now: float, processing_seconds: float) -> tuple[Image, int] | None:
    """The image `preview.image` shows: the current one, or the previous one during a replacement."""
    shown = visible_image(media, now, processing_seconds)
    if shown is not None:
        return shown
    if media.ready is not None and media.ready_version is not None:
        return media.ready, media.ready_version
    return None


def media_failure(media: Media, now: float, processing_seconds: float) -> MediaFailure | None:
    if media_status(media, now, processing_seconds) != FAILED:
        return None
    if media.processing is not None:
        assert isinstance(media.processing.outcome, MediaFailure)
        return media.processing.outcome
    return media.failure


def settle(media: Media, now: float, processing_seconds: float) -> bool:
    """Make a finished processing permanent (True if something changed). Status is unchanged by
    settling; it only moves the outcome into `ready`/`failure` and dates the media's `updatedAt`."""
    done_at = processing_done_at(media, processing_seconds)
    if done_at is None or now < done_at:
        return False
    processing = media.processing
    assert processing is not None
    if not isinstance(processing.outcome, MediaFailure):
        if media.ready is not None and media.ready_version is not None:  # superseded, still on the CDN
            media.versions = {**media.versions, media.ready_version: media.ready}
        media.ready = processing.outcome
        media.ready_version = processing.version
        media.failure = None
    else:
        media.failure = processing.outcome
    media.processing = None
    media.updated_at = max(media.updated_at, done_at)
    return True
