"""`retouch check`: the config is valid; Shopify and the provider answer and accept our credentials;
the service setup works (secrets found, config readable by the service user, state writable,
webhook URL reachable)."""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import typer

from retouch.plugin.providers import errors as provider_errors
from retouch.plugin.shopify.errors import ShopifyAuthError, ShopifyError
from retouch.storage.store import Store

from ..budget import reported_balance
from ..claim import describe_claim
from ..config import Settings
from ..costs import balance_line
from ..redacted_output import may_show
from ..runtime import provider_client, shopify_client
from ..systemd import is_held
from .check_shopify import refusal_line, token_line
from .public_url_check import public_url_findings


async def check_command(settings: Settings) -> int:
    ok = True
    typer.echo(f"config: {settings.path} ok ({'sandbox' if settings.provider_is_sandbox else 'live'} provider key)")
    for good, line in service_setup(settings, os.environ):
        ok = ok and good
        typer.echo(line)
    for good, line in await asyncio.to_thread(public_url_findings, settings):
        ok = ok and good
        typer.echo(line)
    bindable = listen_bindable(settings)
    if bindable is not None:
        ok = ok and bindable[0]
        typer.echo(bindable[1])
    webhook = await webhook_reachable(settings)
    if webhook is not None:
        ok = ok and webhook[0]
        typer.echo(webhook[1])
    if settings.database_path.exists():
        # An existing database is opened as the daemon opens it, so damage or a schema another retouch
        # wrote is the one `database error` line now, not at the daemon's start. A missing one is not
        # created (service_setup said where it will be).
        Store(settings.database_url).close()
    # The clients only: opening the Store would create the database `check` reports on.
    async with _clients(settings) as ctx:
        if settings.public_url:  # the owner pastes this URL (with its path token) into the provider's dashboard
            may_show(ctx.provider.webhook_url(settings.public_url) or "")
        try:
            shop = await ctx.shopify.shop()
            typer.echo(f"shopify: ok — {shop.name} ({shop.domain}), API {settings.shop.api_version}")
            good, line = token_line(settings, ctx.shopify.tokens)
            ok = ok and good
            typer.echo(line)
            typer.echo(await describe_claim(ctx.shopify, settings))
        except ShopifyAuthError as exc:
            ok = False
            typer.echo(refusal_line(settings, exc))
        except ShopifyError as exc:
            ok = False
            typer.echo(f"shopify: cannot reach {settings.shop.url}: {exc}")
        title = settings.plugin.title
        try:
            for good, line in await ctx.provider.describe():
                ok = ok and good
                typer.echo(line)
        except provider_errors.AuthenticationFailed:
            ok = False
            typer.echo(f"provider: {title} rejected the API key — check [provider] api_key")
        except provider_errors.ProviderError as exc:
            ok = False
            typer.echo(f"provider: cannot ask {title} at {settings.provider_base_url}: {exc}")
    if settings.database_path.exists():
        balance = _balance_line(settings)
        if balance:
            typer.echo(balance)
    return 0 if ok else 1


def _balance_line(settings: Settings) -> str | None:
    """The provider's credit balance as it last reported it (AI Gen Studio: with each job sent)."""
    store = Store(settings.database_url)
    try:
        balance = reported_balance(settings, store, time.time())
    finally:
        store.close()
    return balance_line(settings.plugin.title, balance, settings.capabilities.credit_unit)


# ----- the service setup ----------------------------------------------------------------------------

SERVICE_CONFIG_DIR = Path("/etc/retouch")  # the unit's ConfigurationDirectory=


