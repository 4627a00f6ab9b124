"""The daemon's HTTP server against hostile connections on loopback: idle and trickling swarms,
the connection cap, and accept() failures at the file-descriptor limit.

Every swarm is bounded (a fixed number of sockets, a deadline) and stops by itself.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from retouch.storage.store import Store
from retouch.sync.http_guard import BurstLog, ServerLimits, connection_cap
from retouch.sync.metrics import build_registry
from retouch.sync.server import ServerDeps, build_app, serve
from test_server import EVERY, LIMITS, aigen_provider  # noqa: F401 (reused helpers)


@dataclass
class ThreadServer:
    """`serve()` itself (the daemon's function, guard included) in a loop of its own thread."""

    port: int
    loop: asyncio.AbstractEventLoop
    stop_event: asyncio.Event
    thread: threading.Thread
    store: Store

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)
        self.store.close()
        assert not self.thread.is_alive()


def start_server(tmp_path: Path, limits: ServerLimits) -> ThreadServer:
    store = Store(f"sqlite:///{tmp_path / 'retouch.db'}")
    registry = build_registry(store, "aigenstudio", LIMITS, lambda: None, lambda: None)
    provider = aigen_provider("aigen_test_hostile_key")
    deps = ServerDeps(
        store=store,
        provider=lambda: provider,
        discover_every=EVERY,
        scheduler_alive=lambda: True,
        on_provider_event=lambda event: None,
    )
    app = build_app(deps, registry)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        async def main() -> None:
            holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await serve(app, sock, holder["stop"], limits)

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True, name="hostile-serve")
    thread.start()
    assert ready.wait(10)
    server = ThreadServer(port, holder["loop"], holder["stop"], thread, store)
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(server.url + "/healthz", timeout=2, trust_env=False)
            return server
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "serve() never answered"
            time.sleep(0.05)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ThreadServer]]:
    started: list[ThreadServer] = []
    yield started
    for server in started:
        server.stop()


# ----- a bounded swarm ----------------------------------------------------------------------------------


@dataclass
class Swarm:
    """Client sockets that misbehave: `idle` send nothing, `headers` trickle a header block, `body`
    send headers then trickle a body. Closed by the test at the end, whatever happened."""

    port: int
    sockets: dict[socket.socket, str] = field(default_factory=dict)
    closed_by_server: dict[socket.socket, float] = field(default_factory=dict)
    opened_at: float = 0.0

    def open(self, idle: int, headers: int, body: int) -> None:
        self.opened_at = time.monotonic()
        for kind, count in (("idle", idle), ("headers", headers), ("body", body)):
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.setblocking(False)
                self.sockets[sock] = kind
                try:
                    if kind == "body":
                        sock.send(
                            b"POST /webhooks/aigenstudio HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
                        )
                    elif kind == "headers":
                        sock.send(b"GET /healthz HTTP/1.1\r\n")
                except OSError:  # already pushed out by the cap
                    self.closed_by_server[sock] = time.monotonic()

    def open_ones(self) -> list[socket.socket]:
        return [s for s in self.sockets if s not in self.closed_by_server]

    def step(self, wait: float) -> None:
        """Trickle one byte on each trickling socket; note the ones the server closed."""
        for sock, kind in list(self.sockets.items()):
            if sock in self.closed_by_server or kind == "idle":
                continue
            try:
                sock.send(b"X-Slow: y\r\n" if kind == "headers" else b" ")
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.closed_by_server[sock] = time.monotonic()
        readable, _, _ = select.select(self.open_ones(), [], [], wait) if self.open_ones() else ([], [], [])
        for sock in readable:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_by_server[sock] = time.monotonic()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def healthz(url: str) -> int:
    return httpx.get(url + "/healthz", timeout=10, trust_env=False).status_code


def test_healthz_answers_while_a_swarm_holds_the_connection_cap(tmp_path: Path, servers) -> None:
    """Three times the cap in idle and trickling connections, deadlines far away: the cap pushes out
    the longest-waiting ones, and /healthz still answers 200 (uvicorn's limit alone answers 503)."""
    cap = 12
    server = start_server(
        tmp_path, ServerLimits(header_timeout=120, body_timeout=120, keep_alive=120, max_connections=cap)
    )
    servers.append(server)
    swarm = Swarm(server.port)
    try:
        swarm.open(idle=cap, headers=cap, body=cap)
        answers = []
        for _ in range(8):
            swarm.step(0.1)
            answers.append(healthz(server.url))
        deadline = time.monotonic() + 20
        while len(swarm.open_ones()) > cap and time.monotonic() < deadline:
            swarm.step(0.2)
        assert answers == [200] * 8
        assert len(swarm.open_ones()) <= cap
    finally:
        swarm.close()


