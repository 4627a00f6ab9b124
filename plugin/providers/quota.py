"""Pacing under a provider's usage limits: pure decisions over a log of what we used. No I/O.

A provider declares the shape of its quota (`QuotaLimits`): per window, how many job creations,
images, status polls and requests of any kind it allows, and how many jobs may run at once; a
limit of None is not limited. AI Gen Studio allows, per key and per hour, 5 job creations, 25
images, 120 polls and one active job (CONTRACTS.md §1); ProductAI 15 requests of any kind per
minute (§3). Running into a 429 is the exception path; this ledger lets the pipeline schedule
under the limits instead.

Why a *sliding* window: the provider counts in windows whose alignment we do not know (our
sandbox uses fixed windows aligned to the epoch; the real service may differ). If every half-open
interval (t - window, t] holds at most `limit` events, then so does every window [a, a + window)
whatever `a` is — so a ledger that never exceeds a limit in a sliding window is safe against any
fixed-window alignment.

How to record: use wall-clock seconds (`time.time()`), so a ledger rebuilt from SQLite after a
restart means the same thing. Record an event at the moment the provider's response ARRIVED:
the provider counted it no later than that, so our view is never earlier than its view. Clock
skew between us and the provider is not covered: pass a slightly longer `window` to allow for it.
Events are: "job" (one per accepted creation), "image" (count = images in it), "poll" (one per
status request), "request" (one per request of any kind, for providers whose budget is shared).
Replays of an existing job use no quota.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("job", "image", "poll", "request")
_SUBMIT_KINDS = ("job", "image", "request")
_POLL_KINDS = ("poll", "request")
# What an unlimited kind allows: more than any window can use, and still plain integer arithmetic.
UNLIMITED = 10**9


@dataclass(frozen=True)
class QuotaLimits:
    window: float
    jobs: int | None = None
    images: int | None = None
    polls: int | None = None
    requests: int | None = None  # every request (create, poll, anything else) shares this budget
    active_jobs: int | None = None
    max_batch: int = 1

    def __post_init__(self) -> None:
        if not self.window > 0:
            raise ValueError("window must be positive")
        for name in ("jobs", "images", "polls", "requests", "active_jobs", "max_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")

    def limit(self, kind: str) -> int:
        value = {"job": self.jobs, "image": self.images, "poll": self.polls, "request": self.requests}[_checked(kind)]
        return UNLIMITED if value is None else value

    def limited(self, kind: str) -> bool:
        return self.limit(kind) < UNLIMITED

    @property
    def max_active(self) -> int:
        return UNLIMITED if self.active_jobs is None else self.active_jobs


def _checked(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown quota kind {kind!r}; expected one of {KINDS}")
    return kind


class QuotaLedger:
    """What we used, per kind, as (time, count) events; answers "how much may we do, and when"."""

    def __init__(self, limits: QuotaLimits, events: Iterable[tuple[str, float, int]] = ()) -> None:
        self.limits = limits
        self._events: dict[str, list[tuple[float, int]]] = {kind: [] for kind in KINDS}
        self._blocked: dict[str, float] = {kind: -math.inf for kind in KINDS}
        for kind, at, count in events:
            self.record(kind, at, count)

    # --- recording ------------------------------------------------------------------------------

    def record(self, kind: str, at: float, count: int = 1) -> None:
        """Note that `count` units of `kind` were used at wall-clock time `at`."""
        if count < 0:
            raise ValueError("count must not be negative")
        if count:
            # Kept sorted: events rebuilt from storage may arrive in any order.
            bisect.insort(self._events[_checked(kind)], (at, count))

    def block_until(self, until: float, kind: str | None = None) -> None:
        """Allow nothing of `kind` (all kinds when None) before `until` — a 429's Retry-After / reset.

        "job", "image" and "request" gate submissions, so blocking any of them blocks submitting;
        "poll" and "request" gate status requests.
        """
        for blocked_kind in KINDS if kind is None else (_checked(kind),):
            self._blocked[blocked_kind] = max(self._blocked[blocked_kind], until)

    def prune(self, now: float) -> None:
        """Forget events that can no longer count (older than one window), so memory stays flat."""
        horizon = now - self.limits.window
        for kind, events in self._events.items():
            # Events at exactly `horizon` no longer count either: windows are half-open.
            del events[: bisect.bisect_right(events, (horizon, math.inf))]

    # --- questions ------------------------------------------------------------------------------

    def used(self, kind: str, now: float) -> int:
        """Units of `kind` counted in the window (now - window, now] (future events count too)."""
        horizon = now - self.limits.window
        return sum(count for at, count in self._events[_checked(kind)] if at > horizon)

    def available(self, kind: str, now: float) -> int:
        return max(0, self.limits.limit(kind) - self.used(kind, now))

    def batch_size(self, queued: int, now: float, active_jobs: int) -> int:
        """How many of `queued` images may go out in one job now (0: wait)."""
        if queued <= 0 or active_jobs >= self.limits.max_active or now < self._submit_blocked_until():
            return 0
        if self.available("job", now) < 1 or self.available("request", now) < 1:
            return 0
        return min(queued, self.limits.max_batch, self.available("image", now))

    def may_poll(self, now: float) -> bool:
        """Is there budget (and no 429 hold) for one status request now?"""
        return all(self.available(kind, now) > 0 and now >= self._blocked[kind] for kind in _POLL_KINDS)

    def next_submit_at(self, now: float, active_jobs: int, want: int = 1) -> float | None:
        """The earliest time (>= now) a job of min(want, max_batch, images) images fits.

        None while an active job holds the slot: that ends when the job does, not at a known time.
        """
        if active_jobs >= self.limits.max_active:
            return None
        images = max(1, min(want, self.limits.max_batch, self.limits.limit("image")))
        return max(
            now,
            self._submit_blocked_until(),
            self._free_at("job", 1, now),
            self._free_at("image", images, now),
            self._free_at("request", 1, now),
        )

    def next_poll_at(self, now: float, last_poll: float | None, min_interval: float, active_jobs: int) -> float:
        """When the next status request may go out (math.inf when there is no active job to poll).

        The polls still available are spread evenly until the oldest counted poll leaves the
        window (no budget comes back before then), never closer than `min_interval`. With several
        active jobs, poll them in turn: this paces status requests, whichever job they are for.
        """
        if active_jobs <= 0:
            return math.inf
        start = max(now, self._blocked["poll"])
        earliest = start if last_poll is None else max(start, last_poll + min_interval)
        free = self._free_at("poll", 1, start)
        if free > start:  # no budget now: wait for the oldest poll to leave the window
            return max(free, earliest)
        horizon = start - self.limits.window
        counted = [at for at, _ in self._events["poll"] if at > horizon]
        rest = (self._leaves_at(counted[0]) - start) if counted else self.limits.window
        interval = max(min_interval, rest / self.available("poll", start))
        return start if last_poll is None else max(start, last_poll + interval)

    # --- internals ------------------------------------------------------------------------------

    def _leaves_at(self, at: float) -> float:
        """The first time at which an event at `at` no longer counts (`at + window`, float-exact)."""
        leaves = at + self.limits.window
        while leaves - self.limits.window < at:  # rounding may land a hair early
            leaves = math.nextafter(leaves, math.inf)
        return leaves

    def _submit_blocked_until(self) -> float:
        return max(self._blocked[kind] for kind in _SUBMIT_KINDS)

    def _free_at(self, kind: str, need: int, now: float) -> float:
        """The earliest t >= now at which `need` more units of `kind` fit (events only expire after now)."""
        excess = self.used(kind, now) - (self.limits.limit(kind) - need)
        if excess <= 0:
            return now
        horizon = now - self.limits.window
        dropped = 0
        for at, count in self._events[kind]:  # oldest first: they leave the window first
            if at <= horizon:
                continue
            dropped += count
            if dropped >= excess:
                return self._leaves_at(at)
        return math.inf  # unreachable when need <= limit: every event eventually leaves the window
