"""Submit: send queued images to the provider in jobs, paced by its quota.

The job row and its key are committed before the request (Store.create_job). For a provider whose
submissions are idempotent (AI Gen Studio's Idempotency-Key; Imagen's project, resumed from the
job's provider state), any retry — after a timeout, a 5xx, a 429, no credits or a crash — simply
sends again. For one that is not (ProductAI starts and charges a job with every request), a send
whose answer never came (or came as a 5xx) may have been charged: it counts as a paid attempt, and the image is only
sent again while it has attempts left (`max_attempts`); otherwise it fails with that reason.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from retouch.plugin.providers import errors as provider_errors
from retouch.storage.lifecycle import Move
from retouch.storage.models import ImageState, Job, JobState

from ..credit_split import CREDIT_CAP, after_refusal
from ..decisions import backoff, next_midnight, poll_delay
from ..rules import options_for, recorded
from .context import BLOCKED_UNTIL, PAUSED, Context
from .jobs import JobProgress, ticket_for
from .preflight import usable_sources
from .refresh import refresh_unready
from .submit_plan import Hold, JobFacts, PauseForDay, plan_job

QUEUE_READ_LIMIT = 1000  # images read for one job when the provider sets no batch limit
UNCERTAIN = "uncertain_send"  # provider state: a send of a non-idempotent job is on its way


async def submit(ctx: Context) -> int:
    """Send at most one job; returns how many images it carried (0 when nothing could go)."""
    now = ctx.clock()
    paused = ctx.paused()
    if paused and now < paused["retry_at"] and not (paused.get("budget") and ctx.budget_left(now)[0] != 0):
        return 0  # (a daily-budget pause lifts early when a reload raised the budget)
    if ctx.blocked_until() > now:
        return 0
    if ctx.jobs(JobState.PENDING):
        return await send_pending(ctx)
    await refresh_unready(ctx)
    limits = ctx.limits
    # No job takes more than max_batch images: reading the whole backlog on every tick would make
    # each image cost more the longer the queue (bench/overhead.py).
    queued = ctx.store.images_in_state(
        ImageState.DISCOVERED, due_by=now, has_source=True, limit=min(limits.max_batch, QUEUE_READ_LIMIT)
    )
    if not queued:
        return 0  # the usual tick: nothing to send, so the quota need not be read (it runs every tick)
    ledger = ctx.ledger()
    left, spent = ctx.budget_left(now)
    # Which images go in the job is decided in pure code (submit_plan.py); this step carries it out.
    # (Its facts are read whole on each tick that finds queued images: the budget and the credit cap
    # are two small reads, no longer skipped when the quota already says wait.)
    plan = plan_job(
        queued,
        JobFacts(
            now=now,
            allowed=ledger.batch_size(len(queued), now, ctx.active_jobs()),
            images_available=ledger.available("image", now),
            jobs_available=ledger.available("job", now),
            max_batch=limits.max_batch,
            max_hold=limits.window / limits.limit("job"),
            budget_left=left,
            budget_spent=spent,
            credit_cap=ctx.store.get_meta(CREDIT_CAP),
        ),
    )
    if isinstance(plan, PauseForDay):
        _pause_for_the_day(ctx, now, plan.spent)
        return 0
    if isinstance(plan, Hold):
        return 0
    batch = await usable_sources(ctx, list(plan.images))
    if not batch:
        return 0
    job = ctx.store.create_job(
        ctx.provider_name,
        f"retouch-{uuid.uuid4().hex}",
        [i.id for i in batch],
        options=json.dumps(rule_options(ctx, batch[0].rule), sort_keys=True),
        backups={i.id: i.backup_sha256 for i in batch if i.backup_sha256},
    )
    ctx.log.info("job_created", job_id=job.id, images=len(batch), provider=ctx.provider_name)
    return await _send(ctx, job)


def rule_options(ctx: Context, recorded_rule: str | None) -> dict:
    """The request options for images queued under this recorded [[rules]] decision (sync/rules.py):
    the provider's own, overlaid by what the rule set for that provider."""
    decided = recorded(recorded_rule)
    if not decided or not decided.get("options"):
        return ctx.provider.request_options()
    if decided.get("provider") != ctx.provider_name:
        # Queued under another provider's rule (a reload switched it): its options mean nothing here.
        ctx.log.warning("rule_options_ignored", rule=decided.get("rule"), provider=ctx.provider_name)
        return ctx.provider.request_options()
    return options_for(ctx.provider, ctx.settings.provider_table, decided["options"])


