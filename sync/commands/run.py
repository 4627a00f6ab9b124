"""`retouch run`: the daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import asyncio
import time

import structlog
import typer

from retouch.plugin.shopify.errors import ShopifyAuthError

from .. import __version__
from ..claim import ClaimRefused, StoreClaim, claim_store, new_claim
from ..config import Settings
from ..notify.watch import NOTIFY_FLUSH, Notifications
from ..pipeline.retired import retire, stranded
from ..runtime import open_context, provider_client, shopify_client
from ..scheduler import DAEMON_BUSY_TIMEOUT, Daemon
from ..systemd import InstanceLock

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


async def run_daemon(settings: Settings, take_over: bool = False) -> int:
    lock = InstanceLock(settings.database_path)
    if not lock.acquire():
        typer.echo(f"another retouch daemon (pid {lock.holder_pid() or '?'}) already runs on "
                   f"{settings.database_path}; stop it first", err=True)
        return 1
    try:
        log.info("starting", **describe_start(settings))
        async with open_context(settings, busy_timeout=DAEMON_BUSY_TIMEOUT) as ctx:
            # One retouch per store, whatever its database (sync/claim.py): claimed before any work.
            claim = StoreClaim(ctx.shopify, new_claim(settings, time.time()))
            try:
                await claim_store(claim, take_over=take_over, lock_held=True)
            except (ClaimRefused, ShopifyAuthError) as exc:
                log.error("store_claim_refused", reason=str(exc))
                typer.echo(f"retouch run: {exc}", err=True)
                return 1
            async def reopen(new: Settings) -> None:
                """After a reload: point the clients at the new shop/provider when those changed."""
                if (new.shop, new.shop_token) != (ctx.settings.shop, ctx.settings.shop_token):
                    old, ctx.shopify = ctx.shopify, shopify_client(new)
                    await old.aclose()
                if ((new.provider, new.provider_key, new.provider_table)
                        != (ctx.settings.provider, ctx.settings.provider_key, ctx.settings.provider_table)):
                    # Another provider: the old one is kept while its jobs are in flight (pipeline/retired.py).
                    unused = retire(ctx, provider_client(new))
                    if unused is not None:
                        await unused.aclose()

            for name, count in stranded(ctx).items():
                log.warning("stranded_jobs", provider=name, jobs=count,
                            note=f"these jobs finish only on {name}, which is not configured now: set [provider] "
                                 f"name = {name!r} (and its key) again until they are done")
            daemon = Daemon(ctx, reopen=reopen)
            lost: list[str] = []

            def on_lost(reason: str) -> None:
                lost.append(reason)
                log.error("store_claim_lost", reason=reason, note="stopping: another retouch may work on this store")
                daemon.stopping.set()

            keeper = asyncio.create_task(claim.keep(daemon.stopping, on_lost))
            notifications = asyncio.create_task(Notifications(ctx).run(daemon.stopping))  # [notify]
            try:
                await daemon.run(server=_server(settings, ctx, daemon) if settings.server.listen else None)
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                daemon.stopping.set()  # (already, unless the daemon failed): the notify loop ends too
                await asyncio.wait({notifications}, timeout=NOTIFY_FLUSH)  # what waited to be sent goes now
                notifications.cancel()
                await asyncio.gather(notifications, return_exceptions=True)
                if not lost:
                    await claim.release()
        return 1 if lost else 0
    finally:
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
