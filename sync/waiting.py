"""Why the queue waits and until when, for `status` (pure: issue 23's "queue ETA: 0 min" beside
"submissions paused" must not happen again), and why each image waits: the reasons are decided here
from the rows and the facts the scheduler already computes; `status` only prints them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def queue_wait(
    *,
    queued: int,
    quota_eta: float,
    now: float,
    paused: dict | None,
    blocked_until: float,
    quota_free_at: float | None = None,
) -> tuple[float, str | None]:
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


# --- each waiting image's reason and time (issue 23: "a held photo waited 12 minutes with no word why") ---


@dataclass(frozen=True)
class QueueFacts:
    """What the scheduler already computes about the queue as a whole, at `now` (status reads them)."""

    now: float
    tick: float  # how often the daemon looks again (unready media, writes to verify)
    provider: str  # the service's title, for "being enhanced by …"
    paused: dict | None = None  # the pause record ({"reason", "retry_at", "budget"?})
    blocked_until: float = 0.0  # a 429's end (0: none)
    go_now: int = 0  # images the quota lets go now (0: used up, or a job holds the slot)
    quota_free_at: float | None = None  # when the quota lets the next image go, if it is used up now
    slot_busy: bool = False  # the provider's active-job limit is reached: the next goes when one ends
    per_window: int = 0  # images the quota lets through per window
    window: float = 0.0
    hold_until: float | None = None  # the first batch is held to fill up until then
    budget_left: int | None = None  # images the daily budget still allows today (None: no cap)
    next_midnight: float = 0.0  # when the daily budget starts again


@dataclass(frozen=True)
class ImageWait:
    image_id: int | None
    label: str  # the product's title (or the file, or the product id)
    reason: str  # "quota resets at 14:42": words for the owner, local time
    until: float | None  # wall clock the wait ends, when it is known
    kind: str = "next"  # enhancing, writing, paused, budget, rate_limited, retry, shopify, held,
    # quota, slot, next: what the progress bar words


@dataclass(frozen=True)
class WaitGroup:
    reason: str
    until: float | None
    images: int
    products: list[str]  # a few of the products waiting for this reason, by title


def image_waits(images: Iterable, facts: QueueFacts) -> list[ImageWait]:
    """Why each pending image (oldest first) is not further along, and until when.

    A queued image's place in line decides which quota window (or budget day) it falls in, counted
    among those the submit step would pick: due now and with a source URL."""
    waits, place = [], 0
    for image in images:
        label = getattr(image, "product_title", None) or image.filename or image.product_id
        kind, reason, until = _why(image, place, facts)
        if image.state == "discovered" and image.source_url and not _retry_pending(image, facts.now):
            place += 1
        waits.append(ImageWait(image.id, label, reason, until, kind))
    return waits


def grouped(waits: Iterable[ImageWait], titles: int = 3) -> list[WaitGroup]:
    """Identical reasons together ("4 images: quota resets at 14:42"), soonest first, a few titles each."""
    groups: dict[str, list[ImageWait]] = {}
    for wait in waits:
        groups.setdefault(wait.reason, []).append(wait)
    out = [
        WaitGroup(reason, members[0].until, len(members), list(dict.fromkeys(w.label for w in members))[:titles])
        for reason, members in groups.items()
    ]
    return sorted(out, key=lambda g: (g.until is None, g.until or 0.0))


def group_line(group: WaitGroup) -> str:
    """One status line: "4 images: quota resets at 14:42 (Blue Shirt, Red Hat, …)"."""
    names = ", ".join(group.products) + (", …" if group.images > len(group.products) else "")
    count = "1 image" if group.images == 1 else f"{group.images} images"
    return f"{count}: {group.reason}" + (f" ({names})" if names else "")


# What holds the whole queue back, for the progress bar ("waiting for the quota until 14:42"), most telling first.
_BAR_WORDS = {
    "paused": "{reason}",
    "budget": "waiting for the daily budget until {clock}",
    "rate_limited": "{reason}",
    "quota": "waiting for the quota until {clock}",
    "held": "{reason}",
    "slot": "{reason}",
    "shopify": "waiting for Shopify to process the originals",
    "retry": "{reason}",
}


def progress_words(waits: list[ImageWait]) -> str:
    """What a progress bar says while its images wait: the work, or the wait and its end."""
    kinds = {wait.kind for wait in waits}
    for kind in ("paused", "budget", "rate_limited"):
        if kind in kinds:
            return _bar(next(wait for wait in waits if wait.kind == kind))
    if kinds & {"enhancing", "writing", "next"}:
        return "enhancing" if "enhancing" in kinds else "writing back" if "writing" in kinds else "sending"
    first = min(
        (wait for wait in waits if wait.kind in _BAR_WORDS), key=lambda w: w.until or float("inf"), default=None
    )
    return _bar(first) if first else ""


def _bar(wait: ImageWait) -> str:
    return _BAR_WORDS.get(wait.kind, "{reason}").format(reason=wait.reason, clock=_clock(wait.until or 0.0))


def _retry_pending(image: Any, now: float) -> bool:
    return image.next_attempt_at is not None and image.next_attempt_at > now


def _why(image: Any, place: int, facts: QueueFacts) -> tuple[str, str, float | None]:
    now, state = facts.now, image.state
    if state == "submitted":
        return "enhancing", f"being enhanced by {facts.provider}", None
    if state in ("enhanced", "backed_up"):
        if _retry_pending(image, now):
            return _retry(image)
        return "writing", "enhanced: being written back to Shopify", None
    if state == "written":
        at = image.next_attempt_at if _retry_pending(image, now) else now + facts.tick
        return "writing", f"waiting for Shopify to process the new picture (checked again at {_clock(at)})", at
    if state == "awaiting_review":
        return "review", "enhanced: waiting for your review", None
    if state != "discovered":
        return state, state, None
    paused = facts.paused
    if paused and paused.get("retry_at") is not None and float(paused["retry_at"]) > now:
        at = float(paused["retry_at"])
        if paused.get("budget"):
            return "budget", f"budget: next credits at {_clock(at)}", at
        return "paused", f"paused: {paused.get('reason') or 'submissions paused'} (tried again at {_clock(at)})", at
    if facts.blocked_until > now:
        return "rate_limited", f"rate limited until {_clock(facts.blocked_until)}", facts.blocked_until
    if _retry_pending(image, now):
        return _retry(image)
    if not image.source_url:
        at = now + facts.tick
        return "shopify", f"waiting for Shopify to process (checked again at {_clock(at)})", at
    if facts.budget_left is not None and place >= facts.budget_left:
        return "budget", f"budget: next credits at {_clock(facts.next_midnight)}", facts.next_midnight
    if place < facts.go_now:
        if facts.hold_until is not None and facts.hold_until > now:
            return "held", f"held to fill a batch until {_clock(facts.hold_until)}", facts.hold_until
        return "next", "next to be sent", None
    if facts.slot_busy and facts.go_now == 0:
        return "slot", f"waiting for the job at {facts.provider} to finish", None
    if facts.per_window <= 0 or facts.window <= 0:
        return "next", "next to be sent", None
    later = (place - facts.go_now) // facts.per_window
    if facts.quota_free_at is not None and facts.go_now == 0:
        at = facts.quota_free_at + later * facts.window
        return "quota", (f"quota resets at {_clock(at)}" if later == 0 else f"quota: sent around {_clock(at)}"), at
    at = now + (later + 1) * facts.window  # every image counted now has left the window by then
    return "quota", f"quota: sent by {_clock(at)}", at


def _retry(image: Any) -> tuple[str, str, float]:
    after = image.error_code or (image.error_message or "an error")[:80]
    return "retry", f"retry at {_clock(image.next_attempt_at)} after {after}", image.next_attempt_at
