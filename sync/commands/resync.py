"""`retouch resync`: rescan the store ignoring the cursor, queue what is not done, run until finished.

`--dry-run` plans from reads alone (commands/resync_preview.py): the database opened read-only, Shopify's
catalog read page by page or counted, never a bulk export, no file written. The decisions are the ones
the real run's discovery executes (pipeline/discover_plan.py), and the provider is never called.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from retouch.plugin.shopify.errors import ShopifyAuthError
from retouch.storage.models import PENDING_STATES, ImageState
from retouch.storage.read_only import open_read_only

from ..budget import reported_balance
from ..claim import ClaimRefused, StoreClaim, claim_store, new_claim
from ..config import Settings
from ..costs import Estimate, images_per_hour
from ..logs import logs_above
from ..pipeline import Context, discover, revert
from ..queue_facts import pending_waits
from ..rules import label_of
from ..runtime import open_context, pending_among, run_until_settled
from ..systemd import is_held
from ..waiting import progress_words
from .resync_preview import preview

INTERRUPT_CHOICES = ["leave", "take-back"]  # what a Ctrl-C does with the images still queued


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
    return Estimate(
        images=images,
        credits_per_image=caps.credits_per_image,
        credit_unit=caps.credit_unit,
        price_per_credit=settings.budget.price_per_credit,
        currency=settings.budget.currency,
        balance=balance,
        per_hour=images_per_hour(caps.quota),
        free=settings.provider_is_sandbox,
    )


def _balance(settings: Settings) -> float | None:
    """The balance the provider last reported, read without writing (no database yet: none)."""
    store = open_read_only(settings.database_url)
    if store is None:
        return None
    try:
        reported = reported_balance(settings, store, time.time())
    finally:
        store.close()
    return reported[0] if reported else None


async def resync_command(
    settings: Settings,
    *,
    product_ids: list[str] | None,
    include_baseline: bool,
    force: bool,
    dry_run: bool,
    yes: bool,
    max_credits: int | None = None,
    on_interrupt: str | None = None,
) -> int:
    caps = settings.capabilities
    if max_credits is not None and is_held(settings.database_path):
        typer.echo(
            "--max-credits: the daemon runs on this database and would send the images itself; "
            "stop it, or cap it with [budget] max_credits_per_day",
            err=True,
        )
        return 2
    if dry_run or (include_baseline and not yes):
        plan = await preview(settings, product_ids, include_baseline=include_baseline, force=force)
        sent = affordable(settings, max_credits, plan.images)
        cost = 0 if settings.provider_is_sandbox else sent * caps.credits_per_image
        what = plan.what(sent) + (f" of {plan.images} (--max-credits {max_credits})" if sent < plan.images else "")
        estimate = run_estimate(settings, sent, _balance(settings))
        if dry_run:
            # The images known one by one are listed; a large store's counted ones are not (resync_plan.py).
            for image in plan.exact[:sent]:
                rule = label_of(image.rule)
                typer.echo(
                    f"would send {image.product_id} {image.media_id} {image.source_url or '(not ready yet)'}"
                    + (f" [rule {rule}]" if rule else "")
                )
            if plan.read_line():
                typer.echo(plan.read_line())
            if plan.baseline:
                typer.echo(
                    f"would record {plan.bound + ' ' if plan.bound else ''}{plan.baseline} image(s) as the "
                    "baseline ([selection] new_only): never sent; resync --all sends them"
                )
            typer.echo(
                f"dry run: {what} would be sent, {cost:g} {caps.credit_unit} "
                f"({'sandbox: free' if settings.provider_is_sandbox else 'live key'}); nothing was sent"
            )
            typer.echo(f"cost and time: {estimate.words()}")
            return 0
        if not sys.stdin.isatty():
            typer.echo(
                f"resync --all would send {what} for {cost:g} {caps.credit_unit} ({estimate.words()}); "
                "confirm with --yes (no terminal to ask on)",
                err=True,
            )
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
        interrupted, stop = asyncio.Event(), asyncio.Event()
        relay = asyncio.create_task(_relay(lost, stop))
        live = sys.stderr.isatty()
        # The bar owns the terminal while it is live: log lines go through its console, above it (issue 23).
        with (
            Progress(
                TextColumn("resync"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[doing]}"),
                console=Console(stderr=True),
                disable=not live,
                transient=False,
            ) as progress,
            logs_above(progress.console if live else None),
            _ctrl_c(interrupted, stop, progress.console if live else None),
        ):
            bar = progress.add_task("images", total=len(target), doing="")

            def show(left: int) -> None:
                doing = progress_words(pending_waits(settings, ctx.store, time.time(), target)) if live and left else ""
                progress.update(bar, completed=len(target) - left, doing=doing)

            if daemon_pid:
                await _wait_for_daemon(ctx, target, show, stop)
            else:
                await run_until_settled(ctx, target, progress=show, stop=stop)
        relay.cancel()
        if interrupted.is_set():
            return after_interrupt(ctx, target, on_interrupt, daemon_pid)
        if lost.is_set():
            typer.echo(
                "resync: stopped: the store claim was lost (see above); what was in flight is recorded "
                "and resumed by the next run",
                err=True,
            )
            return 1
        results = Counter(ctx.store.image(i).state for i in target)  # type: ignore[union-attr]
        typer.echo(
            f"resync: {len(target)} image(s): {results.get('done', 0)} done, "
            f"{results.get('failed', 0)} failed, {results.get('skipped', 0)} skipped"
        )
        for image_id in target:
            row = ctx.store.image(image_id)
            if row and row.state == ImageState.FAILED:
                typer.echo(f"failed: {row.product_id} {row.media_id}: {row.error_code} {row.error_message}", err=True)
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
    line = (
        f"discovery: {counts.get('products', 0)} product(s) read by {path}, {counts.get('queued', 0)} image(s) queued"
    )
    if counts.get("partial"):
        line += "; the export was incomplete: run resync --all again to read the rest"
    return line


def _hold_back(ctx: Context, target: list[int], max_credits: int) -> list[int]:
    """Keep the images --max-credits pays for; the others end skipped with the reason (a later
    resync brings them back), so nothing sends them behind the owner's back."""
    sent = affordable(ctx.settings, max_credits, len(target))
    message = f"not sent: resync --max-credits {max_credits} covered {sent} image(s); resync again to send it"
    for image_id in target[sent:]:
        ctx.store.transition(
            image_id, "skip", expect=ImageState.DISCOVERED, error_code="credit_cap", error_message=message
        )
    if sent < len(target):
        typer.echo(
            f"--max-credits {max_credits}: sending {sent} of {len(target)} image(s); "
            f"{len(target) - sent} left for a later resync"
        )
    return target[:sent]


