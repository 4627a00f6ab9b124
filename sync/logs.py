"""structlog set-up: JSON lines for journald, a readable console on a terminal, secrets redacted.

The redaction processor runs last before rendering, over every value of every event (including a
formatted exception), so a token that slips into a message or a URL is still never written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

REDACTED = "[REDACTED]"


class Redactor:
    """A structlog processor replacing every known secret value with [REDACTED]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole. Very short values are
        # skipped: replacing "a" everywhere would destroy the log without protecting anything.
        merged = set(self.secrets) | {s for s in secrets if s and len(s) >= 6}
        self.secrets = sorted(merged, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub(repr(value)) if self.secrets else value

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {key: self.scrub(value) for key, value in event_dict.items()}


REDACTOR = Redactor()


def configure(level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (), stream=None) -> None:
    stream = stream or sys.stderr
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
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
