"""`retouch demo`: the whole pipeline against the built-in sandboxes, with a before/after page.

1. start the Shopify and AI Gen Studio sandboxes on free loopback ports and seed a store;
2. a first discovery records the existing photos as the baseline (new_only);
3. the "merchant" adds a new photo to every product;
4. the real daemon (scheduler and all) runs until every new photo is enhanced and READY again;
5. before (the backed-up original) and after (what the store now serves) go into index.html.
"""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path

import httpx
import typer

from retouch.storage.models import PENDING_STATES, Image, ImageState

from ..config import load_settings
from ..logs import REDACTOR, configure
from ..pipeline import Context, discover
from ..runtime import open_context
from ..scheduler import Daemon
from .sandbox import render_config, start_sandboxes

DEMO_TIMEOUT = 110.0  # seconds; the demo promises to finish in under two minutes


async def demo_command(*, out: Path, products: int, provider: str = "aigenstudio", mode: str = "replace") -> int:
    started = time.monotonic()
    configure("warning", "console")
    out.mkdir(parents=True, exist_ok=True)
    work = out / "state"
    work.mkdir(exist_ok=True)
    for old in (work / "retouch.db", work / "retouch.db-wal", work / "retouch.db-shm"):
        old.unlink(missing_ok=True)
    # The provider sandbox answers in the shapes the real service documents (its production profile).
    shop, shop_server, sandbox = start_sandboxes(provider=provider, products=products, fast=True,
                                                 processing_seconds=0.2, provider_profile="production",
                                                 shopify_profile="production")  # as unkind as the real Shopify
    try:
        config_path = work / "config.toml"
        config_path.write_text(render_config(shop_url=shop.shop_url, provider=provider, sandbox=sandbox,
                                             database=work / "retouch.db", backup_dir=work / "backups",
                                             fast=True, mode=mode))
        settings = load_settings(config_path)
        configure("warning", "console", settings.secrets())
        typer.echo(f"sandbox store with {products} products at {shop.shop_url} ({shop.profile} profile); "
                   f"{settings.plugin.title} sandbox at {sandbox.base_url}")
        async with open_context(settings) as ctx:
            counts = await discover(ctx)
            typer.echo(f"first run: {counts['baseline']} existing photo(s) recorded as baseline, none sent")
            for n, product in enumerate(shop.products()):
                extension = "png" if n % 3 == 2 else "jpg"
                shop.add_image(product["legacy_id"], filename=f"new-photo-{n + 1}.{extension}",
                               alt=f"{product['title']} (new photo)")
            typer.echo(f"the merchant added {products} new photo(s); running the daemon…")
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
            page = await _write_page(out, ctx, images)
        done = sum(1 for i in images if i.state == ImageState.DONE)
        elapsed = time.monotonic() - started
        how = ("replace mode: same media id, position and alt text" if mode == "replace"
               else "append mode: each result added right after its original")
        typer.echo(f"{done} of {expected} new photo(s) enhanced and written back in {elapsed:.1f} s ({how}); "
                   f"the provider charged {sandbox.charges()} image(s)")
        for image in images:
            if image.state != ImageState.DONE:
                typer.echo(f"  {image.state}: {image.media_id}: {image.error_code} {image.error_message}")
        typer.echo(f"before/after page: {page.resolve()}")
        return 0 if done == expected else 1
    finally:
        shop_server.stop()
        sandbox.stop()


async def _write_page(out: Path, ctx: Context, images: list[Image]) -> Path:
    pictures = out / "images"
    pictures.mkdir(exist_ok=True)
    rows = []
    async with httpx.AsyncClient(timeout=10) as http:
        for image in images:
            number = image.media_id.rsplit("/", 1)[-1]
            extension = (image.filename or "x.jpg").rsplit(".", 1)[-1]
            before = pictures / f"{number}-before.{extension}"
            if image.backup_sha256:
                before.write_bytes(ctx.backups.get(image.backup_sha256))
            media = await ctx.shopify.get_media(image.output_media_id or image.media_id)
            after = pictures / f"{number}-after.{extension}"
            if media and media.url:
                after.write_bytes((await http.get(media.url)).content)
            rows.append(
                f"<tr><td>{html.escape(image.product_id)}<br><small>{html.escape(image.state)}</small></td>"
                f'<td><img src="images/{before.name}"></td><td><img src="images/{after.name}"></td></tr>')
    page = out / "index.html"
    page.write_text(REDACTOR.scrub_text(  # a page passes the one scrubber, like the log, the CLI and the server
        "<!doctype html><meta charset=utf-8><title>retouch demo</title>"
        "<style>body{font-family:sans-serif}img{width:240px;border:1px solid #ccc}td{padding:6px}</style>"
        "<h1>retouch demo: before and after</h1><table><tr><th>product</th><th>before</th><th>after</th></tr>"
        + "".join(rows) + "</table>"))
    return page