async def _wait_for_daemon(ctx: Context, target: list[int], show: Callable[[int], None], stop: asyncio.Event) -> None:
    """Two processes must not both submit: with a daemon running, resync only queues and watches."""
    while (left := pending_among(ctx, target)) > 0:
        show(left)
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.2, ctx.settings.schedule.tick))
            return
        except TimeoutError:
            pass
    show(0)


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


@contextmanager
def _ctrl_c(interrupted: asyncio.Event, stop: asyncio.Event, console: Console | None) -> Iterator[None]:
    """The first Ctrl-C stops the work after the step in hand (what was sent stays recorded); a second
    one quits at once, as before. `console`: the live bar's, which prints above the bar."""
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        stop.set()
        words = "resync: stopping after the step in hand (Ctrl-C again to quit at once)"
        if console is not None:
            console.print(words, highlight=False, markup=False)
        else:
            typer.echo(words, err=True)

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


TAKEN_BACK = "taken_back"


def after_interrupt(ctx: Context, target: list[int], on_interrupt: str | None, daemon_pid: int | None) -> int:
    """Say what a Ctrl-C left queued (images, credits, money), then leave it for the daemon or take it back
    out of the queue: asked on a terminal, `--on-interrupt` for scripts; with neither, it is left (and said)."""
    images = [ctx.store.image(i) for i in target]
    queued = [i.id for i in images if i is not None and i.state == ImageState.DISCOVERED]
    sent = sum(1 for i in images if i is not None and i.state in PENDING_STATES and i.state != ImageState.DISCOVERED)
    words = run_estimate(ctx.settings, len(queued), _balance(ctx.settings)).words()
    typer.echo(f"resync interrupted: {len(queued)} image(s) still queued ({words})")
    if sent:
        typer.echo(
            f"{sent} image(s) already sent to {ctx.settings.plugin.title}: the daemon or the next "
            "`retouch run` finishes them (they are paid for)"
        )
    if not queued:
        return 130
    choice = on_interrupt
    if choice is None and sys.stdin.isatty():
        try:
            choice = click.prompt(
                "Leave them queued for the daemon, or take them back out of the queue?",
                type=click.Choice(INTERRUPT_CHOICES),
                default="leave",
            )
        except click.Abort:
            choice = "leave"
    elif choice is None:
        typer.echo("no terminal to ask on: left queued (--on-interrupt take-back takes them out)")
        choice = "leave"
    if choice == "take-back":
        moved = take_back(ctx, queued)
        typer.echo(
            f"took {len(moved)} image(s) back out of the queue: nothing sends them; `retouch resync` queues them again"
        )
    else:
        who = f"the daemon (pid {daemon_pid})" if daemon_pid else "the daemon (`retouch run`)"
        typer.echo(f"left {len(queued)} image(s) queued: {who} sends them")
    return 130


def take_back(ctx: Context, image_ids: list[int]) -> list[int]:
    """Out of the queue, only those still queued (compare-and-set: one a daemon has just put in a job is
    left alone); skipped with the reason, so `status` says why and a later resync brings them back."""
    message = "taken back out of the queue when a resync was interrupted; `retouch resync` queues it again"
    return ctx.store.transition(
        image_ids, "skip", expect=ImageState.DISCOVERED, error_code=TAKEN_BACK, error_message=message
    )


async def _scan(ctx: Context, product_ids: list[str] | None, *, include_baseline: bool, force: bool) -> Counter:
    return await discover(
        ctx,
        product_ids=product_ids,
        full=True,
        include_baseline=include_baseline or product_ids is not None,
        include_reverted=force,
    )
