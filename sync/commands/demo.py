"""`retouch demo`: the whole pipeline against the built-in sandboxes, with a before/after page.

1. start the Shopify and AI Gen Studio sandboxes on free loopback ports and seed a store;
2. a first discovery records the existing photos as the baseline (new_only);
3. the "merchant" adds a new photo to every product;
4. the real daemon (scheduler and all) runs until every new photo is enhanced and READY again;
5. before (the backed-up original) and after (what the store now serves) go into index.html, one row
   per product by title, with the provider and the cost (demo_page.py renders it).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import typer

from retouch.storage.models import PENDING_STATES, Image, ImageState

from ..config import Settings, load_settings
from ..logs import REDACTOR, configure
from ..pipeline import Context, discover
from ..runtime import open_context
from ..scheduler import Daemon
from .demo_page import DemoRow, cost_words, render_page
from .demo_review import free_loopback_socket, review_lines, review_live
from .sandbox import render_config, start_sandboxes

DEMO_TIMEOUT = 110.0  # seconds; the demo promises to finish in under two minutes


async def demo_command(
    *,
    out: Path,
    products: int,
    provider: str = "aigenstudio",
    mode: str = "replace",
    price_per_credit: float | None = None,
    currency: str = "",
    review: bool = False,
) -> int:
    """`review`: instead of the static page, results wait for the owner on the daemon's live review page
    (demo_review.py) until Ctrl-C."""
    started = time.monotonic()
    configure("warning", "console")
    out = out.resolve()  # the config names its files relative to its own folder: relative --out paths doubled
    out.mkdir(parents=True, exist_ok=True)
    work = out / "state"
    work.mkdir(exist_ok=True)
    for old in (work / "retouch.db", work / "retouch.db-wal", work / "retouch.db-shm"):
        old.unlink(missing_ok=True)
    # The provider sandbox answers in the shapes the real service documents (its production profile).
    shop, shop_server, sandbox = start_sandboxes(
        provider=provider,
        products=products,
        fast=True,
        processing_seconds=0.2,
        provider_profile="production",
        shopify_profile="production",
    )  # as unkind as the real Shopify
    sock = None
    try:
        config_path = work / "config.toml"
        extra = _budget_lines(price_per_credit, currency)
        if review:
            sock = free_loopback_socket()
            extra += review_lines(sock)
        config_path.write_text(
            render_config(
                shop_url=shop.shop_url,
                provider=provider,
                sandbox=sandbox,
                database=work / "retouch.db",
                backup_dir=work / "backups",
                fast=True,
                mode=mode,
            )
            + extra
        )
        settings = load_settings(config_path)
        configure("warning", "console", settings.secrets())
        typer.echo(
            f"sandbox store with {products} products at {shop.shop_url} ({shop.profile} profile); "
            f"{settings.plugin.title} sandbox at {sandbox.base_url}"
        )
        async with open_context(settings) as ctx:
            counts = await discover(ctx)
            typer.echo(f"first run: {counts['baseline']} existing photo(s) recorded as baseline, none sent")
            for n, product in enumerate(shop.products()):
                extension = "png" if n % 3 == 2 else "jpg"
                shop.add_image(
                    product["legacy_id"],
                    filename=f"new-photo-{n + 1}.{extension}",
                    alt=f"{product['title']} (new photo)",
                )
            typer.echo(f"the merchant added {products} new photo(s); running the daemon…")
            if sock is not None:  # --review: the daemon serves its review page on this socket
                return await review_live(ctx, sock, expected=products)
            daemon = Daemon(ctx)
            runner = asyncio.create_task(daemon.run())
            expected = products
            while time.monotonic() - started < DEMO_TIMEOUT:
                await asyncio.sleep(0.5)
                counts_now = ctx.store.counts_by_state()
                finished = sum(counts_now.get(s, 0) for s in ("done", "failed", "skipped"))
                pending = sum(counts_now.get(s.value, 0) for s in PENDING_STATES)
                if finished >= expected and pending == 0:
                    break
            daemon.stopping.set()
            await runner
            images = [i for i in ctx.store.images_in_state(ImageState.DONE, ImageState.FAILED, ImageState.SKIPPED)]
            titles = {product["id"]: product["title"] for product in shop.products()}
            page = await _write_page(out, ctx, images, titles=titles, summary=_summary(products, settings, mode))
        done = sum(1 for i in images if i.state == ImageState.DONE)
        elapsed = time.monotonic() - started
        how = (
            "replace mode: same media id, position and alt text"
            if mode == "replace"
            else "append mode: each result added right after its original"
        )
        typer.echo(
            f"{done} of {expected} new photo(s) enhanced and written back in {elapsed:.1f} s ({how}); "
            f"the provider charged {sandbox.charges()} image(s)"
        )
        for image in images:
            if image.state != ImageState.DONE:
                typer.echo(f"  {image.state}: {image.media_id}: {image.error_code} {image.error_message}")
        typer.echo(f"before/after page: {page.resolve()}")
        return 0 if done == expected else 1
    finally:
        if sock is not None:
            sock.close()
        shop_server.stop()
        sandbox.stop()


def _budget_lines(price_per_credit: float | None, currency: str) -> str:
    if price_per_credit is None:
        return ""
    return f"\n[budget]\nprice_per_credit = {price_per_credit!r}\ncurrency = {currency!r}\n".replace("'", '"')


def _summary(products: int, settings: Settings, mode: str) -> str:
    where = "replacing each original" if mode == "replace" else "added right after each original"
    return (
        f"A sandbox store of {products} product(s); the merchant added one photo to each; the real retouch daemon "
        f"sent them to {settings.plugin.title}'s sandbox and wrote the results back to the store, {where}."
    )


def _image_credits(ctx: Context, image: Image) -> float:
    """What the provider charged for this image (its job's credits shared by its images); the price list's
    figure while the job has not reported any."""
    job = ctx.store.job(image.job_id) if image.job_id is not None else None
    if job is not None and job.credits_used and job.image_count:
        return job.credits_used / job.image_count
    return ctx.settings.capabilities.credits_per_image * max(image.paid_attempts, 1)


async def _write_page(out: Path, ctx: Context, images: list[Image], *, titles: dict[str, str], summary: str) -> Path:
    pictures = out / "images"
    pictures.mkdir(exist_ok=True)
    settings = ctx.settings
    caps = settings.capabilities
    rows = []
    async with httpx.AsyncClient(timeout=10) as http:
        for image in sorted(images, key=lambda i: (titles.get(i.product_id, i.product_id), i.id)):
            number = image.media_id.rsplit("/", 1)[-1]
            extension = (image.filename or "x.jpg").rsplit(".", 1)[-1]
            before = pictures / f"{number}-before.{extension}"
            if image.backup_sha256:
                before.write_bytes(ctx.backups.get(image.backup_sha256))
            media = await ctx.shopify.get_media(image.output_media_id or image.media_id)
            after = pictures / f"{number}-after.{extension}"
            if image.state == ImageState.DONE and media and media.url:
                after.write_bytes((await http.get(media.url)).content)
            credits = _image_credits(ctx, image)
            problem = (
                None
                if image.state == ImageState.DONE
                else f"{image.error_code or image.state}: {image.error_message or ''}"
            )
            rows.append(
                DemoRow(
                    title=getattr(image, "product_title", None) or titles.get(image.product_id, image.product_id),
                    filename=image.filename or number,
                    state=str(image.state),
                    cost=cost_words(
                        credits,
                        caps.credit_unit,
                        settings.budget.price_per_credit,
                        settings.budget.currency,
                        sandbox=settings.provider_is_sandbox,
                    ),
                    before=f"images/{before.name}" if before.exists() else None,
                    after=f"images/{after.name}" if after.exists() else None,
                    problem=problem,
                )
            )
    page = out / "index.html"
    html = render_page(
        rows, provider=settings.plugin.title, summary=summary, priced=settings.budget.price_per_credit is not None
    )
    page.write_text(REDACTOR.scrub_text(html))  # a page passes the one scrubber, like the log, the CLI and the server
    return page
