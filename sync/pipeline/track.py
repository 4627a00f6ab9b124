"""Track: poll submitted jobs within the poll quota and record each item's outcome.

Items are mapped back by position in our request and checked against `external_id` (the product's
numeric id): the provider does not return source URLs (CONTRACTS.md §1, Status).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from retouch.plugin.providers.aigenstudio import errors as provider_errors
from retouch.plugin.providers.aigenstudio.models import Enhancement
from retouch.storage.models import Image, ImageState, Job, JobState, epoch

from ..decisions import backoff, poll_delay
from .context import PROVIDER, Context


async def track(ctx: Context) -> int:
    """Poll every job that is due; returns how many polls were made."""
    polls = 0
    for job in ctx.store.jobs_in_state(JobState.SUBMITTED):
        now = ctx.clock()
        if job.next_poll_at is not None and job.next_poll_at > now:
            continue
        ledger = ctx.ledger()
        if ledger.available("poll", now) <= 0:
            continue
        polls += 1
        await _poll(ctx, job)
    return polls


async def _poll(ctx: Context, job: Job) -> None:
    log = ctx.log.bind(job_id=job.id, enhancement_id=job.provider_job_id)
    assert job.provider_job_id is not None
    try:
        enhancement = await ctx.provider.get_enhancement(job.provider_job_id)
    except provider_errors.RateLimited as exc:
        until = ctx.clock() + (exc.retry_after or ctx.settings.schedule.poll_every)
        ctx.store.update_job(job.id, next_poll_at=until)
        log.warning("rate_limited", retry_after=round(until - ctx.clock(), 1))
        return
    except provider_errors.NotFound:
        message = "the provider does not know this enhancement any more"
        images = ctx.store.job_images(job.id)
        ctx.store.update_job_and_images(
            job.id, {"state": JobState.FAILED, "error_code": "not_found", "error_message": message},
            {i.id: {"state": ImageState.FAILED, "error_code": "enhancement_not_found", "error_message": message}
             for i in images if i.state == ImageState.SUBMITTED},
        )
        log.error("enhancement_lost")
        return
    except provider_errors.AigenError as exc:
        attempts = job.attempts + 1
        delay = backoff(attempts, base=ctx.settings.schedule.poll_every, cap=ctx.settings.schedule.poll_every * 8)
        ctx.store.update_job(job.id, attempts=attempts, next_poll_at=ctx.clock() + delay)
        ctx.store.add_quota_event(PROVIDER, "poll", ctx.clock())
        log.warning("poll_retry", reason=exc.__class__.__name__, wait=round(delay, 1))
        return

    now = ctx.clock()
    ctx.store.add_quota_event(PROVIDER, "poll", now)
    images = ctx.store.job_images(job.id)
    image_fields = record_items(enhancement, images)
    for image in images:
        fields = image_fields.get(image.id)
        if fields:
            ctx.log.info("item_" + fields["state"], product_id=image.product_id, media_id=image.media_id,
                         job_id=job.id, error_code=fields.get("error_code"))
    job_fields: dict[str, Any] = {"polls": job.polls + 1, "attempts": 0}
    elapsed = now - epoch(job.submitted_at) if job.submitted_at else 0.0
    if enhancement.is_terminal:
        job_fields.update(state=JobState.FINISHED, finished_at=datetime.now(timezone.utc),
                          credits_used=enhancement.credits_used)
        if enhancement.total_items:
            ctx.learn_seconds_per_item(elapsed / enhancement.total_items)
        log.info("job_finished", status=enhancement.status, completed=enhancement.completed_items,
                 failed=enhancement.failed_items, credits_used=enhancement.credits_used)
    else:
        # Poll near the expected completion; the quota's even spread is the latest we wait.
        spread_at = ctx.ledger().next_poll_at(now, now, ctx.settings.schedule.poll_every, ctx.active_jobs())
        expected_at = now + poll_delay(elapsed=elapsed, total=enhancement.total_items,
                                       finished=enhancement.completed_items + enhancement.failed_items,
                                       per_item=ctx.seconds_per_item(), min_interval=ctx.settings.schedule.poll_every)
        job_fields["next_poll_at"] = min(spread_at, expected_at)
        if ctx.settings.webhook_url:
            # Webhooks say when to look; polling is only the safety net for a lost delivery.
            job_fields["next_poll_at"] = max(job_fields["next_poll_at"], now + ctx.settings.server.safety_poll_every)
            # A webhook that arrived while this poll was in flight moved the job's next poll
            # earlier: keep that. (No await between this read and the write below: the webhook
            # handler runs in the same event loop, so it cannot slip in between.)
            fresh = ctx.store.job(job.id)
            if fresh is not None and fresh.next_poll_at is not None and fresh.next_poll_at != job.next_poll_at:
                job_fields["next_poll_at"] = min(job_fields["next_poll_at"], fresh.next_poll_at)
    ctx.store.update_job_and_images(job.id, job_fields, image_fields)
    await _skip_deleted_sources(ctx, images, image_fields)


# The provider could not fetch these sources; if the merchant deleted the media, that is why.
SOURCE_ERRORS = {"source_download_failed"}


async def _skip_deleted_sources(ctx: Context, images: list[Image], changes: dict[int, dict[str, Any]]) -> None:
    for image in images:
        if changes.get(image.id, {}).get("error_code") in SOURCE_ERRORS:
            if await ctx.shopify.get_media(image.media_id) is None:
                ctx.store.update_image(image.id, state=ImageState.SKIPPED, error_code="media_deleted",
                                       error_message="the merchant deleted this image before the provider fetched it")
                ctx.log.info("skipped", product_id=image.product_id, media_id=image.media_id, reason="media_deleted")


def record_items(enhancement: Enhancement, images: list[Image]) -> dict[int, dict[str, Any]]:
    """Pure: the changes to make to each still-submitted image for this status answer."""
    changes: dict[int, dict[str, Any]] = {}
    by_index = {image.item_index: image for image in images}
    for index, item in enumerate(enhancement.items):
        image = by_index.get(index)
        if image is None or image.state != ImageState.SUBMITTED:
            continue
        if item.external_id is not None and item.external_id != image.product_legacy_id:
            changes[image.id] = {"state": ImageState.FAILED, "error_code": "result_mismatch",
                                 "error_message": f"item {index} came back for product {item.external_id}"}
        elif item.status == "completed" and item.result_url:
            changes[image.id] = {"state": ImageState.ENHANCED, "result_url": item.result_url}
        elif item.status == "failed":
            changes[image.id] = {"state": ImageState.FAILED, "error_code": item.error_code or "item_failed",
                                 "error_message": item.error_message or "the provider could not enhance this image"}
    if enhancement.is_terminal:
        for image in images:
            if image.state == ImageState.SUBMITTED and image.id not in changes:
                changes[image.id] = {"state": ImageState.FAILED, "error_code": "missing_result",
                                     "error_message": f"the enhancement ended {enhancement.status} without this item"}
    return changes
