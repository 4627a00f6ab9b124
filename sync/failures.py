"""Repeated failures in the journal: one line per occurrence with its reason, the traceback once.

A full disk under the database fails every step, every tick, the same way ("database or disk is
full", ENOSPC): a chained traceback each time buries everything else. The first failure of a kind
shows its traceback (where it happened is worth reading once); the next ones say only what and where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBERS = re.compile(r"\d+")


def first_line(exc: BaseException) -> str:
    """The exception's own message (SQLAlchemy appends the SQL and a link on later lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def failure_reason(exc: BaseException, limit: int = 300) -> str:
    """ "OperationalError: (sqlite3.OperationalError) database or disk is full" """
    line = first_line(exc)
    return (f"{type(exc).__name__}: {line}" if line else type(exc).__name__)[:limit]


def failure_kind(exc: BaseException) -> tuple[str, str]:
    """Failures of one kind: the same class and the same message once numbers (ids, sizes, line
    numbers) are set aside."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}", _NUMBERS.sub("N", first_line(exc))[:120]


@dataclass
class TracebackOnce:
    """Which kinds of failure have shown their traceback already (bounded: a process meets few kinds)."""

    limit: int = 200
    shown: set[tuple[str, str]] = field(default_factory=set)

    def first(self, exc: BaseException) -> bool:
        """True the first time this kind of failure is met (show its traceback); False after."""
        kind = failure_kind(exc)
        if kind in self.shown or len(self.shown) >= self.limit:
            return False
        self.shown.add(kind)
        return True
