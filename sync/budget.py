"""The daily budget: what the provider charged today, and how many more images [budget] allows.

Counted from what the provider reports for finished jobs (AI Gen Studio's credits_used, ProductAI's
tokens by model, Imagen's edited images), and from the full estimate for jobs still on their way;
jobs the provider rejected cost nothing. Shared by submit (which pauses at the cap) and `status`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from retouch.storage.models import JobState
from retouch.storage.store import Store

from .config import Settings
from .costs import last_reported_balance
from .decisions import budget_left, last_midnight


def spent_since(settings: Settings, store: Store, since: float, *, pending: bool = True) -> tuple[int, float]:
    """Images sent and credits spent by the configured provider since `since` (wall clock). `pending`:
    count jobs not accepted yet at their estimate (the budget's caution; `status` shows only what went)."""
    images, credits = 0, 0.0
    per_image = settings.capabilities.credits_per_image
    for job in store.jobs_created_since(settings.provider.name, datetime.fromtimestamp(since, timezone.utc)):
        if job.state == JobState.FAILED or (not pending and job.state == JobState.PENDING):
            continue
        images += job.image_count
        credits += job.credits_used if job.state == JobState.FINISHED else job.image_count * per_image
    return images, credits


def budget_today(settings: Settings, store: Store, now: float) -> tuple[int | None, str]:
    """(images still allowed today or None when no cap is set, "today: 10 of 12 credits, …")."""
    budget = settings.budget
    if budget.max_images_per_day is None and budget.max_credits_per_day is None:
        return None, ""
    images, credits = spent_since(settings, store, last_midnight(now))
    caps = settings.capabilities
    # A provider that may start several paid jobs for one image could spend that much on it.
    left = budget_left(
        images_today=images,
        credits_today=credits,
        max_images=budget.max_images_per_day,
        max_credits=budget.max_credits_per_day,
        credits_per_image=caps.credits_per_image * caps.max_attempts,
    )
    parts = []
    if budget.max_credits_per_day is not None:
        parts.append(f"{credits:g} of {budget.max_credits_per_day} {caps.credit_unit}")
    if budget.max_images_per_day is not None:
        parts.append(f"{images} of {budget.max_images_per_day} images")
    return left, "today: " + ", ".join(parts)


BALANCE_MEMORY = 30 * 86400.0  # an older report says little about today's balance


def reported_balance(settings: Settings, store: Store, now: float) -> tuple[float, datetime] | None:
    """The provider's balance as it last reported it (with the job sent at that time); None for a
    sandbox key (free) or when no job in the last 30 days carries one."""
    if settings.provider_is_sandbox:
        return None
    since = datetime.fromtimestamp(now - BALANCE_MEMORY, timezone.utc)
    return last_reported_balance(
        (job.created_at, job.provider_state) for job in store.jobs_created_since(settings.provider.name, since)
    )
