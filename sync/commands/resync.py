"""`retouch resync`: rescan the store ignoring the cursor, queue what is not done, run until finished.

`--dry-run` runs the same discovery against a throw-away copy of the database: the decisions are
the real ones, the provider is never called and the real database is not changed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from retouch.storage.models import ImageState
from retouch.storage.store import Store

from ..config import Settings
from ..pipeline import Context, discover, revert
from ..runtime import open_context, pending_among, run_until_settled
from ..systemd import is_held

# AI Gen Studio charges 5 credits per image on live keys (CONTRACTS.md §1, Credits).
CREDITS_PER_IMAGE = 5


async def resync_command(settings: Settings, *, product_ids: list[str] | None, include_baseline: bool,
                         force: bool, dry_run: bool, yes: bool) -> int:
    if dry_run or (include_baseline and not yes):
        planned = await _plan(settings, product_ids, include_baseline=include_baseline, force=force)
        cost = 0 if settings.provider_is_sandbox else len(planned) * CREDITS_PER_IMAGE
        if dry_run:
            for image in planned:
                typer.echo(f"would send {image.product_id} {image.media_id} {image.source_url or '(not ready yet)'}")
            typer.echo(f"dry run: {len(planned)} image(s) would be sent, {cost} credits "
                       f"({'sandbox key: free' if settings.provider_is_sandbox else 'live key'}); nothing was sent")
            return 0
        if not sys.stdin.isatty():
            typer.echo(f"resync --all would send {len(planned)} image(s) for {cost} credits; "
                       "confirm with --yes (no terminal to ask on)", err=True)
            return 2
        if not typer.confirm(f"Send {len(planned)} image(s) for {cost} credits?"):
            typer.echo("nothing sent")
            return 0

    async with open_context(settings) as ctx:
        if force:
            reverted, failures = await revert(ctx, product_ids)
            typer.echo(f"restored {reverted} original(s) before re-enhancing")
            for line in failures:
                typer.echo(f"could not restore: {line}", err=True)
        await _scan(ctx, product_ids, include_baseline=include_baseline, force=force)
        target = [i.id for i in ctx.store.images_in_state(ImageState.DISCOVERED, product_ids=product_ids)]
        daemon_pid = is_held(settings.database_path)
        if daemon_pid:
            typer.echo(f"the daemon (pid {daemon_pid}) runs on this database: it does the work; waiting for it")
        with Progress(TextColumn("enhancing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=not sys.stderr.isatty()) as progress:
            bar = progress.add_task("images", total=len(target))
            show = lambda left: progress.update(bar, completed=len(target) - left)  # noqa: E731
            if daemon_pid:
                await _wait_for_daemon(ctx, target, show)
            else:
                await run_until_settled(ctx, target, progress=show)
        results = Counter(ctx.store.image(i).state for i in target)  # type: ignore[union-attr]
        typer.echo(f"resync: {len(target)} image(s): {results.get('done', 0)} done, "
                   f"{results.get('failed', 0)} failed, {results.get('skipped', 0)} skipped")
        for image_id in target:
            image = ctx.store.image(image_id)
            if image and image.state == ImageState.FAILED:
                typer.echo(f"failed: {image.product_id} {image.media_id}: {image.error_code} {image.error_message}",
                           err=True)
        return 1 if results.get("failed") else 0


async def _wait_for_daemon(ctx: Context, target: list[int], show) -> None:
    """Two processes must not both submit: with a daemon running, resync only queues and watches."""
    while (left := pending_among(ctx, target)) > 0:
        show(left)
        await asyncio.sleep(max(0.2, ctx.settings.schedule.tick))
    show(0)


async def _scan(ctx: Context, product_ids: list[str] | None, *, include_baseline: bool, force: bool) -> Counter:
    return await discover(ctx, product_ids=product_ids, full=True,
                          include_baseline=include_baseline or product_ids is not None, include_reverted=force)


async def _plan(settings: Settings, product_ids: list[str] | None, *, include_baseline: bool, force: bool):
    """The images a resync would send, decided on a copy of the database."""
    with tempfile.TemporaryDirectory(prefix="retouch-plan-") as tmp:
        copy = Path(tmp) / "plan.db"
        real = Store(settings.database_url)
        try:
            real.copy_to(str(copy))
        finally:
            real.close()
        store = Store(f"sqlite:///{copy}")
        try:
            async with open_context(settings, store=store) as ctx:
                if force:
                    for image in ctx.store.images_in_state(ImageState.DONE, product_ids=product_ids):
                        ctx.store.update_image(image.id, state=ImageState.REVERTED)
                await _scan(ctx, product_ids, include_baseline=include_baseline, force=force)
                return ctx.store.images_in_state(ImageState.DISCOVERED, product_ids=product_ids)
        finally:
            store.close()
