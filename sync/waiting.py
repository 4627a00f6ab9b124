"""Why the queue waits and until when, for `status` (pure: issue 23's "queue ETA: 0 min" beside
"submissions paused" must not happen again)."""

from __future__ import annotations

from datetime import datetime


def queue_wait(*, queued: int, quota_eta: float, now: float, paused: dict | None,
               blocked_until: float, quota_free_at: float | None = None) -> tuple[float, str | None]:
    """(seconds until the queue is sent, counting a pause or a 429 wait first; why it waits, or None).

    `paused` is the pause record ({"reason", "retry_at", ...}); `blocked_until` a 429's end (0: none);
    `quota_free_at` when the provider's quota lets the next image go, if it is used up now."""
    if not queued:
        return 0.0, None
    start, why = 0.0, None
    if paused and paused.get("retry_at") is not None and float(paused["retry_at"]) > now:
        start = float(paused["retry_at"]) - now
        kind = "daily budget" if paused.get("budget") else "paused"
        why = f"{kind}: tried again at {_clock(float(paused['retry_at']))}"
    if blocked_until > now + start:
        start = blocked_until - now
        why = f"rate limited until {_clock(blocked_until)}"
    if why is None and quota_free_at is not None and quota_free_at > now:
        why = f"quota resets at {_clock(quota_free_at)}"
    return start + quota_eta, why


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")  # local: the owner's clock, like the budget's day
