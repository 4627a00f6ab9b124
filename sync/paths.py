"""Where the database and the backups live: one meaning for every path, whatever the working folder.

A relative path in the config file is read against the config file's folder, never the current
one: `retouch status -c /etc/retouch/config.toml` run from the home folder must find the daemon's
database, not create an empty one beside the owner (issue 19: that empty database made a second
daemon on the same store, and an image was paid for twice).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

SQLITE_PREFIX = "sqlite:///"
DATABASE_NAME = "retouch.db"


class PathError(ValueError):
    """The [storage] url cannot be understood; the message says what to write instead."""


def database_file(url: str | None, config_dir: Path, state_dir: Path | None) -> Path:
    """The absolute file of the database for `[storage] url` (None: not set).

    Accepted: a plain file path (`data/retouch.db`, `/var/lib/retouch/retouch.db`, `~/retouch.db`)
    and a SQLite URL (`sqlite:////absolute/retouch.db`). Unset: `$STATE_DIRECTORY/retouch.db` when
    systemd gives one, else `retouch.db` next to the config file.

    The three-slash `sqlite:///data/x.db` is, to SQLAlchemy, relative to the current folder. It is
    resolved against the config folder like a plain relative path rather than refused: the owner
    who wrote it meant "beside my config" (that is where it worked when they tried it), and reading
    it so keeps such configs working for every command from any folder; refusing would only make
    them edit a line whose meaning is already clear.
    """
    if url is None:
        return ((state_dir or config_dir) / DATABASE_NAME).resolve()
    text = url.strip()
    if text.startswith(SQLITE_PREFIX):
        # A URL's %-escapes mean what SQLAlchemy reads them as (`%72etouch.db` is `retouch.db`); a plain path is literal.
        text = unquote(text.removeprefix(SQLITE_PREFIX).split("?", 1)[0])
        if not text:
            raise PathError("names no database file: give a file path like 'data/retouch.db'")
        if text == ":memory:":
            raise PathError(
                "an in-memory database forgets every image at each restart: give a file path like 'data/retouch.db'"
            )
    elif "://" in text or text.startswith("sqlite:"):
        raise PathError(
            "only SQLite is supported: give a file path like 'data/retouch.db' or '/var/lib/retouch/retouch.db'"
        )
    # Checked before the file system sees the path (it raises bare ValueError/OSError for these).
    if any(ord(char) < 0x20 for char in text):
        raise PathError("the file name holds a control character (a NUL, a line break…)")
    if len(text) > 4000 or any(len(part) > 255 for part in text.split("/")):
        raise PathError("the path is longer than a file system takes (4,000 characters, 255 a name)")
    path = Path(text).expanduser()
    return (path if path.is_absolute() else config_dir / path).resolve()


def database_url(file: Path) -> str:
    """The SQLAlchemy URL of an absolute database file (four slashes: sqlite:/// + /path), %-escaped:
    SQLAlchemy decodes `%xx` in it (so does storage/database_file.py), so unescaped, a file named
    `a%20b.db` would be opened as `a b.db`."""
    return f"{SQLITE_PREFIX}{quote(str(file), safe='/')}"


def resolve_dir(path: Path, config_dir: Path) -> Path:
    """A directory from the config: relative ones sit in the config file's folder."""
    path = path.expanduser()
    return (path if path.is_absolute() else config_dir / path).resolve()
