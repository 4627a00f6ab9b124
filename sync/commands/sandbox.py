"""`retouch sandbox`: a fake store and a fake provider on loopback, and a config that uses them."""

from __future__ import annotations

import inspect
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import typer

from retouch.plugin.providers import registry
from retouch.plugin.providers.base import DemoSandbox
from retouch.plugin.serve import RunningServer
from retouch.plugin.shopify.sandbox import ShopifySandbox

SANDBOX_SHOP_TOKEN = "shpat_sandbox_0123456789abcdef"  # the legacy way; still accepted by the sandbox store
# A Dev Dashboard app installed on the sandbox store: what a new owner has (client credentials).
SANDBOX_CLIENT_ID = "retouch-sandbox-app"
SANDBOX_CLIENT_SECRET = "shpss_sandbox_0123456789abcdef"


def render_config(
    *,
    shop_url: str,
    provider: str,
    sandbox: DemoSandbox,
    database: Path | None = None,
    backup_dir: Path | None = None,
    fast: bool = False,
    mode: str = "replace",
) -> str:
    """A complete config for the sandboxes; `fast` shortens every interval (demo and tests)."""
    lines = [
        "# Written by retouch for its sandboxes; see config.example.toml for every key.",
        "[shop]",
        f'url = "{shop_url}"',
        f'client_id = "{SANDBOX_CLIENT_ID}"',
        f'client_secret = "{SANDBOX_CLIENT_SECRET}"',
        'api_version = "2026-07"',
        "",
        "[provider]",
        f'name = "{provider}"',
        f'api_key = "{sandbox.api_key}"',
        f'base_url = "{sandbox.base_url}"',
        "",
        f"[{provider}]",
        *sandbox.settings_lines,
        "",
        "[selection]",
        "new_only = true",
        'exclude_tags = ["no-retouch"]',
        "",
        "[writeback]",
        f'mode = "{mode}"',
    ]
    if backup_dir:
        lines.append(f'backup_dir = "{backup_dir}"')
    lines += ["", "[schedule]"]
    lines += ['discover_every = "2s"', 'tick = "0.5s"'] if fast else ['discover_every = "30s"']
    if database:
        lines += ["", "[storage]", f'url = "sqlite:///{database}"']
    return "\n".join(lines) + "\n"


def start_sandboxes(
    *,
    provider: str = "aigenstudio",
    port: int = 0,
    products: int = 12,
    fast: bool = False,
    processing_seconds: float = 0.5,
    shopify_profile: str = "default",
    provider_profile: str = "default",
) -> tuple[ShopifySandbox, RunningServer, DemoSandbox]:
    """`shopify_profile` / `provider_profile`: each sandbox's answer shapes ("production": as the real
    service was recorded or documented to answer)."""
    plugin = registry.get(provider)
    if plugin.start_sandbox is None:
        raise registry.PluginError(f"provider {provider!r} ships no sandbox")
    shop = ShopifySandbox(
        access_token=SANDBOX_SHOP_TOKEN,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        processing_seconds=processing_seconds,
        profile=shopify_profile,
    )
    shop_server = shop.start(port)
    if products:
        shop.seed(products=products, images_per_product=1, seed=0)
    try:
        sandbox = _start_provider_sandbox(
            plugin.start_sandbox, fast=fast, port=port + 1 if port else 0, profile=provider_profile
        )
    except BaseException:
        shop_server.stop()
        raise
    return shop, shop_server, sandbox


def _start_provider_sandbox(start: Callable[..., DemoSandbox], *, fast: bool, port: int, profile: str) -> DemoSandbox:
    """A plugin's sandbox in this profile; a plugin whose sandbox has no profiles (an out-of-tree one
    written before them) starts its only one."""
    parameters = inspect.signature(start).parameters.values()
    if any(p.name == "profile" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return start(fast=fast, port=port, profile=profile)
    return start(fast=fast, port=port)


def sandbox_command(
    *,
    provider: str,
    port: int,
    products: int,
    config_out: Path | None,
    shopify_profile: str = "default",
    provider_profile: str = "default",
) -> int:
    shop, shop_server, sandbox = start_sandboxes(
        provider=provider,
        port=port,
        products=products,
        shopify_profile=shopify_profile,
        provider_profile=provider_profile,
    )
    config = render_config(shop_url=shop.shop_url, provider=provider, sandbox=sandbox)
    title = registry.get(provider).title + " sandbox:"
    typer.echo(
        f"{'Shopify sandbox:':<24}{shop.shop_url}  (admin API: {shop.shop_url}/_sandbox/products; "
        f"{shop.profile} profile)"
    )
    typer.echo(f"{title:<24}{sandbox.base_url}  (profile: {provider_profile})")
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
    sandbox.stop()
    return 0
