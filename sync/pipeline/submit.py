"""Submit: send queued images to the provider in batches, paced by the quota.

The job row and its Idempotency-Key are committed before the request (Store.create_job); any
retry — after a timeout, a 5xx, a 429, a 402 or a crash — sends the same key with the same body,
so the provider returns the enhancement it already has instead of charging again.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from retouch.plugin.providers.aigenstudio import errors as provider_errors
from retouch.plugin.providers.aigenstudio.models import SourceImage
from retouch.storage.models import ImageState, Job, JobState, epoch

from ..decisions import backoff, poll_delay, submit_size
from .context import BLOCKED_UNTIL, PAUSED, PROVIDER, Context
from .refresh import refresh_unready


async def submit(ctx: Context) -> int:
    """Send at most one job; returns how many images it carried (0 when nothing could go)."""
    now = ctx.clock()
    paused = ctx.paused()
    if paused and now < paused["retry_at"]:
        return 0
    if ctx.blocked_until() > now:
        return 0
    pending = ctx.store.jobs_in_state(JobState.PENDING)
    if pending:
        # A job whose key is written but whose answer we never stored: finish it first.
        job = pending[0]
        if job.next_attempt_at is not None and job.next_attempt_at > now:
            return 0
        return await _send(ctx, job)
    await refresh_unready(ctx)
    queued = [i for i in ctx.store.images_in_state(ImageState.DISCOVERED, due_by=now) if i.source_url]
    ledger = ctx.ledger()
    limits = ctx.limits
    size = submit_size(ledger.batch_size(len(queued), now, ctx.active_jobs()),
                       images_available=ledger.available("image", now), jobs_available=ledger.available("job", now),
                       max_batch=limits.max_batch, max_hold=limits.window / limits.jobs,
                       oldest_wait=(now - epoch(queued[0].created_at)) if queued else 0.0)
    if size == 0:
        return 0
    batch = queued[:size]
    job = ctx.store.create_job(PROVIDER, f"retouch-{uuid.uuid4().hex}", [i.id for i in batch],
                               options=json.dumps(_request_options(ctx), sort_keys=True))
    ctx.log.info("job_created", job_id=job.id, images=len(batch))
    return await _send(ctx, job)


def _request_options(ctx: Context) -> dict[str, str | None]:
    settings = ctx.settings.aigenstudio
    return {"preset": settings.preset, "preservation_level": settings.preservation_level,
            "instructions": settings.instructions, "webhook_url": ctx.settings.webhook_url}


async def _send(ctx: Context, job: Job) -> int:
    images = ctx.store.job_images(job.id)
    # The options the job was created with (a job from before they were stored: today's).
    options = json.loads(job.options) if job.options else _request_options(ctx)
    log = ctx.log.bind(job_id=job.id)
    try:
        result = await ctx.provider.create_enhancement(
            idempotency_key=job.idempotency_key, **options,
            images=[SourceImage(external_id=i.product_legacy_id, source_url=i.source_url or "") for i in images],
        )
    except provider_errors.RateLimited as exc:
        wait = exc.retry_after if exc.retry_after is not None else ctx.limits.window / ctx.limits.jobs
        until = ctx.clock() + wait
        ctx.store.set_meta(BLOCKED_UNTIL, str(until))
        ctx.store.update_job(job.id, next_attempt_at=until)
        log.warning("rate_limited", retry_after=round(wait, 1))
        return 0
    except (provider_errors.InsufficientCredits, provider_errors.AuthenticationFailed) as exc:
        _pause(ctx, job, exc)
        return 0
    except (provider_errors.IdempotencyConflict, provider_errors.InvalidPayload) as exc:
        # 409 means our key was reused with another body: a bug on our side, never retried blindly.
        level = log.error if isinstance(exc, provider_errors.IdempotencyConflict) else log.warning
        level("job_rejected", code=exc.code, message=exc.message,
              product_ids=[i.product_id for i in images], media_ids=[i.media_id for i in images])
        ctx.store.update_job_and_images(
            job.id, {"state": JobState.FAILED, "error_code": exc.code, "error_message": exc.message},
            {i.id: {"state": ImageState.FAILED, "error_code": exc.code, "error_message": exc.message}
             for i in images},
        )
        return 0
    except provider_errors.AigenError as exc:  # 5xx, timeouts, connection errors, odd bodies: same key later
        attempts = job.attempts + 1
        delay = backoff(attempts, base=ctx.settings.schedule.tick, cap=ctx.settings.schedule.poll_every * 4)
        ctx.store.update_job(job.id, attempts=attempts, next_attempt_at=ctx.clock() + delay,
                             error_code=exc.code or exc.__class__.__name__, error_message=str(exc))
        log.warning("submit_retry", reason=exc.__class__.__name__, attempt=attempts, wait=round(delay, 1))
        return 0

    now = ctx.clock()
    enhancement = result.enhancement
    # The first answer we store for this job uses the quota, whether it was a fresh creation or a
    # replay of a creation we never heard back from.
    ctx.store.add_quota_event(PROVIDER, "job", now)
    ctx.store.add_quota_event(PROVIDER, "image", now, len(images))
    ctx.store.update_job(job.id, provider_job_id=enhancement.id, state=JobState.SUBMITTED,
                         submitted_at=datetime.now(timezone.utc),
                         next_poll_at=now + poll_delay(elapsed=0, total=len(images), finished=0,
                                                       per_item=ctx.seconds_per_item(),
                                                       min_interval=ctx.settings.schedule.poll_every),
                         error_code=None, error_message=None)
    if ctx.paused():
        ctx.store.delete_meta(PAUSED)
        log.info("resumed")
    log.info("submitted", enhancement_id=enhancement.id, images=len(images), replayed=result.replayed,
             sandbox=enhancement.sandbox, credits_reserved=enhancement.credits_reserved)
    return len(images)


def _pause(ctx: Context, job: Job, exc: provider_errors.AigenError) -> None:
    """No credits or a rejected key: keep every image queued, say so, and try again later by itself."""
    now = ctx.clock()
    retry_at = now + ctx.settings.schedule.credits_retry
    reason = ("insufficient_api_credits: buy credits in AI Gen Studio; retouch resumes by itself"
              if isinstance(exc, provider_errors.InsufficientCredits)
              else "the provider rejected the API key: check [provider] api_key")
    ctx.store.set_meta(PAUSED, json.dumps({"reason": reason, "since": now, "retry_at": retry_at}))
    ctx.store.update_job(job.id, next_attempt_at=retry_at, error_code=exc.code, error_message=exc.message)
    ctx.log.error("submissions_paused", reason=reason, job_id=job.id, retry_in=round(retry_at - now))
