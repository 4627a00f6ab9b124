"""The daemon's own HTTP server: health, Prometheus metrics, and the provider's webhooks.

    GET  /healthz                     200 {"ok": true, "checks": {...}} or 503 with the same shape
    GET  /metrics                     Prometheus text format
    POST /webhooks/{provider}         signed job events (AI Gen Studio, CONTRACTS.md §1, Webhooks)
    POST /webhooks/{provider}/{token} unsigned ones, protected by a secret token in the path
                                      (Imagen's callback, ProductAI's account webhook)
    POST /webhooks/shopify            Shopify's PRODUCTS_CREATE/UPDATE (with [server]
                                      shopify_webhook_secret; shopify_webhooks.py decides): 413,
                                      401 forged, 400 wrong topic/malformed, 200 and the product
                                      queued for discovery, or {"duplicate": true}

It runs inside the daemon's event loop (`serve`), never in a thread of its own, and never owns
signals: the daemon decides when to stop by setting its `stop` event.

A webhook is only a hint ("poll this job soon"): the status endpoint stays the truth, so the
handler does no pipeline work and answers at once. Answers to the sender:
    413  body larger than `max_body` (the rest is not read)
    404  not the configured provider
    401  signature (or path token) missing or wrong, or its timestamp outside ±skew (a stale
         delivery is treated like a forged one: both are "we cannot trust this request"; the
         sender's retries carry a fresh timestamp, so a live sender recovers by itself)
    400  not the body the provider sends
    200  {"accepted": true}, or {"duplicate": true} for an event id seen before (so the sender stops)
The event id is recorded only after the signature checks out, so forged requests cannot fill the
dedupe table or shadow a real event id.

Database calls run in a worker thread (SQLite may wait on another process's write lock), so a
slow query never stalls the daemon's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from retouch.plugin.providers.base import Provider, WebhookEvent, WebhookRefused
from retouch.storage.store import Store

from . import shopify_webhooks
from .failures import TracebackOnce, failure_reason
from .http_guard import BurstLog, ConnectionGuard, ServerLimits, accept_error_handler, connection_cap, protocol_for
from .listen import parse_listen
from .logs import REDACTOR
from .nesting import MAX_DEPTH, nested_deeper_than
from .pipeline.context import LAST_DISCOVERY

log = structlog.get_logger(__name__)

STALE_FACTOR = 3  # discovery older than this many intervals means the daemon is not doing its job


@dataclass
class ServerDeps:
    store: Store
    provider: Callable[[], Provider]  # the current one (a reload may replace it); verifies webhooks
    discover_every: float  # seconds; health: last discovery older than 3x this → unhealthy
    scheduler_alive: Callable[[], bool]
    on_provider_event: Callable[[WebhookEvent], None]  # hands a verified event to the pipeline; must not block
    skew: float = 300.0  # timestamp tolerance, seconds
    max_body: int = 1 << 20
    clock: Callable[[], float] = time.time
    # None: /webhooks/shopify answers 404. A callable: the current one (a reload may change [shop]
    # client_secret, which signs the app's webhooks when no [server] shopify_webhook_secret is set).
    shopify_webhook_secret: str | None | Callable[[], str | None] = None
    on_shopify_product: Callable[[str], None] = lambda product_id: None  # queues a product gid; must not block
    # {"ok", "detail"} of the Shopify access token (client credentials); None: a static token, no check
    shopify_token: Callable[[], dict[str, Any] | None] | None = None
    # The review page (sync/web/), mounted at /ui/; None: no page (the in-process harnesses, `check`).
    ui: Any = None


# ----- health: pure decisions -----------------------------------------------------------------


def discovery_check(last: str | None, *, now: float, started: float, discover_every: float) -> dict[str, Any]:
    """Is the last successful discovery recent enough? None = none yet: fine while the daemon starts."""
    limit = STALE_FACTOR * discover_every
    if last is None:
        waiting = now - started
        if waiting < limit:
            return {"ok": True, "detail": "no discovery yet (starting)"}
        return {"ok": False, "detail": f"no discovery in the {waiting:.0f} s since start (limit {limit:.0f} s)"}
    try:
        age = now - float(last)
    except ValueError:
        return {"ok": False, "detail": "last discovery time is unreadable"}
    if not age < limit:  # written so that NaN fails too
        return {"ok": False, "age_seconds": round(age, 1), "detail": f"last discovery is older than {limit:.0f} s"}
    return {"ok": True, "age_seconds": round(age, 1)}


def health(checks: dict[str, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    ok = all(check["ok"] for check in checks.values())
    return (200 if ok else 503), {"ok": ok, "checks": checks}


# ----- health: I/O ----------------------------------------------------------------------------


def database_file(store: Store) -> str | None:
    """The SQLite file behind the store (None for an in-memory database)."""
    path = store.engine.url.database
    if store.engine.url.get_backend_name() == "sqlite" and path and path != ":memory:":
        return path
    return None


def file_identity(path: str | None) -> tuple[int, int] | None:
    """(device, inode) of the file, read with stat(): it opens nothing."""
    if path is None:
        return None
    info = os.stat(path)
    return info.st_dev, info.st_ino


def database_check(store: Store, identity: tuple[int, int] | None) -> dict[str, Any]:
    """A trivial query through the daemon's engine and a look at the file's identity.

    The query alone is not enough: a pooled connection keeps working on a database file that was
    deleted or replaced (it holds the old inode, and in WAL mode reads come from the -wal file), so
    the daemon would look healthy while writing into something that is gone at the next start. The
    file is never opened here: closing any descriptor of it would drop SQLite's POSIX locks in this
    process, and the next other process to close the database would then delete the live WAL.
    """
    try:
        store.get_meta("schema_version")
        current = file_identity(database_file(store))
        if current != identity:
            return {"ok": False, "detail": "database file was replaced"}
    except FileNotFoundError:
        return {"ok": False, "detail": "database file is missing"}
    except Exception as exc:  # any failure is the answer; the message may hold paths, so only the type
        return {"ok": False, "detail": f"database check failed ({type(exc).__name__})"}
    return {"ok": True}


def _token_check(state: Callable[[], dict[str, Any] | None] | None) -> dict[str, dict[str, Any]]:
    """The Shopify token's check, when the daemon obtains its tokens (none for a static token)."""
    if state is None:
        return {}
    try:
        check = state()
    except Exception as exc:
        return {"shopify_token": {"ok": False, "detail": f"token check failed ({type(exc).__name__})"}}
    return {} if check is None else {"shopify_token": check}


