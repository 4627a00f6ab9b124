"""`retouch resync`: rescan the store ignoring the cursor, queue what is not done, run until finished.

`--dry-run` runs the same discovery against a throw-away copy of the database: the decisions are
the real ones, the provider is never called and the real database is not changed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from retouch.storage.models import ImageState
from retouch.storage.store import Store

from retouch.plugin.shopify.errors import ShopifyAuthError

from ..claim import ClaimRefused, StoreClaim, claim_store, new_claim
from ..budget import reported_balance
from ..config import Settings
from ..costs import Estimate, images_per_hour
from ..rules import label_of
from ..pipeline import Context, discover, revert
from ..runtime import open_context, pending_among, run_until_settled
from ..systemd import is_held

def affordable(settings: Settings, max_credits: int | None, count: int) -> int:
    """How many of `count` images fit in `max_credits` (at the most an image can cost: every paid
    attempt the provider may make for it)."""
    caps = settings.capabilities
    per_image = caps.credits_per_image * caps.max_attempts
    if max_credits is None or per_image <= 0:
        return count
    return min(count, int(max_credits // per_image))


def run_estimate(settings: Settings, images: int, balance: float | None = None) -> Estimate:
    """The cost and duration of sending `images` with this configuration (sync/costs.py words it)."""
    caps = settings.capabilities
    return Estimate(images=images, credits_per_image=caps.credits_per_image, credit_unit=caps.credit_unit,
                    price_per_credit=settings.budget.price_per_credit, currency=settings.budget.currency,
                    balance=balance, per_hour=images_per_hour(caps.quota), free=settings.provider_is_sandbox)


def _balance(settings: Settings) -> float | None:
    store = Store(settings.database_url)
    try:
        reported = reported_balance(settings, store, time.time())
    finally:
        store.close()
    return reported[0] if reported else None


async def resync_command(settings: Settings, *, product_ids: list[str] | None, include_baseline: bool,
                         force: bool, dry_run: bool, yes: bool, max_credits: int | None = None) -> int:
    caps = settings.capabilities
    if max_credits is not None and is_held(settings.database_path):
        typer.echo("--max-credits: the daemon runs on this database and would send the images itself; "
                   "stop it, or cap it with [budget] max_credits_per_day", err=True)
        return 2
    if dry_run or (include_baseline and not yes):
        planned = await _plan(settings, product_ids, include_baseline=include_baseline, force=force)
        sent = affordable(settings, max_credits, len(planned))
        cost = 0 if settings.provider_is_sandbox else sent * caps.credits_per_image
        what = f"{sent} image(s)" + (f" of {len(planned)} (--max-credits {max_credits})" if sent < len(planned) else "")
        estimate = run_estimate(settings, sent, _balance(settings))
        if dry_run:
            for image in planned[:sent]:
                rule = label_of(image.rule)
                typer.echo(f"would send {image.product_id} {image.media_id} {image.source_url or '(not ready yet)'}"
                           + (f" [rule {rule}]" if rule else ""))
            typer.echo(f"dry run: {what} would be sent, {cost:g} {caps.credit_unit} "
                       f"({'sandbox: free' if settings.provider_is_sandbox else 'live key'}); nothing was sent")
            typer.echo(f"cost and time: {estimate.words()}")
            return 0
        if not sys.stdin.isatty():
            typer.echo(f"resync --all would send {what} for {cost:g} {caps.credit_unit} ({estimate.words()}); "
                       "confirm with --yes (no terminal to ask on)", err=True)
            return 2
        if not typer.confirm(f"Send {what} for {cost:g} {caps.credit_unit} ({estimate.words()})?"):
            typer.echo("nothing sent")
            return 0

    async with open_context(settings) as ctx, _store_claim(ctx) as (refusal, lost):
        if refusal:
            typer.echo(f"resync: {refusal}", err=True)
            return 1
        if force:
            reverted, failures = await revert(ctx, product_ids)
            typer.echo(f"restored {reverted} original(s) before re-enhancing")
            for line in failures:
                typer.echo(f"could not restore: {line}", err=True)
        counts = await _scan(ctx, product_ids, include_baseline=include_baseline, force=force)
        typer.echo(discovery_line(counts))
        target = [i.id for i in ctx.store.images_in_state(ImageState.DISCOVERED, product_ids=product_ids)]
        if max_credits is not None:
            target = _hold_back(ctx, target, max_credits)
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
                await run_until_settled(ctx, target, progress=show, stop=lost)
        if lost.is_set():
            typer.echo("resync: stopped: the store claim was lost (see above); what was in flight is recorded "
                       "and resumed by the next run", err=True)
            return 1
        results = Counter(ctx.store.image(i).state for i in target)  # type: ignore[union-attr]
        typer.echo(f"resync: {len(target)} image(s): {results.get('done', 0)} done, "
                   f"{results.get('failed', 0)} failed, {results.get('skipped', 0)} skipped")
        for image_id in target:
            image = ctx.store.image(image_id)
            if image and image.state == ImageState.FAILED:
                typer.echo(f"failed: {image.product_id} {image.media_id}: {image.error_code} {image.error_message}",
                           err=True)
        return 1 if results.get("failed") else 0


@asynccontextmanager
async def _store_claim(ctx: Context) -> AsyncIterator[tuple[str | None, asyncio.Event]]:
    """Without a daemon on this database, resync works on the store itself: it holds the store claim
    (sync/claim.py) like a daemon, so it never works beside another retouch on the same store;
    yields (the refusal's line, None) when another one holds it; else (None, an event set if the
    claim is lost meanwhile: the work stops). Beside our own daemon (it holds the claim), resync only
    queues, and claims nothing."""
    lost = asyncio.Event()
    if is_held(ctx.settings.database_path):
        yield None, lost
        return
    claim = StoreClaim(lambda: ctx.shopify, new_claim(ctx.settings, time.time()))
    try:
        await claim_store(claim, take_over=False, lock_held=False, patience=60.0)
    except (ClaimRefused, ShopifyAuthError) as exc:
        yield str(exc), lost
        return

    def on_lost(reason: str) -> None:
        typer.echo(f"resync: {reason}", err=True)
        lost.set()

    stop = asyncio.Event()
    keeper = asyncio.create_task(claim.keep(stop, on_lost))
    try:
        yield None, lost
    finally:
        stop.set()
        await asyncio.gather(keeper, return_exceptions=True)
        if not lost.is_set():
            await claim.release()


def discovery_line(counts: Counter) -> str:
    """Which way the catalog was read, for the owner (a bulk export, or page by page)."""
    path = "bulk operation" if counts.get("bulk") else "paged query"
    line = f"discovery: {counts.get('products', 0)} product(s) read by {path}, {counts.get('queued', 0)} image(s) queued"
    if counts.get("partial"):
        line += "; the export was incomplete: run resync --all again to read the rest"
    return line


def _hold_back(ctx: Context, target: list[int], max_credits: int) -> list[int]:
    """Keep the images --max-credits pays for; the others end skipped with the reason (a later
    resync brings them back), so nothing sends them behind the owner's back."""
    sent = affordable(ctx.settings, max_credits, len(target))
    message = f"not sent: resync --max-credits {max_credits} covered {sent} image(s); resync again to send it"
    for image_id in target[sent:]:
        ctx.store.update_image(image_id, state=ImageState.SKIPPED, error_code="credit_cap", error_message=message)
    if sent < len(target):
        typer.echo(f"--max-credits {max_credits}: sending {sent} of {len(target)} image(s); "
                   f"{len(target) - sent} left for a later resync")
    return target[:sent]


