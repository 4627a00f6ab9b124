"""`retouch password`: set the review page's password. Only its Argon2 hash is kept, in the
database's meta table; the password itself is never stored, logged or shown (a generated one is
printed once, for the owner to keep)."""

from __future__ import annotations

import getpass
import sys

import typer

from retouch.storage.store import Store

from ..config import Settings
from ..web import auth


def read_password() -> str | None:
    """Twice at a terminal (they must match); else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("New password for the review page: ")
        if getpass.getpass("Again: ") != first:
            typer.echo("retouch password: the two passwords differ; nothing changed", err=True)
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def password_command(settings: Settings, *, generate: bool) -> int:
    password = auth.generated_password() if generate else read_password()
    if password is None:
        return 2
    problem = auth.password_problem(password)
    if problem:
        typer.echo(f"retouch password: {problem}; nothing changed", err=True)
        return 2
    store = Store(settings.database_url)
    try:
        store.set_meta(auth.PASSWORD_META, auth.hash_password(password))
    finally:
        store.close()
    where = f"http://{settings.server.listen}/ui/" if settings.server.listen else "/ui/ ([server] listen is not set)"
    if settings.server.public_url:
        where = settings.server.public_url.rstrip("/") + "/ui/"
    if generate:
        typer.echo(f"review page password (shown once, keep it): {password}")
    typer.echo(f"password set (signed-in sessions from before end); the review page: {where}")
    return 0
