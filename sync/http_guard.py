"""What keeps the daemon's HTTP server answering when the port faces hostile clients.

uvicorn bounds the idle time between two requests of a kept-alive connection (`timeout_keep_alive`)
and the size of a header block (h11's max incomplete event size), but nothing else: a connection
that sends nothing, or trickles its headers or its body a byte at a time, stays open for ever, and
enough of them take every file descriptor (then /healthz stops answering). Its `limit_concurrency`
does not help: once that many connections are open, idle ones included, it answers 503 to every new
request — what a swarm of idle connections wants.

So each connection here has a deadline per phase, counted from the phase's start (a trickle does not
extend it):
    headers  from the connection (or the end of the previous response) until the request line and
             headers are in: HEADER_TIMEOUT
    body     from the headers until the whole body is in: BODY_TIMEOUT
    busy     from the whole request until the response is sent: RESPONSE_TIMEOUT
and at most `max_connections` are open: a new connection beyond that pushes out the one that has
been waiting longest for its headers or body (a genuine sender has sent its request within
milliseconds), or is closed itself when every open one is busy with a request. A /healthz probe
therefore gets through a swarm of idle and trickling connections.

The protocol subclasses uvicorn's h11 protocol (a private module, as plugin/serve.py does): uvicorn
offers no hook for a per-connection deadline, and the h11 state machine already says which phase a
connection is in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("retouch.http")


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 30.0  # seconds to send the whole body (1 MiB at most: ≥ 35 KB/s)
    response_timeout: float = 60.0  # seconds for the handler to answer (its database calls wait 2 s at most)
    keep_alive: float = 5.0  # uvicorn's timeout_keep_alive: idle seconds between two requests
    max_connections: int = 256  # open at once; kept below the file-descriptor limit (see connection_cap)
    max_header_bytes: int = 16 * 1024  # h11's max incomplete event size: a longer header block is a 400
    accept_error_every: float = 60.0  # seconds between two log lines about failing accept() calls


def connection_cap(configured: int, nofile_soft: int | None) -> int:
    """The connection cap under the process's file-descriptor limit: half of it at most, so the
    daemon's own files (SQLite, backups, HTTPS to Shopify and the provider) always have room."""
    if nofile_soft is None or nofile_soft <= 0:
        return configured
    return max(1, min(configured, nofile_soft // 2))


WAITING = ("headers", "body")  # phases in which a connection may be pushed out for a new one


@dataclass
class ConnectionGuard:
    """The open connections of one server, and the cap."""

    limits: ServerLimits
    cap: int
    clock: Callable[[], float] = time.monotonic
    open: dict[int, "GuardedH11Protocol"] = field(default_factory=dict)  # by id(), in order of arrival
    pushed_out: int = 0
    timed_out: int = 0
    refused: int = 0

    def admit(self, newcomer: "GuardedH11Protocol") -> bool:
        """Make room for `newcomer`; False when every open connection is busy (the newcomer goes)."""
        while len(self.open) >= self.cap:
            waiting = [conn for conn in self.open.values() if conn.phase in WAITING]
            if not waiting:
                self.refused += 1
                return False
            oldest = min(waiting, key=lambda conn: conn.phase_since)
            self.pushed_out += 1
            oldest.drop()
        self.open[id(newcomer)] = newcomer
        return True

    def forget(self, conn: "GuardedH11Protocol") -> None:
        self.open.pop(id(conn), None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline per phase and a place under the guard's cap.
    `guard` is set on a subclass made per server (`protocol_for`)."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = "headers"
        self.phase_since = 0.0
        self._deadline: asyncio.TimerHandle | None = None
        self._closed = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.drop()
            return
        self._enter("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_deadline()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    def drop(self) -> None:
        """Close at once, without waiting for buffers: the client is not answered."""
        self._closed = True
        self._cancel_deadline()
        self.guard.forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # ----- phases -----------------------------------------------------------------------------

    def _follow_state(self) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            return
        theirs = self.conn.their_state
        if theirs is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            phase = "headers"
        elif theirs is h11.SEND_BODY:
            phase = "body"
        else:
            phase = "busy"
        if phase != self.phase:
            self._enter(phase)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.phase_since = self.guard.clock()
        self._cancel_deadline()
        limits = self.guard.limits
        seconds = {"headers": limits.header_timeout, "body": limits.body_timeout, "busy": limits.response_timeout}[
            phase
        ]
        self._deadline = self.loop.call_later(seconds, self._expire, phase)

    def _expire(self, phase: str) -> None:
        self._deadline = None
        if self._closed or phase != self.phase:
            return
        self.guard.timed_out += 1
        log.debug("http_connection_timed_out", phase=phase, client=self.client)
        self.drop()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def protocol_for(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class bound to one server's guard (uvicorn builds protocols from a class)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


# ----- accept() failures ------------------------------------------------------------------------------

ACCEPT_FAILURE = "socket.accept() out of system resource"  # asyncio's message (EMFILE, ENFILE, ENOBUFS, ENOMEM)


@dataclass
class BurstLog:
    """One log line per burst of the same failure: the first at once, then at most one per `every`
    seconds, saying how many were left out. asyncio retries a failing accept() every second for
    every listening socket; without this the journal fills with one traceback each time."""

    every: float
    clock: Callable[[], float] = time.monotonic
    last: float | None = None
    left_out: int = 0

    def should_log(self) -> tuple[bool, int]:
        """(log this one?, how many were left out since the last line)."""
        now = self.clock()
        if self.last is None or now - self.last >= self.every:
            left_out, self.left_out, self.last = self.left_out, 0, now
            return True, left_out
        self.left_out += 1
        return False, 0


def accept_error_handler(
    previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None, burst: BurstLog
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler: accept() failures go through `burst` as one line each (no traceback);
    everything else goes to `previous` (or asyncio's default)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILURE:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        show, left_out = burst.should_log()
        if show:
            exc = context.get("exception")
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            log.error(
                "http_accept_failed",
                reason=reason,
                left_out=left_out,
                note="new connections wait; asyncio retries every second (is LimitNOFILE too low?)",
            )

    return handle
