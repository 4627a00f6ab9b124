"""`retouch revert`: put the originals back."""

from __future__ import annotations

import typer

from ..config import Settings
from ..pipeline import revert
from ..runtime import open_context


async def revert_command(settings: Settings, product_ids: list[str] | None) -> int:
    async with open_context(settings) as ctx:
        reverted, failures = await revert(ctx, product_ids)
    typer.echo(f"reverted {reverted} image(s)")
    for line in failures:
        typer.echo(f"failed: {line}", err=True)
    return 1 if failures else 0