def test_idle_and_trickling_connections_are_closed_after_their_deadline(tmp_path: Path, servers) -> None:
    """Below the cap, each kind of slow connection is closed by the server once its phase's deadline
    passes, however it trickles; a genuine request in between is answered."""
    limits = ServerLimits(header_timeout=1.5, body_timeout=1.5, keep_alive=1.0, max_connections=200)
    server = start_server(tmp_path, limits)
    servers.append(server)
    swarm = Swarm(server.port)
    try:
        swarm.open(idle=10, headers=10, body=10)
        kept_alive = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        swarm.sockets[kept_alive] = "idle"  # one complete request, then silence: keep-alive bounds it
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        kept_alive.setblocking(False)
        assert healthz(server.url) == 200
        deadline = time.monotonic() + 30  # generous: the deadlines are 1.5 s
        while swarm.open_ones() and time.monotonic() < deadline:
            swarm.step(0.3)
        assert swarm.open_ones() == []
        by_kind = {kind for sock, kind in swarm.sockets.items() if sock in swarm.closed_by_server}
        assert by_kind == {"idle", "headers", "body"}
        assert healthz(server.url) == 200
    finally:
        swarm.close()


def test_the_cap_stays_under_the_file_descriptor_limit() -> None:
    assert connection_cap(256, 1024) == 256
    assert connection_cap(256, 100) == 50
    assert connection_cap(256, None) == 256
    assert connection_cap(256, 1) == 1


def test_a_burst_of_failures_is_one_line_then_one_per_period() -> None:
    now = [0.0]
    burst = BurstLog(every=60.0, clock=lambda: now[0])
    shown = []
    for second in range(150):
        now[0] = float(second)
        shown.append(burst.should_log())
    assert [(i, left) for i, (show, left) in enumerate(shown) if show] == [(0, 0), (60, 59), (120, 59)]


# ----- accept() at the file-descriptor limit, in a process of its own ----------------------------------

ACCEPT_SCRIPT = r"""
import asyncio, os, resource, socket, sys
from retouch.sync.logs import configure
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from retouch.sync.server import serve
from retouch.sync.http_guard import ServerLimits

configure("info", "json")
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
sock = socket.create_server(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)

async def ok(request):
    return PlainTextResponse("ok")

async def main():
    stop = asyncio.Event()
    task = asyncio.create_task(serve(Starlette(routes=[Route("/healthz", ok)]), sock, stop, ServerLimits()))
    await asyncio.sleep(0.2)
    hog = []
    try:  # something else in the daemon takes every descriptor (the server's cap alone never would)
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print("full", flush=True)
    await asyncio.sleep(4.5)  # asyncio retries accept() every second meanwhile
    for fd in hog:
        os.close(fd)
    print("freed", flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    stop.set()
    await task

asyncio.run(main())
"""


def test_accept_failures_at_the_descriptor_limit_are_one_line_and_the_server_recovers(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", ACCEPT_SCRIPT, "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "full"
        waiting = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        assert proc.stdout.readline().strip() == "freed"
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10, trust_env=False)
        for sock in waiting:
            sock.close()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert answer.status_code == 200
    assert proc.returncode == 0, err
    accept_lines = [line for line in err.splitlines() if "accept" in line]
    assert len(accept_lines) == 1, err
    assert "http_accept_failed" in accept_lines[0] and "Too many open files" in accept_lines[0]
    assert "Traceback" not in err


# ----- malformed requests ---------------------------------------------------------------------------------

MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",  # a header block past 16 KiB
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a request line past 16 KiB
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 prior knowledge
    b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nabcde",
    b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad\x00Header: y\r\n\r\n",
    b"\r\n\r\n\r\n" * 100,
]


def test_malformed_requests_are_refused_quietly_and_the_server_answers_on(
    tmp_path: Path, servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server(tmp_path, ServerLimits(header_timeout=1.5, body_timeout=1.5))
    servers.append(server)
    swarm = Swarm(server.port)  # all at once, five times over, as an attacker would send them
    try:
        for raw in MALFORMED * 5:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            swarm.sockets[sock] = "idle"
            try:
                sock.sendall(raw)
            except OSError:
                swarm.closed_by_server[sock] = 0.0  # refused while we sent: an answer too
            sock.setblocking(False)
        deadline = time.monotonic() + 30
        while swarm.open_ones() and time.monotonic() < deadline:
            swarm.step(0.2)
        assert swarm.open_ones() == []  # each answered 400 and closed, or dropped at its deadline
    finally:
        swarm.close()
    assert healthz(server.url) == 200
    # uvicorn's plain-text line per malformed request would let anyone write to the journal at will.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
