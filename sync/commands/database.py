"""Which database a command uses, said once; the commands that only read or change rows refuse a
database that does not exist instead of creating an empty one (an empty one is a store "never
seen": the sign of a config or folder other than the daemon's)."""

from __future__ import annotations

import typer

from retouch.storage.store import Store

from ..config import Settings

# A usage problem, like a config error (sync/cli.py's exit codes): nothing was done.
NO_DATABASE_EXIT = 2


def missing_database(settings: Settings) -> str | None:
    """The one line to print when the database does not exist, else None."""
    if settings.database_path.is_file():
        return None
    return (
        f"no database at {settings.database_path}; has `retouch run` been started with this config ({settings.path})?"
    )


def announce(settings: Settings) -> None:
    """One short line on stderr (stdout stays the command's own answer). An existing database is
    opened first, so one that cannot be used is the single `database error` line (StorageError,
    printed by sync/cli.py), not a second line after this one."""
    if settings.database_path.exists():
        Store(settings.database_url).close()
    typer.echo(f"database: {settings.database_path}", err=True)


def require_database(settings: Settings) -> None:
    """Announce the database, or refuse (exit 2) when it does not exist."""
    problem = missing_database(settings)
    if problem:
        typer.echo(problem, err=True)
        raise typer.Exit(NO_DATABASE_EXIT)
    announce(settings)
