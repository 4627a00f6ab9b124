"""`retouch revert`: put the originals back.

Beside a running daemon it reverts only images the daemon is done with (done or failed); images
still being written are left for a later run, so the two never write the same row or media.
"""

from __future__ import annotations

import typer

from retouch.storage.models import ImageState

from ..config import Settings
from ..pipeline import revert
from ..pipeline.revert import REVERTIBLE, REVERTIBLE_BESIDE_DAEMON
from ..runtime import open_context
from ..systemd import is_held


async def revert_command(settings: Settings, product_ids: list[str] | None) -> int:
    daemon_pid = is_held(settings.database_path)
    async with open_context(settings) as ctx:
        reverted, failures = await revert(ctx, product_ids,
                                          states=REVERTIBLE_BESIDE_DAEMON if daemon_pid else REVERTIBLE)
        in_flight = len(ctx.store.images_in_state(ImageState.WRITTEN, product_ids=product_ids)) if daemon_pid else 0
    typer.echo(f"reverted {reverted} image(s)")
    if in_flight:
        typer.echo(f"{in_flight} image(s) are still being written by the daemon (pid {daemon_pid}) and were left "
                   "alone; run revert again once they are done")
    for line in failures:
        typer.echo(f"failed: {line}", err=True)
    return 1 if failures else 0
