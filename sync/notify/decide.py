"""What to tell the owner, and when: pure functions over what the daemon observed.

Events (one line each) are collected per kind in an `Outbox`; a kind is sent as one message once
its first event is `group_for` old, so a burst of 300 failures is one "failed" message listing
products by title (at most `max_lines` lines, then "and N more"), never 300 messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime
from urllib.parse import parse_qsl, unquote, urlsplit

EVENT_KINDS = ("failed", "paused", "unreachable", "daily")
TITLES = {
    "failed": "retouch: images failed",
    "paused": "retouch: submissions paused",
    "unreachable": "retouch: cannot reach a service",
    "daily": "retouch: daily summary",
}


@dataclass(frozen=True)
class Event:
    kind: str
    line: str


@dataclass(frozen=True)
class Message:
    kind: str
    title: str
    body: str


@dataclass
class Outbox:
    """Events waiting to be sent, per kind, with the time the first of them arrived."""

    waiting: dict[str, list[str]] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)

    def add(self, events: list[Event], now: float) -> None:
        for event in events:
            self.waiting.setdefault(event.kind, []).append(event.line)
            self.since.setdefault(event.kind, now)

    def due(self, now: float, group_for: float, max_lines: int) -> list[Message]:
        """The messages whose kind has waited `group_for` since its first event; they leave the outbox."""
        ready = [kind for kind, first in self.since.items() if now - first >= group_for]
        messages = [compose(kind, self.waiting.pop(kind), max_lines) for kind in EVENT_KINDS if kind in ready]
        for kind in ready:
            del self.since[kind]
        return messages


def compose(kind: str, lines: list[str], max_lines: int) -> Message:
    shown = lines[:max_lines]
    more = len(lines) - len(shown)
    body = "\n".join(shown + ([f"… and {more} more"] if more else []))
    return Message(kind, TITLES[kind], body)


def failure_line(title: str, reason: str) -> str:
    return f"{title}: {reason}"


def paused_event(
    paused: dict | None, blocked_until: float, now: float, after: float, told: str | None
) -> tuple[Event | None, str | None]:
    """A pause (no credits, a rejected key, the daily budget) or a rate-limit hold longer than `after`,
    said once per pause: `told` is the key of the last one said (its start), returned updated."""
    if paused:
        key = f"paused:{paused.get('since')}"
        if key == told:
            return None, told
        return Event("paused", str(paused.get("reason") or "submissions paused")), key
    if blocked_until - now >= after:
        key = f"blocked:{round(blocked_until)}"
        if told is not None and told.startswith("blocked:"):
            return None, told
        until = datetime.fromtimestamp(blocked_until).astimezone().strftime("%H:%M")
        return Event("paused", f"the provider's rate limit holds submissions until {until}"), key
    return None, None  # nothing holds submissions: the next pause is said again


@dataclass(frozen=True)
class Reach:
    """One service as the daemon's requests saw it (wall clock)."""

    unanswered_since: float | None  # the first request sent after the last answer (None: none since)
    last_answer: float  # the last answer that was not a 5xx (or when watching began)


def unreachable_events(
    reach: dict[str, Reach], now: float, after: float, alerted: frozenset[str]
) -> tuple[list[Event], frozenset[str]]:
    """A service asked but not answering for longer than `after`: said once per outage; an answer ends it."""
    events, down = [], set()
    for name, seen in sorted(reach.items()):
        if seen.unanswered_since is not None and now - seen.last_answer >= after:
            down.add(name)
            if name not in alerted:
                minutes = (now - seen.last_answer) / 60
                events.append(Event("unreachable", f"{name} has not answered for {minutes:.0f} min"))
    return events, frozenset(down)


def daily_due(now_local: datetime, daily_at: dtime, last_sent: str | None) -> bool:
    """Once a day, at `daily_at` local time or at the first look after it (a daemon started later)."""
    return now_local.time() >= daily_at and last_sent != now_local.date().isoformat()


def daily_line(done: int, failed: int, credits: float, unit: str) -> str:
    return f"last 24 hours: {done} done, {failed} failed, {credits:g} {unit} spent"


# ----- secrets in notification URLs --------------------------------------------------------------------------------

_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+", re.IGNORECASE)
_SHORT = 10


def url_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL that may be secret, for REDACTOR: the URL itself, its password,
    and every token-like part (host, path segment, query value: long, with a digit or mixed case;
    not a domain name or an address), since services put their tokens there (tgram://TOKEN/CHAT)."""
    found = [url]
    try:
        parts = urlsplit(url)
        password, user = parts.password, parts.username
    except ValueError:
        return found
    # The host as written (`hostname` lower-cases it, and a token in the host position keeps its case).
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host if host.startswith("[") else host.split(":", 1)[0]
    if password:
        found += [password, unquote(password)]
        if user:
            found.append(f"{user}:{password}")
    candidates = [host, *parts.path.split("/"), *(v for _k, v in parse_qsl(parts.query))]
    for part in candidates:
        part = unquote(part)
        if len(part) < _SHORT or _DOMAIN.fullmatch(part):
            continue
        if any(c.isdigit() for c in part) or (part.lower() != part and part.upper() != part):
            found.append(part)
    return found
