"""`retouch review list | approve | reject | redo`: the review queue for owners who live in a terminal.

The twin of the web page's review queue (sync/web/): both call sync/review.py. Safe beside the
daemon: a decision only changes rows (compare-and-set), and the daemon writes what was approved.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime

import typer

from retouch.storage.models import Image, ImageState
from retouch.storage.store import Store

from .. import review
from ..config import Settings


def _money(settings: Settings, credits: float) -> str:
    """' (0.50 EUR)' when [budget] price_per_credit says what a credit costs; else ''."""
    price = settings.budget.price_per_credit
    if price is None or settings.provider_is_sandbox:
        return ""
    return f" ({credits * price:.2f}{' ' + settings.budget.currency if settings.budget.currency else ''})"


def _name(image: Image | review.ReviewItem) -> str:
    """'Blue mug (front.jpg)': the product's title (else its id) and the file."""
    title = image.product_title or image.product_id
    return f"{title} ({image.filename})" if image.filename else title


def list_command(settings: Settings, product: str | None) -> int:
    store = Store(settings.database_url)
    try:
        items = [
            item
            for item in review.waiting_for_review(store)
            if product is None
            or ((image := store.image(item.image_id)) is not None and review.product_matches(image, product))
        ]
    finally:
        store.close()
    unit = settings.capabilities.credit_unit
    if not items:
        typer.echo(
            "nothing waits for review"
            + ("" if settings.review.on else " ([review] mode is off: results are written as they arrive)")
        )
        return 0
    for item in items:
        when = f", finished {datetime.fromtimestamp(item.finished_at):%Y-%m-%d %H:%M}" if item.finished_at else ""
        typer.echo(
            f"#{item.image_id}  {_name(item)}: {item.provider}, {item.credits} {unit}"
            f"{_money(settings, item.credits)}{when}"
        )
        for label, sha in (("before", item.before_sha256), ("after", item.after_sha256)):
            path = review.picture_path(settings, sha or "")
            typer.echo(f"    {label}: {path if path else '(not on disk)'}")
    total = sum(item.credits for item in items)
    typer.echo(
        f"{len(items)} image(s) wait for review ({total:g} {unit}{_money(settings, total)} spent on "
        "them): retouch review approve|reject|redo ID… (or --product, --all)"
    )
    return 0


def _chosen(
    store: Store,
    ids: Sequence[int],
    product: str | None,
    everything: bool,
    states: Sequence[ImageState] = (ImageState.AWAITING_REVIEW,),
) -> list[Image]:
    return review.select_images(store, image_ids=ids, product=product, everything=everything, states=states)


def _report(store: Store, outcome: review.ReviewOutcome, done: str, after: str) -> int:
    """Say what moved (by product title and file) and what did not, with why; exit 1 if any was refused."""
    names = [_name(store.image(i)) for i in outcome.moved]  # type: ignore[arg-type]
    if names:
        typer.echo(f"{done} {len(names)} image(s): {', '.join(names)}{after}")
    for image_id, why in outcome.refused:
        image = store.image(image_id)
        typer.echo(f"#{image_id}{' ' + _name(image) if image else ''}: {why}", err=True)
    if not names and not outcome.refused:
        typer.echo("nothing waits for review there")
    return 1 if outcome.refused else 0


def approve_command(settings: Settings, ids: Sequence[int], product: str | None, everything: bool) -> int:
    store = Store(settings.database_url)
    try:
        chosen = [image.id for image in _chosen(store, ids, product, everything)]
        outcome = review.approve(store, chosen, now=time.time())
        return _report(store, outcome, "approved", "; the daemon writes them to the store" if outcome.moved else "")
    finally:
        store.close()


def reject_command(
    settings: Settings, ids: Sequence[int], product: str | None, everything: bool, reason: str | None
) -> int:
    store = Store(settings.database_url)
    try:
        chosen = [image.id for image in _chosen(store, ids, product, everything)]
        outcome = review.reject(store, chosen, reason=reason or "", now=time.time())
        return _report(store, outcome, "rejected", "; their originals stay in the store" if outcome.moved else "")
    finally:
        store.close()


def redo_command(
    settings: Settings,
    ids: Sequence[int],
    product: str | None,
    everything: bool,
    preset: str | None,
    prompt: str | None,
    yes: bool,
) -> int:
    store = Store(settings.database_url)
    try:
        chosen = [image.id for image in _chosen(store, ids, product, everything, states=review.REDOABLE)]
        if not chosen and not ids:
            typer.echo("nothing to redo there (only results waiting for review or rejected can be redone)")
            return 0
        try:
            quote = review.redo_quote(settings, store, chosen, preset=preset, prompt=prompt)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 2
        if not yes:
            if not sys.stdin.isatty():
                typer.echo(f"{quote}; confirm with --yes (no terminal to ask on)", err=True)
                return 2
            if not typer.confirm(f"{quote[0].upper()}{quote[1:]}. Go ahead?"):
                typer.echo("nothing redone")
                return 0
        outcome = review.redo(store, chosen, preset=preset, prompt=prompt, now=time.time())
        return _report(
            store,
            outcome,
            "queued again",
            f" ({quote.split(': ', 1)[-1]})"
            + ("; each new result waits for review again" if settings.review.on else "")
            if outcome.moved
            else "",
        )
    finally:
        store.close()