def service_setup(settings: Settings, environ: Mapping[str, str]) -> list[tuple[bool, str]]:
    """(ok, line) for: where each secret comes from, whether the service user can read the config,
    and whether the database and backup directories are writable."""
    found = "; ".join(f"{key} from {source}" for key, source in settings.secret_sources.items())
    results = [(True, f"secrets: found ({found})")]

    mode = settings.path.stat().st_mode
    for_service = bool(environ.get("CONFIGURATION_DIRECTORY")) or settings.path.parent == SERVICE_CONFIG_DIR
    if for_service and not mode & stat.S_IROTH:
        results.append(
            (
                False,
                f"config: {settings.path} is not readable by other users, so the service's "
                "DynamicUser cannot read it: chmod 644 it and keep the secrets in credentials",
            )
        )
    inline = [key for key, source in settings.secret_sources.items() if source == "the config file"]
    if inline and mode & stat.S_IROTH:
        results.append(
            (
                True,
                f"warning: {settings.path} holds {' and '.join(inline)} and every user can read it: "
                "move them to systemd credentials (LoadCredential=) or chmod 600 the file",
            )
        )

    exists = "exists" if settings.database_path.is_file() else "not created yet: `retouch run` creates it"
    results.append((True, f"database file: {settings.database_path} ({exists})"))
    for label, directory in (("database", settings.database_path.parent), ("backups", settings.backup_dir)):
        results.append(_writable(label, directory))
    return results


def _writable(label: str, directory: Path) -> tuple[bool, str]:
    """Can the directory be written, or made by whoever runs the daemon? Never creates it: a check
    that made the folder it reports on would hide the very mistake it is asked to find."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".retouch-check-"):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        where = "" if existing == directory else f"; it does not exist and {existing} takes no new folder"
        return False, f"{label}: cannot write to {directory} ({why}){where}"
    if existing == directory:
        return True, f"{label}: {directory} is writable"
    return True, f"{label}: {directory} does not exist yet; it will be created in {existing}, which is writable"


@asynccontextmanager
async def _clients(settings: Settings) -> AsyncIterator[SimpleNamespace]:
    shopify, provider = shopify_client(settings), provider_client(settings)
    try:
        yield SimpleNamespace(shopify=shopify, provider=provider)
    finally:
        await shopify.aclose()
        await provider.aclose()


def listen_bindable(settings: Settings) -> tuple[bool, str] | None:
    """Can `run` have `[server] listen`? None without a server. With the daemon running, it holds
    the address itself; otherwise the address is bound and released at once."""
    listen = settings.server.listen
    if not listen:
        return None
    if is_held(settings.database_path):
        return True, f"server: {listen} belongs to the running daemon"
    from .run import bind_reason

    sock, reason, _ = bind_reason(listen)
    if sock is None:
        return False, f"server: {reason}"
    sock.close()
    return True, f"server: ok — can listen on {listen}"


async def webhook_reachable(settings: Settings) -> tuple[bool, str] | None:
    """Does `[server] public_url` lead back to this machine's server? None when webhooks are off.

    With the daemon running, its /healthz must answer there; without it, a probe server with a
    one-off token is started on `[server] listen` for the moment of the check.
    """
    if not settings.webhooks or settings.server.public_url is None or settings.server.listen is None:
        return None
    probe_url = settings.server.public_url.rstrip("/") + "/healthz"
    failure = (
        f"webhooks: {probe_url} does not reach this machine's server on {settings.server.listen}; "
        f"{settings.plugin.title} could not deliver job events (check public_url, the proxy or the firewall)"
    )
    if is_held(settings.database_path):
        body = await _get_json(probe_url)
        ok = isinstance(body, dict) and "checks" in body
        return (True, f"webhooks: ok — {probe_url} reaches the running daemon") if ok else (False, failure)

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ..server import serve

    token = secrets.token_hex(16)

    async def healthz(request: object) -> JSONResponse:
        return JSONResponse({"probe": token})

    stop = asyncio.Event()
    server = asyncio.create_task(serve(Starlette(routes=[Route("/healthz", healthz)]), settings.server.listen, stop))
    try:
        await asyncio.sleep(0)  # serve() binds before its first await: a bind failure is already known
        if server.done():
            server.result()
        body = await _get_json(probe_url)
    except OSError as exc:
        return False, f"webhooks: cannot listen on {settings.server.listen} ({exc.strerror or type(exc).__name__})"
    finally:
        stop.set()
        await asyncio.gather(server, return_exceptions=True)
    if isinstance(body, dict) and body.get("probe") == token:
        return True, f"webhooks: ok — {probe_url} reaches this machine's server on {settings.server.listen}"
    return False, failure


async def _get_json(url: str) -> object:
    try:
        async with httpx.AsyncClient(timeout=5, follow_redirects=True) as client:
            return (await client.get(url)).json()
    except (httpx.HTTPError, ValueError):
        return None
