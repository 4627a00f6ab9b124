"""The SQLite engine every Store opens: its connection settings, the scrubbing of every text it
writes, and how its failures are said (storage/store.py says how the store uses it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import create_engine


class StorageError(Exception):
    """The database cannot be used (wrong schema version, unreadable file)."""


def open_failure(exc: DatabaseError, path: Path) -> str:
    """SQLite's reason for refusing a database file, said so the owner knows what to do."""
    reason = str(getattr(exc, "orig", exc)).strip() or type(exc).__name__
    lowered = reason.lower()
    if _read_only_mount(path):
        return ("is on a read-only mount: retouch writes its state there; point [storage] url at a writable "
                "place (the unit's StateDirectory=)")
    if "readonly" in lowered or "read-only" in lowered:
        return ("is read-only (the file, its folder or the mount): retouch writes its state there; "
                "make it writable for the service's user")
    if "not a database" in lowered:
        return "is not an SQLite database (or is encrypted): point [storage] url at another file"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"is damaged ({reason}): restore it from a backup, or move it away to start afresh"
    if "unable to open" in lowered:
        return f"cannot be opened ({reason}): check that its folder exists and is writable"
    return f"cannot be used ({reason})"


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# How long a statement waits for another process's write lock before "database is locked".
# The CLI commands can wait long; the daemon passes a short one (see sync/scheduler.py): its
# statements run in the event loop, and a long wait there would freeze it (and systemd's watchdog).
BUSY_TIMEOUT = 60.0


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's answer when another process held the write lock past our busy timeout."""
    return isinstance(exc, OperationalError) and ("database is locked" in str(exc) or "database is busy" in str(exc))


# Free text written to the database may quote what a service answered, and a service may quote our
# credentials back. Every INSERT and UPDATE through any engine made here passes each of its text
# parameters through this function first (sync installs its one redactor at import: storage may not
# import sync). A hook on the engine, not on each Store method, so that no write can forget it.
_scrub_text: Callable[[str], str] | None = None
_WRITES = ("INSERT", "UPDATE", "REPLACE")


def install_text_scrubber(scrub: Callable[[str], str] | None) -> None:
    """The function every text written to the database passes through (None: none)."""
    global _scrub_text
    _scrub_text = scrub


def _scrubbed(parameters: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(parameters, str):
        return scrub(parameters)
    if isinstance(parameters, tuple):
        return tuple(_scrubbed(value, scrub) for value in parameters)
    if isinstance(parameters, list):
        return [_scrubbed(value, scrub) for value in parameters]
    if isinstance(parameters, dict):
        return {key: _scrubbed(value, scrub) for key, value in parameters.items()}
    return parameters


def _scrub_writes(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                  _executemany: bool) -> tuple[str, Any]:
    scrub = _scrub_text
    if scrub is not None and parameters and statement.lstrip()[:7].upper().startswith(_WRITES):
        parameters = _scrubbed(parameters, scrub)
    return statement, parameters


def make_engine(url: str, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
    event.listen(engine, "before_cursor_execute", _scrub_writes, retval=True)

    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")   # fsync only the commits that need it: see `Store._write`
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")  # another process may hold the write lock
        cursor.close()

    event.listen(engine, "connect", configure)
    return engine
