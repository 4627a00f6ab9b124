"""A sliding-window request counter: at most `limit` requests in any `length` seconds.

Sliding rather than fixed windows because it is the strictest reading of "15 requests per
minute" (CONTRACTS.md §3; see contract.py). The same class, with no limit, measures the busiest
window a key ever had, so a test can prove the budget was never exceeded.
"""

from __future__ import annotations

import math
from collections import deque


class SlidingWindow:
    def __init__(self, limit: float, length: float) -> None:
        self.limit = limit
        self.length = length
        self._times: deque[float] = deque()
        self.peak = 0  # the most requests counted in any one window so far

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.length:
            self._times.popleft()

    def try_acquire(self, now: float) -> bool:
        """Count one request at `now` if the budget allows it; False (nothing counted) if not."""
        self._forget(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        self.peak = max(self.peak, len(self._times))
        return True

    def in_window(self, now: float) -> int:
        self._forget(now)
        return len(self._times)


def unlimited(length: float) -> SlidingWindow:
    """A window that never refuses: only its `peak` matters."""
    return SlidingWindow(math.inf, length)
