"""`retouch run`: the daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
import typer

from retouch.plugin.shopify.errors import ShopifyAuthError
from retouch.storage.store import Store

from .. import __version__
from ..claim import ClaimRefused, StoreClaim, claim_store, new_claim
from ..config import Settings
from ..notify.watch import NOTIFY_FLUSH, Notifications
from ..pipeline import Context
from ..pipeline.retired import retire, stranded, use_shopify
from ..runtime import open_context, provider_client, shopify_client, token_health
from ..scheduler import DAEMON_BUSY_TIMEOUT, Daemon
from ..systemd import InstanceLock, LockError

log = structlog.get_logger("retouch")


def describe_start(settings: Settings) -> dict:
    """What the daemon says at start: enough to know what it will do, never a secret."""
    limits = settings.capabilities.quota
    return {
        "version": __version__,
        "config": str(settings.path),
        "provider": settings.provider.name,
        "mode": "sandbox" if settings.provider_is_sandbox else "live",
        "shop": settings.shop.url,
        "shop_auth": settings.shop_auth,
        "db": str(settings.database_path),
        "backups": str(settings.backup_dir),
        "writeback": settings.writeback.mode,
        "new_only": settings.selection.new_only,
        "limits": {
            "window_s": limits.window,
            "jobs": limits.jobs,
            "images": limits.images,
            "polls": limits.polls,
            "requests": limits.requests,
            "active_jobs": limits.active_jobs,
        },
        "server": settings.server.listen,
        "webhooks": settings.webhooks,
        "shopify_webhooks": settings.shopify_webhooks,
        "public_bind": bool(settings.server.listen) and not settings.server.listen_is_loopback(),
    }


async def run_daemon(settings: Settings, take_over: bool = False) -> int:
    lock = InstanceLock(settings.database_path)
    try:
        acquired = lock.acquire()
    except LockError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    if not acquired:
        typer.echo(
            f"{lock.holder()} already holds the lock {lock.path} of {settings.database_path}; stop it first", err=True
        )
        return 1
    store: Store | None = None
    sock = None
    try:
        if settings.server.listen:
            bound = bind_server(settings.server.listen)
            if isinstance(bound, int):
                return bound
            sock = bound
        # Opened before the daemon says it starts: a database it cannot use is one line (StorageError).
        store = Store(settings.database_url, DAEMON_BUSY_TIMEOUT)
        log.info("starting", **describe_start(settings))
        async with open_context(settings, store=store) as ctx:
            # One retouch per store, whatever its database (sync/claim.py): claimed once Shopify has
            # answered and before any work, inside the daemon, so that while Shopify cannot be reached
            # (or refuses the app's credentials) the daemon waits with its health endpoint, watchdog,
            # reload and stop like any other wait, instead of exiting.
            claim = StoreClaim(lambda: ctx.shopify, new_claim(settings, time.time()))
            lost: list[str] = []

            def on_lost(reason: str) -> None:
                lost.append(reason)
                log.error("store_claim_lost", reason=reason, note="stopping: another retouch may work on this store")
                daemon.stopping.set()

            async def reopen(new: Settings) -> None:
                """After a reload: point the clients at the new shop/provider when those changed."""
                if new.shop.url != ctx.settings.shop.url:
                    # The claim is on the old store: stop (exit 1; systemd restarts us on the new one,
                    # which is claimed like any start) rather than work on a store nobody claimed.
                    on_lost(f"[shop] url changed to {new.shop.url}: restart to claim that store")
                if (new.shop, new.shop_token, new.shop_client_secret) != (
                    ctx.settings.shop,
                    ctx.settings.shop_token,
                    ctx.settings.shop_client_secret,
                ):
                    old = use_shopify(ctx, shopify_client(new))  # the retired providers' views too
                    await old.aclose()
                if (new.provider, new.provider_key, new.provider_table) != (
                    ctx.settings.provider,
                    ctx.settings.provider_key,
                    ctx.settings.provider_table,
                ):
                    # Another provider: the old one is kept while its jobs are in flight (pipeline/retired.py).
                    unused = retire(ctx, provider_client(new))
                    if unused is not None:
                        await unused.aclose()

            for name, count in stranded(ctx).items():
                log.warning(
                    "stranded_jobs",
                    provider=name,
                    jobs=count,
                    note=f"these jobs finish only on {name}, which is not configured now: set [provider] "
                    f"name = {name!r} (and its key) again until they are done",
                )
            keepers: list[asyncio.Task] = []

            async def claim_then_keep() -> None:
                try:
                    await claim_store(claim, take_over=take_over, lock_held=True)
                except (ClaimRefused, ShopifyAuthError) as exc:
                    log.error("store_claim_refused", reason=str(exc))
                    typer.echo(f"retouch run: {exc}", err=True)
                    lost.append(str(exc))
                    daemon.stopping.set()
                    return
                keepers.append(asyncio.create_task(claim.keep(daemon.stopping, on_lost)))

            daemon = Daemon(ctx, reopen=reopen, on_connected=claim_then_keep)
            notifications = asyncio.create_task(Notifications(ctx).run(daemon.stopping))  # [notify]
            try:
                await daemon.run(server=_server(settings, ctx, daemon, sock) if sock is not None else None)
            finally:
                for keeper in keepers:
                    keeper.cancel()
                await asyncio.gather(*keepers, return_exceptions=True)
                daemon.stopping.set()  # (already, unless the daemon failed): the notify loop ends too
                await asyncio.wait({notifications}, timeout=NOTIFY_FLUSH)  # what waited to be sent goes now
                notifications.cancel()
                await asyncio.gather(notifications, return_exceptions=True)
                if not lost:
                    await claim.release()
            if daemon.server_failure is not None:
                typer.echo(
                    f"retouch: the HTTP server on {settings.server.listen} stopped "
                    f"({daemon.server_failure}); the daemon stopped with it",
                    err=True,
                )
                return 1
        return 1 if lost else 0
    finally:
        if store is not None:
            store.close()
        if sock is not None:
            sock.close()
        lock.release()


def _server(
    settings: Settings, ctx: Context, daemon: Daemon, sock: socket.socket | None = None
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """The daemon's HTTP server, on `sock` (bound by `bind_server`), or on `[server] listen` bound when
    it starts (an in-process harness's way)."""
    from ..metrics import build_registry
    from ..server import ServerDeps, build_app, serve

    registry = build_registry(
        ctx.store,
        ctx.provider_name,
        ctx.limits,
        lambda: ctx.shopify.stats,
        lambda: ctx.provider.stats,
        loop=asyncio.get_running_loop(),
    )
    deps = ServerDeps(
        store=ctx.store,
        provider=lambda: ctx.provider,
        discover_every=settings.schedule.discover_every,
        scheduler_alive=lambda: daemon.scheduler is not None and daemon.scheduler.running,
        on_provider_event=daemon.on_provider_event,
        skew=settings.server.webhook_skew,
        # The current settings' (a reload that rotates [shop] client_secret rotates it too).
        shopify_webhook_secret=lambda: (
            ctx.settings.shopify_webhook_secret.get_secret_value() if ctx.settings.shopify_webhook_secret else None
        ),
        on_shopify_product=daemon.on_shopify_product,
        shopify_token=lambda: token_health(ctx.shopify.tokens),
        ui=_review_page(ctx),
    )
    app = build_app(deps, registry)

    async def run_server(stop: asyncio.Event) -> None:
        log.info("serving", listen=settings.server.listen, webhooks=settings.webhooks)
        await serve(app, sock if sock is not None else settings.server.listen or "", stop)

    return run_server


def _review_page(ctx):
    """The review page at /ui/ (sync/web/), on the daemon's own context (a reload replaces its settings)."""
    from ..web import UiDeps, build_ui

    return build_ui(UiDeps(context=lambda: ctx))


def bind_server(listen: str) -> socket.socket | int:
    """The bound socket for `[server] listen`, or the exit code after one line saying why not:
    1 for a port another program holds (it may be free at the next start: systemd restarts),
    2 for an address this machine cannot have (a config error)."""
    sock, reason, code = bind_reason(listen)
    if sock is None:
        typer.echo(f"[server] listen: {reason}", err=True)
        return code
    return sock


def bind_reason(listen: str) -> tuple[socket.socket | None, str, int]:
    """(the bound socket, "", 0) or (None, what is wrong; what to do, the exit code) — for `run`
    and `check` alike."""
    from ..server import bind_listen

    try:
        return bind_listen(listen), "", 0
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return None, f"{listen} is in use by another program; stop it or choose another port", 1
        reason = exc.strerror or str(exc) or type(exc).__name__
        return None, (f"cannot listen on {listen} ({reason}); use an address of this machine and a port above 1023"), 2
    except ValueError as exc:
        return None, str(exc), 2