async def send_pending(ctx: Context) -> int:
    """A job whose key is written but whose answer we never stored: sent again (same key, same
    body) when due; nothing new goes before it. Returns how many images it carried (0: none sent)."""
    pending = ctx.jobs(JobState.PENDING)
    if not pending:
        return 0
    job = pending[0]
    if job.next_attempt_at is not None and job.next_attempt_at > ctx.clock():
        return 0
    return await _send(ctx, job)


async def _send(ctx: Context, job: Job) -> int:
    images = ctx.store.job_images(job.id)
    log = ctx.log.bind(job_id=job.id)
    progress = JobProgress(ctx, job)
    idempotent = ctx.capabilities.idempotent_submit
    if not idempotent:
        if progress.state.get(UNCERTAIN) and _uncertain_spent(ctx, job, images, progress):
            return 0  # we crashed while this send was on its way, and it had no attempt left
        progress.save(**{UNCERTAIN: True})
    try:
        provider_job_id = await ctx.provider.submit(ticket_for(ctx, job, images), progress)
    except provider_errors.RateLimited as exc:
        _clear_uncertain(progress, idempotent)
        fallback = ctx.limits.window / min(ctx.limits.limit("job"), ctx.limits.limit("request"))
        wait = exc.retry_after if exc.retry_after is not None else fallback
        until = ctx.clock() + wait
        ctx.store.set_meta(BLOCKED_UNTIL, str(until))
        ctx.store.update_job(job.id, next_attempt_at=until)
        log.warning("rate_limited", retry_after=round(wait, 1))
        return 0
    except provider_errors.OutOfCredits as exc:
        _clear_uncertain(progress, idempotent)
        smaller = after_refusal(len(images))
        if smaller:
            _split(ctx, job, images, smaller, exc)
        else:
            _pause(ctx, job, exc)
        return 0
    except provider_errors.AuthenticationFailed as exc:
        _clear_uncertain(progress, idempotent)
        _pause(ctx, job, exc)
        return 0
    except (provider_errors.Rejected, provider_errors.NotFound) as exc:
        # A request the provider will never accept (for AI Gen Studio a 409: our key reused with
        # another body, a bug on our side): never retried blindly.
        _clear_uncertain(progress, idempotent)
        log.error(
            "job_rejected",
            code=exc.code,
            message=exc.message,
            product_ids=[i.product_id for i in images],
            media_ids=[i.media_id for i in images],
        )
        _fail(ctx, job, images, exc.code or "rejected", exc.message)
        return 0
    except provider_errors.ProviderError as exc:  # 5xx, timeouts, connection errors, odd bodies
        # No answer, a 5xx or a body we could not read: the job may have started (and been charged)
        # all the same. Only a refusal (4xx, no credits, 429) says for sure that it did not.
        if (
            not idempotent
            and isinstance(exc, provider_errors.Unavailable)
            and _uncertain_spent(ctx, job, images, progress)
        ):
            return 0
        _clear_uncertain(progress, idempotent)
        attempts = job.attempts + 1
        delay = backoff(attempts, base=ctx.settings.schedule.tick, cap=ctx.settings.poll_floor * 4)
        ctx.store.update_job(
            job.id,
            attempts=attempts,
            next_attempt_at=ctx.clock() + delay,
            error_code=exc.code or exc.__class__.__name__,
            error_message=str(exc),
        )
        log.warning("submit_retry", reason=exc.__class__.__name__, attempt=attempts, wait=round(delay, 1))
        return 0

    now = ctx.clock()
    if not idempotent:
        progress.state.pop(UNCERTAIN, None)
    _count_paid(ctx, images)
    first_poll = poll_delay(
        elapsed=0,
        total=len(images),
        finished=0,
        per_item=ctx.seconds_per_item(),
        min_interval=ctx.settings.poll_spacing,
    )
    ctx.store.update_job(
        job.id,
        provider_job_id=provider_job_id,
        state=JobState.SUBMITTED,
        # On the daemon's clock, like next_poll_at: a job's age and deadline are read from it.
        submitted_at=datetime.fromtimestamp(now, timezone.utc),
        next_poll_at=now + first_poll,
        provider_state=json.dumps(progress.state, sort_keys=True),
        error_code=None,
        error_message=None,
    )
    if ctx.paused():
        ctx.store.delete_meta(PAUSED)
        log.info("resumed")
    log.info("submitted", provider_job_id=provider_job_id, images=len(images), **_public(progress.state))
    return len(images)


