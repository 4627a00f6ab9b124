"""structlog set-up: JSON lines for journald, a readable console on a terminal, secrets redacted.

The redaction processor runs last before rendering, over every value of every event (including a
formatted exception), so a token that slips into a message or a URL is still never written.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO, cast
from urllib.parse import quote, quote_plus

import structlog

REDACTED = "[REDACTED]"


# Credentials by their shape, whoever issued them: what a service may quote back from our request
# (or anyone's), even a token this process never learnt. Each keeps its label and loses its value.
_NOT_DONE = r"(?!\[REDACTED\])"  # a value already replaced is left alone
CREDENTIAL_PATTERNS = [
    # An Authorization header in any quoting: "Authorization: Bearer x", {'authorization': 'Basic x'}
    re.compile(
        r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|apikey)\s+)?+)"
        + _NOT_DONE
        + r"[^\s\"',;}\]\\]+"
    ),
    # A bearer credential anywhere (one with a digit: "Bearer of bad news" stays)
    re.compile(r"(?i)(\bbearer\s+)" + _NOT_DONE + r"(?=[^\s\"',;}\\]*\d)[^\s\"',;}\]\\]{8,}"),
    # The key headers of Shopify and the providers
    re.compile(
        r"(?i)(\b(?:x-shopify-access-token|x-api-key|api-key|x-aigen-key)[\"']?\s*[:=]\s*[\"']?)"
        + _NOT_DONE
        + r"[^\s\"',;}\]\\]+"
    ),
    # Shopify's token shapes: shpat_ (admin), shpca_ (custom app), shpss_ (app secret), shppa_ (private app)
    re.compile(r"()\bshp(?:at|ca|ss|pa)_[A-Za-z0-9]{8,}"),
]
# Words without which a pattern cannot match (lower case): each pattern runs only where its words are.
PATTERN_TRIGGERS = [
    ("authorization",),
    ("bearer",),
    ("x-shopify-access-token", "x-api-key", "api-key", "x-aigen-key"),
    ("shpat_", "shpca_", "shpss_", "shppa_"),
]
_ANY_TRIGGER = re.compile("|".join(re.escape(trigger) for triggers in PATTERN_TRIGGERS for trigger in triggers))
# A key in a query string: ?api_key=..., &access_token=... Not applied to what is stored: the
# database keeps URLs that must keep working (a staged upload's signed resourceUrl).
QUERY_PATTERN = re.compile(
    r"(?i)([?&](?:api_key|apikey|api-key|key|access_token|token)=)" + _NOT_DONE + r"[^&\s\"'#\\]+"
)


def secret_forms(secret: str) -> set[str]:
    """The forms a secret travels in: as is, URL-encoded, JSON-escaped, hex, and base64 (alone, and as the
    user or password half of a Basic `user:password`, at each of the three alignments base64 can
    put it in, so `base64(anyone + ":" + secret)` is caught too)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1], secret.encode().hex()}
    raw = secret.encode()
    for prefix in (b"", b":"):
        for pad in range(3):
            encoded = base64.b64encode(b"\0" * pad + prefix + raw).decode()
            # Skip the characters the padding and alignment touch; keep the stable middle.
            start = (pad + len(prefix) + 2) // 3 * 4
            core = encoded[start : len(encoded) - 4]
            if len(core) >= 8:
                forms.add(core)
    forms.add(base64.b64encode(raw + b":").decode().rstrip("="))
    return {form for form in forms if form}


