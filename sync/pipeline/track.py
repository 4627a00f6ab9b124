"""Track: poll submitted jobs within the quota and record each item's outcome.

Items are mapped back by their position in our request and, where the provider returns one,
checked against `external_id` (the product's numeric id).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from retouch.plugin.providers import errors as provider_errors
from retouch.plugin.providers.base import JobStatus
from retouch.storage import lifecycle
from retouch.storage.models import Image, ImageState, Job, JobState, epoch

from ..deadline_decisions import (
    PROVIDER_TIMEOUT,
    expire_after_failed_poll,
    is_overdue,
    poll_at_or_before_deadline,
    timeout_message,
)
from ..decisions import backoff, observed_duration, poll_delay
from .context import BLOCKED_UNTIL, Context
from .jobs import JobProgress, ticket_for
from .log_fields import log_fields

# Kept in the job's state by the pipeline: seconds since submission at the last poll that found the
# job still running (with the poll that finds it done, it brackets the job's real duration).
RUNNING_AT = "retouch_running_at"


async def track(ctx: Context) -> int:
    """Poll every job that is due; returns how many polls were made."""
    polls = 0
    for job in ctx.jobs(JobState.SUBMITTED):
        now = ctx.clock()
        if job.next_poll_at is not None and job.next_poll_at > now:
            continue
        if not ctx.ledger().may_poll(now):
            continue
        polls += 1
        await _poll(ctx, job)
    if ctx.retired:  # jobs of a provider a reload switched away from finish on it (retired.py)
        from .retired import finish_retired

        polls += await finish_retired(ctx)
    return polls


async def _poll(ctx: Context, job: Job) -> None:
    log = ctx.log.bind(job_id=job.id, provider_job_id=job.provider_job_id)
    assert job.provider_job_id is not None
    images = ctx.store.job_images(job.id)
    progress = JobProgress(ctx, job)
    # Past its deadline this poll is the job's last (see deadline_decisions).
    overdue = job.submitted_at is not None and is_overdue(
        age=ctx.clock() - epoch(job.submitted_at), max_job_age=ctx.settings.max_job_age
    )
    try:
        status = await ctx.provider.poll(ticket_for(ctx, job, images, final=overdue), progress)
    except provider_errors.ProviderError as exc:
        rate_limited = isinstance(exc, provider_errors.RateLimited)
        lost = isinstance(exc, provider_errors.NotFound)  # has its own, clearer reason
        if not lost and expire_after_failed_poll(overdue=overdue, rate_limited=rate_limited):
            _expire(ctx, job, images, {}, f"its last poll failed ({exc.__class__.__name__})", log)
            return
        _poll_failed(ctx, job, images, exc, log)
        return

    now = ctx.clock()
    image_fields = record_items(status, images, requeue=_requeue_allowed(ctx, images))
    for image in images:
        fields = image_fields.get(image.id)
        if fields:
            failed = fields["state"] == ImageState.FAILED
            (ctx.log.warning if failed else ctx.log.info)(
                "item_" + fields["state"], **log_fields(image), job_id=job.id, error_code=fields.get("error_code")
            )
    if overdue and not status.terminal:
        _expire(
            ctx,
            job,
            images,
            image_fields,
            status.description,
            log,
            polls=job.polls + 1,
            provider_state=json.dumps(progress.state, sort_keys=True),
        )
        await _skip_deleted_sources(ctx, images, image_fields)
        return
    _record(ctx, job, images, status, progress, image_fields, now, log)
    await _skip_deleted_sources(ctx, images, image_fields)


def _expire(
    ctx: Context,
    job: Job,
    images: list[Image],
    image_fields: dict[int, dict[str, Any]],
    last_status: str,
    log: Any,
    polls: int | None = None,
    provider_state: str | None = None,
) -> None:
    """The job reached its deadline: every image it still holds fails with provider_timeout (what the
    last poll did finish is kept), and the job is over. Nothing is sent again by itself."""
    message = timeout_message(max_job_age=ctx.settings.max_job_age, last_status=last_status)
    for image in images:
        if image.state == ImageState.SUBMITTED and image.id not in image_fields:
            image_fields[image.id] = {
                "state": ImageState.FAILED,
                "error_code": PROVIDER_TIMEOUT,
                "error_message": message,
            }
            ctx.log.warning("item_failed", **log_fields(image), job_id=job.id, error_code=PROVIDER_TIMEOUT)
    job_fields: dict[str, Any] = {
        "state": JobState.FAILED,
        "error_code": PROVIDER_TIMEOUT,
        "error_message": message,
        "finished_at": datetime.now(timezone.utc),
    }
    if polls is not None:
        job_fields["polls"] = polls
    if provider_state is not None:
        job_fields["provider_state"] = provider_state  # what the last poll saved
    _record_moves(ctx, job, images, job_fields, image_fields)
    log.error(
        "provider_timeout",
        max_job_age=ctx.settings.max_job_age,
        last_status=last_status,
        images=sum(1 for f in image_fields.values() if f.get("error_code") == PROVIDER_TIMEOUT),
    )


def _poll_failed(ctx: Context, job: Job, images: list[Image], exc: Exception, log: Any) -> None:
    if isinstance(exc, provider_errors.RateLimited):
        until = ctx.clock() + (exc.retry_after or ctx.settings.poll_floor)
        ctx.store.update_job(job.id, next_poll_at=until)
        if ctx.limits.limited("request"):
            ctx.store.set_meta(BLOCKED_UNTIL, str(until))  # one budget for every request: hold them all
        log.warning("rate_limited", retry_after=round(until - ctx.clock(), 1))
        return
    if isinstance(exc, provider_errors.NotFound):
        message = "the provider does not know this job any more"
        _record_moves(
            ctx,
            job,
            images,
            {"state": JobState.FAILED, "error_code": "not_found", "error_message": message},
            {
                i.id: {"state": ImageState.FAILED, "error_code": "enhancement_not_found", "error_message": message}
                for i in images
                if i.state == ImageState.SUBMITTED
            },
        )
        log.error("enhancement_lost")
        return
    attempts = job.attempts + 1
    floor = ctx.settings.poll_floor
    delay = backoff(attempts, base=floor, cap=floor * 8)
    next_at = ctx.clock() + delay
    if job.submitted_at is not None:
        next_at = poll_at_or_before_deadline(
            next_at, submitted_at=epoch(job.submitted_at), max_job_age=ctx.settings.max_job_age
        )
    ctx.store.update_job(job.id, attempts=attempts, next_poll_at=next_at)
    log.warning("poll_retry", reason=exc.__class__.__name__, wait=round(next_at - ctx.clock(), 1))


def _record(
    ctx: Context,
    job: Job,
    images: list[Image],
    status: JobStatus,
    progress: JobProgress,
    image_fields: dict[int, dict[str, Any]],
    now: float,
    log: Any,
) -> None:
    job_fields: dict[str, Any] = {"polls": job.polls + 1, "attempts": 0}
    if status.provider_job_id and status.provider_job_id != job.provider_job_id:
        job_fields["provider_job_id"] = status.provider_job_id  # the job moved on (an upscale)
    elapsed = now - epoch(job.submitted_at) if job.submitted_at else 0.0
    total = len(images)
    if status.terminal:
        job_fields.update(
            state=JobState.FINISHED, finished_at=datetime.now(timezone.utc), credits_used=status.credits_used
        )
        if total:
            took = observed_duration(running_at=progress.state.get(RUNNING_AT), done_at=elapsed)
            ctx.learn_seconds_per_item(took / total)
        finished = sum(1 for r in status.items.values() if r.status != "running")
        log.info(
            "job_finished", status=status.description, finished=finished, of=total, credits_used=status.credits_used
        )
    else:
        progress.state[RUNNING_AT] = elapsed
        job_fields["next_poll_at"] = _next_poll(ctx, job, status, now, elapsed, total)
    job_fields["provider_state"] = json.dumps(progress.state, sort_keys=True)
    _record_moves(ctx, job, images, job_fields, image_fields)


def _record_moves(
    ctx: Context, job: Job, images: list[Image], job_fields: dict[str, Any], image_fields: dict[int, dict[str, Any]]
) -> None:
    """The job's fields and each image's change (its transition from the state it was read in, a
    compare-and-set) in one transaction; an image that moved on meanwhile is left as it is."""
    seen = {image.id: image for image in images}
    moves = [lifecycle.move_from(image_id, seen[image_id].state, fields) for image_id, fields in image_fields.items()]
    moved = set(ctx.store.update_job_and_images(job.id, job_fields, {}, moves))
    for move in moves:
        if move.image_id not in moved:
            image = seen[move.image_id]
            ctx.log.debug("not_moved", **log_fields(image), job_id=job.id, transition=move.name, expected=image.state)


def _next_poll(ctx: Context, job: Job, status: JobStatus, now: float, elapsed: float, total: int) -> float:
    floor = ctx.settings.poll_spacing
    finished = sum(1 for r in status.items.values() if r.status != "running")
    if status.expected_seconds is not None:  # the provider's own advice
        next_at = now + max(floor, status.expected_seconds)
    else:
        # Poll near the expected completion.
        next_at = now + poll_delay(
            elapsed=elapsed, total=total, finished=finished, per_item=ctx.seconds_per_item(), min_interval=floor
        )
    if ctx.limits.limited("poll"):
        # A quota of polls: its even spread is the latest we wait.
        next_at = min(next_at, ctx.ledger().next_poll_at(now, now, floor, ctx.active_jobs()))
    if ctx.settings.webhooks and status.webhook_expected:
        # Webhooks say when to look; polling is only the safety net for a lost delivery.
        next_at = max(next_at, now + ctx.settings.server.safety_poll_every)
        # A webhook that arrived while this poll was in flight moved the job's next poll
        # earlier: keep that. (No await between this read and the write that follows: the webhook
        # handler runs in the same event loop, so it cannot slip in between.)
        fresh = ctx.store.job(job.id)
        if fresh is not None and fresh.next_poll_at is not None and fresh.next_poll_at != job.next_poll_at:
            next_at = min(next_at, fresh.next_poll_at)
    if job.submitted_at is not None:
        next_at = poll_at_or_before_deadline(
            next_at, submitted_at=epoch(job.submitted_at), max_job_age=ctx.settings.max_job_age
        )
    return next_at


def _requeue_allowed(ctx: Context, images: list[Image]) -> set[int]:
    """Images whose failed item may be sent again by retouch itself: paid attempts left."""
    return {i.id for i in images if i.id is not None and i.paid_attempts < ctx.capabilities.max_attempts}


# The provider could not fetch these sources; if the merchant deleted the media, that is why.
SOURCE_ERRORS = {"source_download_failed"}


async def _skip_deleted_sources(ctx: Context, images: list[Image], changes: dict[int, dict[str, Any]]) -> None:
    for image in images:
        if changes.get(image.id, {}).get("error_code") in SOURCE_ERRORS:
            if await ctx.shopify.get_media(image.media_id) is None:
                ctx.store.transition(
                    image.id,
                    "skip",
                    expect=changes[image.id]["state"],
                    error_code="media_deleted",
                    error_message="the merchant deleted this image before the provider fetched it",
                )
                ctx.log.info("skipped", **log_fields(image), reason="media_deleted")


def record_items(
    status: JobStatus, images: list[Image], requeue: frozenset[int] | set[int] = frozenset()
) -> dict[int, dict[str, Any]]:
    """Pure: the changes to make to each still-submitted image for this status answer.

    A failed item of an image in `requeue` goes back to the queue (it has paid attempts left)."""
    changes: dict[int, dict[str, Any]] = {}
    by_index = {image.item_index: image for image in images}
    for index, item in status.items.items():
        image = by_index.get(index)
        if image is None or image.state != ImageState.SUBMITTED:
            continue
        if item.external_id is not None and item.external_id != image.product_legacy_id:
            changes[image.id] = {
                "state": ImageState.FAILED,
                "error_code": "result_mismatch",
                "error_message": f"item {index} came back for product {item.external_id}",
            }
        elif item.status == "completed" and item.result_url:
            changes[image.id] = {"state": ImageState.ENHANCED, "result_url": item.result_url}
        elif item.status == "failed":
            changes[image.id] = {
                "state": ImageState.DISCOVERED if image.id in requeue else ImageState.FAILED,
                "error_code": item.error_code or "item_failed",
                "error_message": item.error_message or "the provider could not enhance this image",
            }
            if image.id in requeue:
                # The job is still polled, and its poll lists every item it sent: the image keeps its
                # place in it until another job takes it (the requeue would clear them otherwise).
                changes[image.id].update(job_id=image.job_id, item_index=image.item_index)
    if status.terminal:
        for image in images:
            if image.state == ImageState.SUBMITTED and image.id not in changes:
                changes[image.id] = {
                    "state": ImageState.FAILED,
                    "error_code": "missing_result",
                    "error_message": f"the job ended {status.description} without this item",
                }
    return changes
