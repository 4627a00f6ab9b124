"""Which file a SQLite URL opens, and whether that file can be a retouch database.

The URL's text is not the file: `sqlite:////x/retouch.db?mode=rwc` opens /x/retouch.db,
`sqlite:////x/a%20b.db` opens "/x/a b.db", and `?uri=true` makes the path a `file:` URI. The
one-daemon lock and every message name the file SQLite actually opens (`sqlite_file`).

`database_problem` looks at the file before SQLite does: SQLite opening a FIFO waits forever for
its header, and a directory, a device or a text file only fail deep inside SQLAlchemy. It only
stats the file, never opens it: closing any descriptor of a database file drops every POSIX lock
this process holds on it, SQLite's included (the daemon checks its config again on SIGHUP).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def sqlite_file(url: str) -> Path:
    """The database file `url` opens; ValueError for an in-memory or nameless database (retouch
    must remember what it did across restarts) or a URL SQLAlchemy cannot read."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"not a database URL ({exc})") from None
    database = parsed.database or ""
    if any(ord(char) < 0x20 for char in database):
        raise ValueError("the file name holds a control character (a NUL, a line break…)")
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        if str(parsed.query.get("mode", "")).lower() == "memory":
            database = ":memory:"
        else:
            database = unquote(urlsplit(database).path)
    if len(database) > 4000 or any(len(part) > 255 for part in database.split("/")):
        raise ValueError("the path is longer than a file system takes (4,000 characters, 255 a name)")
    if not database:
        raise ValueError("names no database file: write it as 'sqlite:////var/lib/retouch/retouch.db'")
    if database == ":memory:" or database.startswith(("file::memory:", ":memory:")):
        raise ValueError(
            "an in-memory database forgets every image at each restart (and each command "
            "would see its own); name a file: 'sqlite:////var/lib/retouch/retouch.db'"
        )
    return Path(database)


def database_problem(path: Path) -> str | None:
    """Why `path` cannot be a retouch database, or None (a missing file is fine: it is created)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror or type(exc).__name__})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a database file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a FIFO, a device or a socket), so it cannot hold a database"
    for sidecar in (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")):
        # SQLite opens these itself, following symlinks: a link there would have it write elsewhere.
        try:
            side = os.lstat(sidecar)
        except OSError:
            continue
        if stat.S_ISLNK(side.st_mode) or not stat.S_ISREG(side.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(side.st_mode) else "not a regular file"
            return f"cannot be opened safely: {sidecar.name} beside it is {kind}; remove {sidecar}"
    if info.st_size % 512:
        # Every SQLite page size is a multiple of 512 bytes, so every SQLite file is too.
        return (
            f"is not an SQLite database, or a truncated one ({info.st_size:,} bytes, not a whole number of "
            "pages): restore it from a backup, or point [storage] url at another file"
        )
    return None
