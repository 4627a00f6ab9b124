"""AI Gen Studio's documented usage limits as a quota shape (CONTRACTS.md §1, Usage limits)."""

from __future__ import annotations

from typing import Any

from ..quota import QuotaLedger, QuotaLimits
from . import contract

__all__ = ["QuotaLedger", "QuotaLimits", "documented_limits"]


def documented_limits(**overrides: Any) -> QuotaLimits:
    """Per key and per hour: 5 job creations, 25 images, 120 polls, one active job, 20 images a job."""
    values: dict[str, Any] = {
        "window": contract.WINDOW_SECONDS,
        "jobs": contract.JOBS_PER_WINDOW,
        "images": contract.IMAGES_PER_WINDOW,
        "polls": contract.POLLS_PER_WINDOW,
        "active_jobs": contract.ACTIVE_JOBS_PER_KEY,
        "max_batch": contract.MAX_IMAGES_PER_JOB,
    }
    return QuotaLimits(**{**values, **overrides})