async def _wait_for_daemon(ctx: Context, target: list[int], show: Callable[[int], object]) -> None:
    """Two processes must not both submit: with a daemon running, resync only queues and watches."""
    while (left := pending_among(ctx, target)) > 0:
        show(left)
        await asyncio.sleep(max(0.2, ctx.settings.schedule.tick))
    show(0)


async def _scan(ctx: Context, product_ids: list[str] | None, *, include_baseline: bool, force: bool) -> Counter:
    return await discover(ctx, product_ids=product_ids, full=True,
                          include_baseline=include_baseline or product_ids is not None, include_reverted=force)


async def _plan(settings: Settings, product_ids: list[str] | None, *, include_baseline: bool, force: bool) -> list[Any]:
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
                ctx.log = _Quiet(ctx.log)  # type: ignore[assignment]  # the rows a dry run only looked at are not news (issue 23)
                if force:
                    for image in ctx.store.images_in_state(ImageState.DONE, product_ids=product_ids):
                        ctx.store.update_image(image.id, state=ImageState.REVERTED)
                await _scan(ctx, product_ids, include_baseline=include_baseline, force=force)
                return ctx.store.images_in_state(ImageState.DISCOVERED, product_ids=product_ids)
        finally:
            store.close()


class _Quiet:
    """A logger that keeps warnings and errors and drops the info and debug lines (a plan's discovery)."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def bind(self, **fields: Any) -> "_Quiet":
        return _Quiet(self._log.bind(**fields))

    def debug(self, *args: Any, **fields: Any) -> None:
        pass

    info = debug

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)
