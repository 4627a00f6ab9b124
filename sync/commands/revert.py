"""`retouch revert`: put the originals back.

Beside a running daemon it reverts only images the daemon is done with (done or failed); images
still being written are left for a later run, so the two never write the same row or media.
"""

from __future__ import annotations

import sys

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from retouch.storage.models import ImageState

from ..config import Settings
from ..pipeline import revert
from ..pipeline.revert import REVERTIBLE, REVERTIBLE_BESIDE_DAEMON, revertible
from ..runtime import open_context
from ..systemd import is_held


async def revert_command(
    settings: Settings, product_ids: list[str] | None, *, dry_run: bool = False, yes: bool = True
) -> int:
    """`yes`: do not ask first (--yes, or products named one by one); `dry_run`: only count."""
    daemon_pid = is_held(settings.database_path)
    states = REVERTIBLE_BESIDE_DAEMON if daemon_pid else REVERTIBLE
    async with open_context(settings) as ctx:
        images = revertible(ctx, product_ids, states=states)
        what = f"{len(images)} image(s) of {len({i.product_id for i in images})} product(s)"
        if dry_run:
            typer.echo(f"dry run: revert would put back the originals of {what}; nothing was changed")
            return 0
        if images and not yes:
            if not sys.stdin.isatty():
                typer.echo(
                    f"revert --all would put back the originals of {what}; confirm with --yes (no terminal to ask on)",
                    err=True,
                )
                return 2
            if not typer.confirm(f"Put back the originals of {what}?"):
                typer.echo("nothing reverted")
                return 0
        with Progress(
            TextColumn("reverting"), BarColumn(), MofNCompleteColumn(), disable=not sys.stderr.isatty()
        ) as bar:
            task = bar.add_task("images", total=len(images))
            reverted, failures = await revert(
                ctx, product_ids, states=states, progress=lambda done: bar.update(task, completed=done)
            )
            bar.update(task, completed=len(images))
        in_flight = len(ctx.store.images_in_state(ImageState.WRITTEN, product_ids=product_ids)) if daemon_pid else 0
    typer.echo(f"reverted {reverted} image(s)")
    if in_flight:
        typer.echo(
            f"{in_flight} image(s) are still being written by the daemon (pid {daemon_pid}) and were left "
            "alone; run revert again once they are done"
        )
    for line in failures:
        typer.echo(f"failed: {line}", err=True)
    return 1 if failures else 0
