"""The review step of write-back ([review] mode = "all"): nothing reaches the store unapproved.

    enhanced ──backup (+ keep the result)──► backed_up ──await_review──► awaiting_review
                                                 ▲                             │ approve (the owner, or
                                                 └──────── approved_at ◄───────┘  auto_approve_after)
    backed_up with approved_at ──write (the kept bytes)──► written ──► done

Whether a result waits for the owner is decided as it arrives, at its first write step (a tick after
its backup), and recorded in the image's state: once `awaiting_review`, a reload that turns review
off does not write it; one approved (`approved_at`) is written even if review is turned on again.
Deciding is pure (`waits_for_owner`, sync/review.py `due_for_auto_approval`); this module and
writeback.py's `_keep_for_review` act on those decisions.
"""

from __future__ import annotations

from retouch.storage.backups import BackupError, BackupStore
from retouch.storage.models import Image, ImageState

from ..review import RESULTS_FOLDER, approve, due_for_auto_approval, waiting_for_review
from .context import Context


def results(ctx: Context) -> BackupStore:
    """The kept results, content-addressed beside the originals (sync/review.py `results_store`)."""
    return BackupStore(ctx.backups.directory / RESULTS_FOLDER)


def waits_for_owner(review_on: bool, image: Image) -> bool:
    """Must this `backed_up` image wait for the owner instead of being written? (pure) With review on,
    every result not approved yet does; with it off, none does (a result already waiting stays in
    `awaiting_review`: its state records the decision, whatever a reload says later)."""
    return review_on and image.approved_at is None


def keep_result(ctx: Context, data: bytes) -> str:
    """Store a checked, converted result; returns its digest."""
    return results(ctx).put(data)


def kept_result(ctx: Context, image: Image) -> bytes:
    """The approved result's bytes, exactly as they were reviewed (never a new download)."""
    try:
        return results(ctx).get(image.result_sha256 or "")
    except BackupError as exc:
        raise BackupError(
            f"the approved result is gone from {results(ctx).directory} ({exc}); "
            "`retouch review redo` enhances it again"
        ) from None


def hold_for_review(ctx: Context, image: Image, sha256: str) -> bool:
    """Record the kept result and move the image to `awaiting_review`; False if it moved meanwhile."""
    if not ctx.store.transition([image.id], "await_review", expect=ImageState.BACKED_UP, result_sha256=sha256):
        return False
    ctx.log.info(
        "awaiting_review",
        product_id=image.product_id,
        media_id=image.media_id,
        job_id=image.job_id,
        result_sha256=sha256,
    )
    return True


def auto_approve(ctx: Context) -> int:
    """[review] auto_approve_after: approve the results that have waited that long; returns how many."""
    after = ctx.settings.review.auto_approve_after
    if after is None:
        return 0
    now = ctx.clock()
    due = due_for_auto_approval(waiting_for_review(ctx.store), after=after, now=now)
    if not due:
        return 0
    outcome = approve(ctx.store, due, now=now)
    for image_id in outcome.moved:
        ctx.log.info("auto_approved", image_id=image_id, waited_longer_than=after)
    return len(outcome.moved)
