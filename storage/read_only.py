"""The database opened for reading only, for plans that must not change a byte (`resync --dry-run`).

`open_read_only(url)` gives a `Store` whose every read method works as usual and whose every write
fails inside SQLite, or None when there is no database file yet (a plan then starts from nothing,
and the file stays absent: creating it would be a write).

Nothing is created or migrated. Two ways of opening, by what is beside the file:
- a `-wal` file exists: another process (the daemon, a resync) has the database open, or one left
  commits in the log. `mode=ro` reads through that log, so the plan sees the latest commits; SQLite
  uses the `-shm` and `-wal` that are already there.
- no `-wal`: the database was closed cleanly and every commit is in the file. `mode=ro` would still
  create a `-wal` and a `-shm` beside it (and leave them), so the file is opened `immutable=1`:
  SQLite reads it and creates nothing. A writer that starts during the plan is not seen; a plan is
  a preview, and the real run reads again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.exc import DatabaseError
from sqlmodel import create_engine

from .database_file import database_problem, sqlite_file
from .models import SCHEMA_VERSION
from .store import StorageError, Store, open_failure


class ReadOnlyStore(Store):
    """A Store over an existing database file that never writes (see the module's docstring)."""

    def __init__(self, path: Path) -> None:  # not super().__init__: it would create and migrate
        self.url = f"sqlite:///{path}"
        self.path = path
        self._probe = None
        wal = path.with_name(path.name + "-wal").exists()
        uri = f"file:{quote(str(path))}?" + ("mode=ro" if wal else "immutable=1")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA query_only=ON")
            return conn

        self.engine = create_engine("sqlite://", creator=connect)
        try:
            version = self.get_meta("schema_version")
        except DatabaseError as exc:
            self.engine.dispose()
            raise StorageError(f"{path} {open_failure(exc, path)}") from None
        if version != str(SCHEMA_VERSION):
            self.engine.dispose()
            raise StorageError(
                f"{path}: schema version {version} is not this retouch's ({SCHEMA_VERSION}); "
                "run any other retouch command once to bring it up to date"
            )


def open_read_only(url: str) -> ReadOnlyStore | None:
    """The database `url` names, read-only; None when the file does not exist yet."""
    try:
        path = sqlite_file(url)
    except ValueError as exc:
        raise StorageError(f"{url}: {exc}") from None
    if not path.exists():
        return None
    problem = database_problem(path)
    if problem:
        raise StorageError(f"{path} {problem}")
    return ReadOnlyStore(path)