def _public(state: dict) -> dict:
    """Provider state worth a log line (short scalars only)."""
    return {k: v for k, v in state.items() if isinstance(v, (int, float, bool, str)) and len(str(v)) < 80}


def _uncertain_spent(ctx: Context, job: Job, images: list, progress: JobProgress) -> bool:
    """A send of a non-idempotent job got no answer: count it as paid; True (and the images
    failed) when that was their last attempt."""
    _count_paid(ctx, images)
    _clear_uncertain(progress, False)
    if all(i.paid_attempts + 1 < ctx.capabilities.max_attempts for i in images):
        return False
    _fail(
        ctx,
        job,
        images,
        "submission_uncertain",
        "the provider may have started (and charged) this job, but its answer was lost; "
        "`retouch retry` sends it again on purpose",
    )
    ctx.log.error("submission_uncertain", job_id=job.id, media_ids=[i.media_id for i in images])
    return True


def _count_paid(ctx: Context, images: list) -> None:
    # An increment in the database (the list may predate an uncertain send counted just now).
    ctx.store.count_paid([image.id for image in images])


def _clear_uncertain(progress: JobProgress, idempotent: bool) -> None:
    if not idempotent and progress.state.get(UNCERTAIN):
        progress.state.pop(UNCERTAIN)
        progress.save()


def _fail(ctx: Context, job: Job, images: list, code: str, message: str) -> None:
    ctx.store.update_job_and_images(
        job.id,
        {"state": JobState.FAILED, "error_code": code, "error_message": message},
        {},
        [Move(i.id, "fail", (ImageState.SUBMITTED,), {"error_code": code, "error_message": message}) for i in images],
    )


def _pause_for_the_day(ctx: Context, now: float, spent: str) -> None:
    """The daily budget is used up: every image stays queued until the next day."""
    paused = ctx.paused()
    if paused and paused.get("budget"):
        return
    retry_at = next_midnight(now)
    reason = f"daily budget reached ({spent}); submissions resume at midnight"
    ctx.store.set_meta(PAUSED, json.dumps({"reason": reason, "since": now, "retry_at": retry_at, "budget": True}))
    ctx.log.warning("submissions_paused", reason=reason, retry_in=round(retry_at - now))


def _split(ctx: Context, job: Job, images: list, smaller: int, exc: provider_errors.ProviderError) -> None:
    """Refused for credits (nothing was reserved): the images go back to the queue, and the next jobs
    carry at most `smaller` of them, so the balance pays for what it can."""
    ctx.store.update_job_and_images(
        job.id,
        {
            "state": JobState.FAILED,
            "error_code": exc.code or "out_of_credits",
            "error_message": f"refused for credits; its {len(images)} image(s) go again in smaller jobs",
        },
        {},
        [Move(i.id, "requeue", (ImageState.SUBMITTED,)) for i in images],  # (the job's link cleared with it)
    )
    ctx.store.set_meta(CREDIT_CAP, str(smaller))
    ctx.log.warning("credits_short", job_id=job.id, images=len(images), next_job_images=smaller)


def _pause(ctx: Context, job: Job, exc: provider_errors.ProviderError) -> None:
    """No credits or a rejected key: keep every image queued, say so, and try again later by itself."""
    now = ctx.clock()
    retry_at = now + ctx.settings.schedule.credits_retry
    title = ctx.settings.plugin.title
    reason = (
        f"{exc.code or 'out_of_credits'}: buy credits in {title}; retouch resumes by itself"
        if isinstance(exc, provider_errors.OutOfCredits)
        else "the provider rejected the API key: check [provider] api_key"
    )
    ctx.store.set_meta(PAUSED, json.dumps({"reason": reason, "since": now, "retry_at": retry_at}))
    ctx.store.delete_meta(CREDIT_CAP)  # after the pause, a full job is tried again (credits may have been bought)
    ctx.store.update_job(job.id, next_attempt_at=retry_at, error_code=exc.code, error_message=exc.message)
    ctx.log.error("submissions_paused", reason=reason, job_id=job.id, retry_in=round(retry_at - now))