class Redactor:
    """A structlog processor replacing every known secret value (in each of its forms, see
    `secret_forms`) and every credential-shaped value (CREDENTIAL_PATTERNS) with [REDACTED].

    The one scrubber of the project: the log, every free text written to the database (installed
    into storage/store.py by sync/__init__.py), everything the CLI prints (sync/cli.py) and every
    page the server answers pass through `scrub`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole. Very short values are
        # skipped: replacing "a" everywhere would destroy the log without protecting anything.
        merged = set(self.secrets)
        new = {s for s in secrets if isinstance(s, str) and s and len(s) >= 6} - merged  # each one's forms once
        if not new:
            return
        for secret in new:
            merged |= {form for form in secret_forms(secret) if len(form) >= 6}
        self.secrets = sorted(merged, key=len, reverse=True)

    def scrub_stored(self, value: str) -> str:
        """What the database may keep of `value`: no known secret, no credential-shaped header."""
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        lowered = value.lower()
        if not _ANY_TRIGGER.search(lowered):  # the usual case: one scan instead of every pattern
            return value
        for pattern, triggers in zip(CREDENTIAL_PATTERNS, PATTERN_TRIGGERS, strict=True):
            for trigger in triggers:
                if trigger in lowered:
                    value = pattern.sub(_keep_label, value)
                    break
        return value

    def scrub_text(self, value: str) -> str:
        """What may be shown or logged of `value`: as stored, and no key in a query string either."""
        value = self.scrub_stored(value)
        return QUERY_PATTERN.sub(_keep_label, value) if "=" in value else value

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub(repr(value)) if self.secrets else value

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        return {key: self.scrub(value) for key, value in event_dict.items()}


def _keep_label(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


REDACTOR = Redactor()


def drop_none(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """`error_code=None` on a success says nothing: fields without a value are left out."""
    return {key: value for key, value in event_dict.items() if value is not None}


# The fields worth naming in a line's human `message`, in this order (the rest stay fields of their own).
MESSAGE_FIELDS = ("product_title", "filename", "images", "reason", "error_code")


def add_message(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every JSON line carries a short `message` for a person: the event's words and its key fields
    ("item failed: shirt.jpg, error_code=provider_timeout"). An event that sets its own keeps it."""
    if "message" in event_dict:
        return event_dict
    words = str(event_dict.get("event", "")).replace("_", " ")
    details = [
        str(event_dict[key]) if key in ("product_title", "filename", "reason") else f"{key}={event_dict[key]}"
        for key in MESSAGE_FIELDS
        if key in event_dict
    ]
    event_dict["message"] = words + (": " + ", ".join(details) if details else "")
    return event_dict


class LogStream:
    """Where the log's lines go: the configured stream or, while a progress bar owns the terminal, the
    bar's console, which prints each line above the bar (written straight to the terminal, a line lands
    inside the bar's row and the next redraw leaves it there, broken: issue 23)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.console = None  # a rich Console while a live display owns the terminal
        self._pending = ""

    def write(self, text: str) -> int:
        if self.console is None:
            return self.stream.write(text)
        complete, newline, self._pending = (self._pending + text).rpartition("\n")
        if newline:
            from rich.text import Text  # only with a live display: rich is already loaded then

            self.console.print(Text.from_ansi(complete), soft_wrap=True, highlight=False)
        return len(text)

    def flush(self) -> None:
        if self.console is None:
            self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


LOG_OUTPUT: LogStream | None = None  # the stream of the last configure()


@contextmanager
def logs_above(console: Any) -> Iterator[None]:
    """While the block runs, log lines go through `console` (a rich Progress's), above its bar."""
    output = LOG_OUTPUT
    if output is None or console is None:
        yield
        return
    output.console = console
    try:
        yield
    finally:
        output.console = None
        if output._pending:
            output.stream.write(output._pending + "\n")
            output._pending = ""


def configure(
    level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    global LOG_OUTPUT
    stream = stream or sys.stderr
    LOG_OUTPUT = LogStream(stream)
    REDACTOR.add(secrets)
    # The steps share one lock, so APScheduler often finds a step still waiting and skips a run:
    # expected, and not worth a warning line every tick.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            # UTC in JSON (for machines); local time on a terminal, the owner's clock (the budget's day is local).
            structlog.processors.TimeStamper(fmt="iso", utc=True)
            if json_output
            else structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.processors.format_exc_info,
            drop_none,
            *([add_message] if json_output else []),
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # LogStream is file-like: PrintLogger only calls its write() and flush().
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, LOG_OUTPUT)),
        cache_logger_on_first_use=False,
    )
