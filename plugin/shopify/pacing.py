"""Pacing for Shopify's cost-based rate limit: pure arithmetic over what responses report.

Shopify keeps a leaky bucket of query-cost points per app and store. Every GraphQL response carries
`extensions.cost { requestedQueryCost actualQueryCost throttleStatus { maximumAvailable
currentlyAvailable restoreRate } }`. `CostBucket` remembers the last status and when it was seen,
extrapolates the refill since then, and tells the client how long to wait so the next call (whose
cost is estimated from the last call of the same operation) finds enough points: the client paces
itself and rarely or never meets THROTTLED. No I/O and no clock of its own: callers pass `now`.

`backoff_delay` is the "full jitter" exponential backoff used for 429/5xx/timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# Below this many points of deficit we consider the bucket sufficient; it absorbs floating-point
# error so that waiting exactly the computed time never asks for another microscopic wait.
_EPSILON = 1e-9


@dataclass(frozen=True)
class ThrottleStatus:
    """The bucket as Shopify reported it at one moment."""

    maximum_available: float
    currently_available: float
    restore_rate: float


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def parse_throttle_status(cost: Mapping[str, Any] | None) -> ThrottleStatus | None:
    """`extensions.cost.throttleStatus` as a ThrottleStatus, or None when absent or malformed."""
    if not isinstance(cost, Mapping):
        return None
    status = cost.get("throttleStatus")
    if not isinstance(status, Mapping):
        return None
    maximum = _number(status.get("maximumAvailable"))
    current = _number(status.get("currentlyAvailable"))
    rate = _number(status.get("restoreRate"))
    if maximum is None or current is None or rate is None:
        return None
    return ThrottleStatus(maximum_available=maximum, currently_available=current, restore_rate=rate)


def requested_cost(cost: Mapping[str, Any] | None) -> float | None:
    """`extensions.cost.requestedQueryCost`, or None."""
    return _number(cost.get("requestedQueryCost")) if isinstance(cost, Mapping) else None


def actual_cost(cost: Mapping[str, Any] | None) -> float | None:
    """`extensions.cost.actualQueryCost` (None on a THROTTLED answer: nothing ran)."""
    return _number(cost.get("actualQueryCost")) if isinstance(cost, Mapping) else None


class CostBucket:
    """What we know of Shopify's cost bucket for one app and store."""

    def __init__(self, *, default_estimate: float = 10.0) -> None:
        # Before an operation has been seen once, assume it costs about as much as a mutation
        # (Shopify charges 10 points per mutation); the real figure replaces it after one call.
        self.default_estimate = default_estimate
        self.status: ThrottleStatus | None = None
        self.seen_at: float | None = None
        self._estimates: dict[str, float] = {}

    def update(self, cost: Mapping[str, Any] | None, seen_at: float, *, operation: str | None = None) -> None:
        """Record a response's `extensions.cost`, observed at time `seen_at`."""
        status = parse_throttle_status(cost)
        if status is not None:
            self.status = status
            self.seen_at = seen_at
        requested = requested_cost(cost)
        if operation is not None and requested is not None:
            self._estimates[operation] = requested

    def estimate(self, operation: str) -> float:
        """The expected cost of `operation`: what its last call requested, else the default."""
        return self._estimates.get(operation, self.default_estimate)

    def available(self, now: float) -> float | None:
        """Points available at `now`, extrapolating the refill since the last status; None if unknown."""
        if self.status is None or self.seen_at is None:
            return None
        elapsed = max(0.0, now - self.seen_at)
        refilled = self.status.currently_available + elapsed * self.status.restore_rate
        return min(self.status.maximum_available, refilled)

    def delay_for(self, requested_cost: float, now: float) -> float:
        """Seconds to wait from `now` until the bucket holds `requested_cost` points (0 if unknown).

        A request can never need more than a full bucket, so the need is capped at the maximum.
        Right after a THROTTLED answer this is exactly deficit / restoreRate.
        """
        available = self.available(now)
        if available is None or self.status is None or self.status.restore_rate <= 0:
            return 0.0
        need = min(requested_cost, self.status.maximum_available)
        deficit = need - available
        if deficit <= _EPSILON:
            return 0.0
        return deficit / self.status.restore_rate

    def reserve(self, cost: float, now: float) -> None:
        """Take `cost` points out of our picture of the bucket as a request leaves.

        The next response replaces the picture with the truth; until then, other requests sent
        concurrently through the same client see the points as spent and wait accordingly
        (the balance may go negative: that is debt the refill must cover first).
        """
        available = self.available(now)
        if available is None or self.status is None:
            return
        self.status = ThrottleStatus(
            maximum_available=self.status.maximum_available,
            currently_available=available - cost,
            restore_rate=self.status.restore_rate,
        )
        self.seen_at = now


def backoff_delay(attempt: int, fraction: float, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter: `fraction` (uniform in [0, 1)) of min(cap, base * 2**(attempt-1)).

    `attempt` is 1 for the first retry. Taking the random fraction as an argument keeps this pure.
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return fraction * ceiling