def _scheduler_check(alive: Callable[[], bool]) -> dict[str, Any]:
    try:
        ok = bool(alive())
    except Exception as exc:
        return {"ok": False, "detail": f"scheduler check failed ({type(exc).__name__})"}
    return {"ok": True} if ok else {"ok": False, "detail": "scheduler is not running"}


# ----- webhook: pure decision -----------------------------------------------------------------


# ----- the app --------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    """The client went, or was dropped for sending its body too slowly (http_guard.py)."""


async def _read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or _BodyTooLarge as soon as it passes `limit` bytes (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        raise _Disconnected from None
    return b"".join(chunks)


def _gone() -> Response:
    """What a handler returns to a client that is gone: nobody reads it."""
    return Response(status_code=400)


class ScrubbedResponses:
    """Every answer of the app passes the one redactor (logs.REDACTOR): a page, /metrics and every
    error text, whichever handler wrote it. The answers are small (health, metrics, a webhook's
    verdict), so each is held whole, scrubbed, and sent with its corrected length."""

    def __init__(self, app: Any, scrub: Callable[[str], str]) -> None:
        self.app = app
        self.scrub = scrub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def scrubbing_send(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                if _is_picture(message):  # the review page's images: bytes, not text to scrub
                    await send(message)
                return
            if message["type"] != "http.response.body" or start is None or _is_picture(start):
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = self.scrub(b"".join(chunks).decode("utf-8", "replace")).encode()
            headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, scrubbing_send)


def _is_picture(start: dict[str, Any]) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"image/") for name, value in start.get("headers", [])
    )


