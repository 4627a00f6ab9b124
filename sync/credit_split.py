"""Balance-limited submission: a job the provider refuses for credits goes again as smaller jobs, so
the balance pays for what it can instead of every image waiting (issue 23).

The provider does not say how much is left when it refuses (AI Gen Studio's 402 names only the
request's cost), so the size halves at each refusal; a refused single image pauses submissions.
"""

from __future__ import annotations

CREDIT_CAP = "provider_credit_cap"  # meta: the most images one job may carry since the balance refused more


def after_refusal(refused: int) -> int:
    """How many images the next job may carry after a job of `refused` images was refused for
    credits; 0: even one is too many, pause."""
    return max(refused, 0) // 2


def capped_size(size: int, cap: str | None) -> int:
    """The job size under the credit cap kept in the meta table (unset or unreadable: no cap)."""
    try:
        limit = int(cap) if cap is not None else None
    except ValueError:
        return size
    return size if limit is None or limit < 1 else min(size, limit)
