"""`retouch sandbox`: a fake store and a fake provider on loopback, and a config that uses them."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

SANDBOX_SHOP_TOKEN = "shpat_sandbox_0123456789abcdef"
SANDBOX_PROVIDER_KEY = "aigen_test_sandbox0123456789"


def render_config(*, shop_url: str, provider_url: str, database: Path | None = None,
                  backup_dir: Path | None = None, window: str = "1h", fast: bool = False) -> str:
    """A complete config for the sandboxes; `fast` shortens every interval (demo and tests)."""
    lines = [
        "# Written by retouch for its sandboxes; see config.example.toml for every key.",
        "[shop]", f'url = "{shop_url}"', f'access_token = "{SANDBOX_SHOP_TOKEN}"', 'api_version = "2026-07"', "",
        "[provider]", 'name = "aigenstudio"', f'api_key = "{SANDBOX_PROVIDER_KEY}"', f'base_url = "{provider_url}"', "",
        "[aigenstudio]", 'preset = "single_product_white_background"', 'preservation_level = "strict"',
        f'limits = {{ window = "{window}", jobs = 5, images = 25, polls = 120, active_jobs = 1 }}', "",
        "[selection]", "new_only = true", 'exclude_tags = ["no-retouch"]', "",
        "[writeback]", 'mode = "replace"',
    ]
    if backup_dir:
        lines.append(f'backup_dir = "{backup_dir}"')
    lines += ["", "[schedule]"]
    lines += (['discover_every = "2s"', 'poll_every = "1s"', 'tick = "0.5s"'] if fast
              else ['discover_every = "30s"', 'poll_every = "5s"'])
    if database:
        lines += ["", "[storage]", f'url = "sqlite:///{database}"']
    return "\n".join(lines) + "\n"


def start_sandboxes(*, port: int = 0, products: int = 12, window_seconds: float = 3600,
                    seconds_per_item: float = 2.0, processing_seconds: float = 0.5):
    shop = ShopifySandbox(access_token=SANDBOX_SHOP_TOKEN, processing_seconds=processing_seconds)
    shop_server = shop.start(port)
    if products:
        shop.seed(products=products, images_per_product=1, seed=0)
    provider = AigenSandbox(window_seconds=window_seconds, seconds_per_item=seconds_per_item)
    provider_server = provider.start(port + 1 if port else 0)
    return shop, shop_server, provider, provider_server


def sandbox_command(*, port: int, products: int, config_out: Path | None) -> int:
    shop, shop_server, provider, provider_server = start_sandboxes(port=port, products=products)
    config = render_config(shop_url=shop.shop_url, provider_url=provider_server.url)
    typer.echo(f"Shopify sandbox:       {shop.shop_url}  (admin API: {shop.shop_url}/_sandbox/products)")
    typer.echo(f"AI Gen Studio sandbox: {provider_server.url}")
    if config_out:
        config_out.write_text(config)
        typer.echo(f"config written to {config_out}")
    else:
        typer.echo("\n--- config.toml ---\n" + config + "-------------------")
    typer.echo("Serving until Ctrl-C.")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    shop_server.stop()
    provider_server.stop()
    return 0
