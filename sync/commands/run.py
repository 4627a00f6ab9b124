"""`retouch run`: the daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import asyncio
import errno
import socket

import structlog
import typer

from .. import __version__
from ..config import Settings
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


async def run_daemon(settings: Settings) -> int:
    lock = InstanceLock(settings.database_path)
    if not lock.acquire():
        typer.echo(f"another retouch daemon (pid {lock.holder_pid() or '?'}) already runs on "
                   f"{settings.database_path}; stop it first", err=True)
        return 1
    try:
        sock = None
        if settings.server.listen:
            bound = bind_server(settings.server.listen)
            if isinstance(bound, int):
                return bound
            sock = bound
        log.info("starting", **describe_start(settings))
        async with open_context(settings, busy_timeout=DAEMON_BUSY_TIMEOUT) as ctx:
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
            await daemon.run(server=_server(settings, ctx, daemon, sock) if sock is not None else None)
            if daemon.server_failure is not None:
                typer.echo(f"retouch: the HTTP server on {settings.server.listen} stopped "
                           f"({daemon.server_failure}); the daemon stopped with it", err=True)
                return 1
        return 0
    finally:
        if sock is not None:
            sock.close()
        lock.release()


def _server(settings: Settings, ctx, daemon: Daemon, sock: socket.socket | None = None):
    """The daemon's HTTP server, on `sock` (bound by `bind_server`), or on `[server] listen` bound when
    it starts (an in-process harness's way)."""
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
        await serve(app, sock if sock is not None else settings.server.listen or "", stop)

    return run_server


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
        return None, (f"cannot listen on {listen} ({reason}); use an address of this machine "
                      "and a port above 1023"), 2
    except ValueError as exc:
        return None, str(exc), 2
