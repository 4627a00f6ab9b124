"""The CLI's stdout and stderr, scrubbed: whatever a command prints (a status table, a check line, a
JSON document, a log line) passes the one redactor (logs.REDACTOR) a whole line at a time, so a
secret quoted by a service never reaches the terminal or the journal — whichever code printed it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

# Exact texts the CLI shows although they hold a secret, because the owner needs them: the webhook
# URL with its path token that `check` tells them to paste into a provider's dashboard. Only these
# exact strings, which we build ourselves, are let through; anything else with the token is scrubbed.
_SHOWN: set[str] = set()


def may_show(text: str) -> None:
    """Let this exact text reach the terminal whole (see _SHOWN)."""
    if text:
        _SHOWN.add(text)


def _scrub_keeping_shown(scrub: Callable[[str], str], text: str) -> str:
    kept = [shown for shown in _SHOWN if shown in text]
    for number, shown in enumerate(kept):
        text = text.replace(shown, f"\x00{number}\x00")
    text = scrub(text)
    for number, shown in enumerate(kept):
        text = text.replace(f"\x00{number}\x00", shown)
    return text


class ScrubbedStream:
    """A text stream that holds back an unfinished line until its end (a secret split over two
    writes is still one line when scrubbed), then writes it scrubbed to `target`."""

    def __init__(self, target: TextIO, scrub: Callable[[str], str]) -> None:
        self._target = target
        self._scrub = scrub
        self._pending = ""

    def write(self, text: str) -> int:
        data = self._pending + text
        complete, newline, rest = data.rpartition("\n")
        self._pending = rest
        if newline:
            self._target.write(_scrub_keeping_shown(self._scrub, complete + newline))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self._target.write(_scrub_keeping_shown(self._scrub, self._pending))
            self._pending = ""
        self._target.flush()

    @property
    def buffer(self) -> Any:
        # No way around the scrubber through the binary buffer (click would write bytes there).
        raise AttributeError("buffer")

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, errors, ...
        return getattr(self._target, name)


def scrub_standard_streams(scrub: Callable[[str], str]) -> None:
    """Put sys.stdout and sys.stderr behind `scrub` (once; the process's whole life)."""
    if not isinstance(sys.stdout, ScrubbedStream):
        sys.stdout = ScrubbedStream(sys.stdout, scrub)
    if not isinstance(sys.stderr, ScrubbedStream):
        sys.stderr = ScrubbedStream(sys.stderr, scrub)
