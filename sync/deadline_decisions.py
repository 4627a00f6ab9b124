"""Pure decisions about a provider job's deadline (`[provider] max_job_age`): no I/O, no clock.

Every job has one, so nothing waits forever: a status word we do not know, a job the provider
forgot, an export that never ends. Past it, the job is polled once more (it may have finished in
the meantime), then its unfinished images fail with `provider_timeout` and the reason. They are not
sent again by themselves: for a provider without an idempotency key (ProductAI) a new job is a
paid attempt, and a job that stalled once is for the owner to retry (`retouch retry`).
"""

from __future__ import annotations

PROVIDER_TIMEOUT = "provider_timeout"


def is_overdue(*, age: float, max_job_age: float) -> bool:
    """Has the job (sent `age` seconds ago) reached its deadline? The poll made now is its last."""
    return age >= max_job_age


def poll_at_or_before_deadline(next_at: float, *, submitted_at: float, max_job_age: float) -> float:
    """The next poll, never later than the deadline: the last poll happens at the deadline, not a
    whole poll interval after it (and so the job costs no more polls than its schedule up to it)."""
    return min(next_at, submitted_at + max_job_age)


def expire_after_failed_poll(*, overdue: bool, rate_limited: bool) -> bool:
    """A poll past the deadline that failed ends the job: its one more look was spent. A 429 spent
    nothing (the provider refused to count it), so the look is tried again when the limit allows."""
    return overdue and not rate_limited


def timeout_message(*, max_job_age: float, last_status: str) -> str:
    return (
        f"the provider did not finish this job within max_job_age ({_human(max_job_age)}); its last status was "
        f"{last_status or 'unknown'}. It is not sent again by itself: `retouch retry` sends it again"
    )


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
