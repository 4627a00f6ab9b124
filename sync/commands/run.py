"""`retouch run`: the daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import asyncio

import structlog
import typer

from retouch.storage.store import Store

from .. import __version__
from ..config import Settings
from ..runtime import open_context, provider_client, shopify_client
from ..scheduler import DAEMON_BUSY_TIMEOUT, Daemon
from ..systemd import InstanceLock, LockError

log = structlog.get_logger("retouch")


def describe_start(settings: Settings) -> dict:
    """What the daemon says at start: enough to know what it will do, never a secret."""
    limits = settings.capabilities.quota
    return {
        "version": __version__, "config": str(settings.path), "provider": settings.provider.name,
        "mode": "sandbox" if settings.provider_is_sandbox else "live", "shop": settings.shop.url,
        "db": str(settings.database_path), "backups": str(settings.backup_dir),
        "writeback": settings.writeback.mode, "new_only": settings.selection.new_only,
        "limits": {"window_s": limits.window, "jobs": limits.jobs, "images": limits.images,
                   "polls": limits.polls, "requests": limits.requests, "active_jobs": limits.active_jobs},
        "server": settings.server.listen, "webhooks": settings.webhooks,
        "shopify_webhooks": settings.shopify_webhooks,
        "public_bind": bool(settings.server.listen) and not settings.server.listen_is_loopback(),
    }


async def run_daemon(settings: Settings) -> int:
    lock = InstanceLock(settings.database_path)
    try:
        acquired = lock.acquire()
    except LockError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    if not acquired:
        typer.echo(f"{lock.holder()} already holds the lock {lock.path} of {settings.database_path}; "
                   "stop it first", err=True)
        return 1
    store: Store | None = None
    try:
        # Opened before the daemon says it starts: a database it cannot use is one line (StorageError).
        store = Store(settings.database_url, DAEMON_BUSY_TIMEOUT)
        log.info("starting", **describe_start(settings))
        async with open_context(settings, store=store) as ctx:
            async def reopen(new: Settings) -> None:
                """After a reload: point the clients at the new shop/provider when those changed."""
                if (new.shop, new.shop_token) != (ctx.settings.shop, ctx.settings.shop_token):
                    old, ctx.shopify = ctx.shopify, shopify_client(new)
                    await old.aclose()
                if ((new.provider, new.provider_key, new.provider_table)
                        != (ctx.settings.provider, ctx.settings.provider_key, ctx.settings.provider_table)):
                    old_provider, ctx.provider = ctx.provider, provider_client(new)
                    await old_provider.aclose()

            daemon = Daemon(ctx, reopen=reopen)
            await daemon.run(server=_server(settings, ctx, daemon) if settings.server.listen else None)
        return 0
    finally:
        if store is not None:
            store.close()
        lock.release()


def _server(settings: Settings, ctx, daemon: Daemon):
    from ..metrics import build_registry
    from ..server import ServerDeps, build_app, serve

    registry = build_registry(ctx.store, ctx.provider_name, ctx.limits, lambda: ctx.shopify.stats,
                              lambda: ctx.provider.stats, loop=asyncio.get_running_loop())
    deps = ServerDeps(store=ctx.store, provider=lambda: ctx.provider,
                      discover_every=settings.schedule.discover_every,
                      scheduler_alive=lambda: daemon.scheduler is not None and daemon.scheduler.running,
                      on_provider_event=daemon.on_provider_event, skew=settings.server.webhook_skew,
                      shopify_webhook_secret=(settings.shopify_webhook_secret.get_secret_value()
                                              if settings.shopify_webhook_secret else None),
                      on_shopify_product=daemon.on_shopify_product)
    app = build_app(deps, registry)

    async def run_server(stop: asyncio.Event) -> None:
        log.info("serving", listen=settings.server.listen, webhooks=settings.webhooks)
        await serve(app, settings.server.listen or "", stop)

    return run_server