class OneLineErrors:
    """A handler that fails (the database is full or gone while a webhook is recorded) answers 503,
    so the sender retries later, and is one log line with the reason — its traceback only the first
    time that kind of failure is met, however many requests meet it (failures.py)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tracebacks = TracebackOnce()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            reason = failure_reason(exc)
            if self.tracebacks.first(exc):
                log.exception(
                    "http_handler_failed",
                    path=scope.get("path"),
                    reason=reason,
                    note="this kind of failure shows its traceback once",
                )
            else:
                log.error("http_handler_failed", path=scope.get("path"), reason=reason)
            if not started:
                await JSONResponse({"error": "temporarily unavailable"}, status_code=503)(scope, receive, send)


REJECTION_LOG_EVERY = 10.0  # seconds between two log lines about refused deliveries of one kind


def build_app(deps: ServerDeps, registry: CollectorRegistry) -> Starlette:
    started = deps.clock()  # the start-up grace for the discovery check counts from here
    rejections: dict[tuple[str, str], BurstLog] = {}

    def log_limited(event: str, reason: str, level: str = "warning", **fields: Any) -> None:
        """A refused or replayed delivery, or an unhealthy probe, is worth a line; a flood of them is
        not: the first of each kind, then at most one per REJECTION_LOG_EVERY saying how many were
        left out."""
        write = getattr(log, level)
        key = (event, reason)
        burst = rejections.get(key)
        if burst is None:
            if len(rejections) >= 100:  # the kinds are few; an odd reason beyond that is still logged
                write(event, reason=reason, **fields)
                return
            burst = rejections[key] = BurstLog(REJECTION_LOG_EVERY)
        show, left_out = burst.should_log()
        if show:
            write(event, reason=reason, left_out=left_out, **fields)

    identity = file_identity(database_file(deps.store))  # the file the daemon opened

    async def healthz(request: Request) -> Response:
        now = deps.clock()
        last = None
        database = await run_in_threadpool(database_check, deps.store, identity)
        if database["ok"]:
            try:
                last = await run_in_threadpool(deps.store.get_meta, LAST_DISCOVERY)
            except Exception as exc:
                database = {"ok": False, "detail": f"database query failed ({type(exc).__name__})"}
        checks = {
            "database": database,
            "scheduler": _scheduler_check(deps.scheduler_alive),
            **_token_check(deps.shopify_token),
            "discovery": (
                discovery_check(last, now=now, started=started, discover_every=deps.discover_every)
                if database["ok"]
                else {"ok": False, "detail": "unknown: database unavailable"}
            ),
        }
        status, body = health(checks)
        if status != 200:
            failing = [name for name, check in checks.items() if not check["ok"]]
            log_limited("unhealthy", ", ".join(failing), failing=failing)  # a probe every second: not a line each
        return JSONResponse(body, status_code=status)

    async def metrics(request: Request) -> Response:
        try:
            text = await run_in_threadpool(generate_latest, registry)
        except Exception:
            log.exception("metrics_failed")
            return Response("metrics unavailable\n", status_code=503, media_type="text/plain")
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def provider_webhook(request: Request) -> Response:
        provider = deps.provider()
        if request.path_params["name"] != provider.name or "webhook" not in provider.capabilities.completion:
            return JSONResponse({"error": "no such webhook"}, status_code=404)
        try:
            raw = await _read_capped(request, deps.max_body)
        except _BodyTooLarge:
            log_limited("webhook_rejected", "too_large", limit=deps.max_body)
            return JSONResponse({"error": "body too large"}, status_code=413)
        except _Disconnected:
            return _gone()
        now = deps.clock()
        if nested_deeper_than(raw):
            log_limited("webhook_rejected", "nested too deeply", limit=MAX_DEPTH)
            return JSONResponse({"error": "body nested too deeply"}, status_code=400)
        try:
            event = provider.verify_webhook(request.path_params.get("token"), request.headers, raw, now, deps.skew)
        except WebhookRefused as exc:
            log_limited("webhook_rejected", exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        except (RecursionError, ValueError, TypeError, KeyError) as exc:
            # A provider plugin met a body it did not expect: the sender's mistake, not our crash.
            log_limited("webhook_rejected", f"unreadable body ({type(exc).__name__})")
            return JSONResponse({"error": "unreadable body"}, status_code=400)
        if not await run_in_threadpool(deps.store.remember_event, provider.name, event.event_id, now):
            log_limited("webhook_duplicate", "event id seen before", level="info", event_id=event.event_id)
            return JSONResponse({"duplicate": True})
        try:
            deps.on_provider_event(event)
        except Exception:
            # The id is recorded, so a retry would only be answered "duplicate": say 200 and rely on
            # polling, which picks up the job's state anyway.
            log.exception("webhook_handler_failed", event_id=event.event_id)
        return JSONResponse({"accepted": True})

    async def shopify_webhook(request: Request) -> Response:
        secret = deps.shopify_webhook_secret
        secret = secret() if callable(secret) else secret
        if secret is None:
            return JSONResponse({"error": "no such webhook"}, status_code=404)
        try:
            raw = await _read_capped(request, deps.max_body)
        except _BodyTooLarge:
            log_limited("shopify_webhook_rejected", "too_large", limit=deps.max_body)
            return JSONResponse({"error": "body too large"}, status_code=413)
        except _Disconnected:
            return _gone()
        try:
            verdict = shopify_webhooks.check_delivery(secret, request.headers, raw)
        except (RecursionError, ValueError, TypeError) as exc:  # check_delivery decides; this is its safety net
            verdict = shopify_webhooks.Refused(400, f"unreadable body ({type(exc).__name__})")
        if isinstance(verdict, shopify_webhooks.Refused):
            log_limited("shopify_webhook_rejected", verdict.reason)
            return JSONResponse({"error": verdict.reason}, status_code=verdict.status)
        now = deps.clock()
        new_id = await run_in_threadpool(
            deps.store.remember_event, shopify_webhooks.DEDUPE_SOURCE, verdict.webhook_id, now
        )
        new_body = await run_in_threadpool(
            deps.store.remember_event, shopify_webhooks.BODY_DEDUPE_SOURCE, verdict.digest, now
        )
        if not (new_id and new_body):
            same = "webhook id seen before" if not new_id else "topic and body seen before"
            log_limited("shopify_webhook_duplicate", same, level="info", webhook_id=verdict.webhook_id)
            return JSONResponse({"duplicate": True})
        try:
            deps.on_shopify_product(verdict.product_id)
        except Exception:
            # Recorded already, so a retry would be a duplicate: polling discovers the product anyway.
            log.exception("shopify_webhook_handler_failed", webhook_id=verdict.webhook_id)
        log.info(
            "shopify_webhook_received",
            topic=verdict.topic,
            product_id=verdict.product_id,
            webhook_id=verdict.webhook_id,
        )
        return JSONResponse({"accepted": True})

    return Starlette(
        middleware=[Middleware(ScrubbedResponses, scrub=REDACTOR.scrub_text), Middleware(OneLineErrors)],
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route(shopify_webhooks.WEBHOOK_PATH, shopify_webhook, methods=["POST"]),  # before /webhooks/{name}
            Route("/webhooks/{name}", provider_webhook, methods=["POST"]),
            Route("/webhooks/{name}/{token}", provider_webhook, methods=["POST"]),
            *([Mount("/ui", app=deps.ui)] if deps.ui is not None else []),
        ],
    )


# ----- serving --------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: the daemon owns SIGTERM/SIGINT/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; binding here (not in uvicorn) turns "address in use" into an OSError
    for the caller, where uvicorn would call sys.exit() inside the daemon's loop."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address, family=family)


def bind_listen(listen: str) -> socket.socket:
    """The listening socket for `[server] listen`, bound now: the daemon binds before it starts its
    work, so an address it cannot have stops it at once (OSError; socket.gaierror for a host that
    does not resolve; ValueError for a malformed value)."""
    host, port = parse_listen(listen)
    return _bind(host, port)


def _nofile_soft() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


async def serve(
    app: Starlette, listen: str | socket.socket, stop: asyncio.Event, limits: ServerLimits = ServerLimits()
) -> None:
    """Serve `app` on `listen` (a "host:port" or a socket from `bind_listen`) in the running loop
    until `stop` is set, then shut down and return.

    Raises ValueError for a malformed `listen` and OSError when the address cannot be bound. Each
    connection is bounded in time and number (http_guard.py); accept() failures (out of file
    descriptors) are logged once per burst.
    """
    sock = bind_listen(listen) if isinstance(listen, str) else listen
    name = listen if isinstance(listen, str) else "%s:%s" % sock.getsockname()[:2]
    guard = ConnectionGuard(limits, connection_cap(limits.max_connections, _nofile_soft()))
    # uvicorn's limit_concurrency answers 503 to every request once that many connections are open,
    # idle ones included; the guard keeps the count at its cap by pushing out the longest-waiting
    # one, so uvicorn's limit (one above) stays a backstop for requests still running on closed ones.
    # uvicorn's own lines ("Invalid HTTP request received.", "ASGI callable returned without completing
    # response." for a body cut by a malformed chunk), one per request in plain text, would let anyone
    # write to the journal at will: they are left out. A handler's failure is logged by OneLineErrors.
    keep_alive: Any = limits.keep_alive  # uvicorn's hints say int; it is a timer's delay, and a fraction works
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="critical",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        http=protocol_for(guard),
        timeout_keep_alive=keep_alive,
        limit_concurrency=guard.cap + 1,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(accept_error_handler(previous_handler, BurstLog(limits.accept_error_every)))
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http:{name}")
    log.info("listening", listen=name, max_connections=guard.cap)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopper.cancel()
        try:
            await task  # returns once uvicorn has closed its sockets and connections; re-raises its failure
        finally:
            sock.close()
            loop.set_exception_handler(previous_handler)
    log.info("http_stopped", listen=name)
