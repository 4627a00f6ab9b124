"""Run an ASGI app (a sandbox, later the daemon's own server) on loopback in a background thread.

Both sandboxes and the tests use this one helper, so that "start on a free port, wait until it
answers, stop cleanly" is written once. uvicorn is given an already-bound socket: the port is
known before the server starts, and there is no race between picking a free port and binding it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass
class RunningServer:
    """A uvicorn server serving one app on 127.0.0.1 from a daemon thread."""

    host: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Open connections of every server started here, by (server address, client address) as an ASGI
# scope names them: what lets a sandbox's fault reach below HTTP and cut a connection.
_CONNECTIONS: dict[tuple[Any, Any], asyncio.Transport] = {}


class _TrackedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, recording its transport while the connection is open."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _CONNECTIONS[(self.server, self.client)] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        _CONNECTIONS.pop((self.server, self.client), None)
        super().connection_lost(exc)


def connection_of(scope: Any) -> asyncio.Transport | None:
    """The transport under the request `scope` (served by `serve_in_thread`), if still open."""
    server, client = scope.get("server"), scope.get("client")
    if server is None or client is None:
        return None
    return _CONNECTIONS.get((tuple(server), tuple(client)))


def bind_loopback(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket on loopback; port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_in_thread(
    app: Any, *, port: int = 0, host: str = "127.0.0.1", startup_timeout: float = 10.0
) -> RunningServer:
    """Start `app` on host:port (0 = any free port) and return once it accepts connections."""
    sock = bind_loopback(port, host)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=_TrackedH11Protocol)
    server = uvicorn.Server(config)
    # uvicorn would install its own SIGINT/SIGTERM handlers; in a thread that is neither
    # possible nor wanted: the owner of the process decides how to stop.
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # uvicorn < 0.29 had the method
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"serve:{sock.getsockname()[1]}"
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on {host}:{sock.getsockname()[1]} did not start")
        time.sleep(0.01)
    return RunningServer(host=host, port=sock.getsockname()[1], _server=server, _thread=thread)


class LoopbackSandbox:
    """How every provider sandbox runs: its Starlette `app` on 127.0.0.1 from a thread, stopped by
    `close()` or at the end of a `with` block. A sandbox adds what it runs besides the server
    (job threads, webhook deliveries) in `_shutdown`."""

    app: Any
    _server: RunningServer | None = None

    def start(self, port: int = 0) -> RunningServer:
        """Serve on 127.0.0.1:port (0 = a free port) from a background thread."""
        if self._server is not None:
            raise RuntimeError("this sandbox is already started")
        self._server = serve_in_thread(self.app, port=port)
        return self._server

    @property
    def server_url(self) -> str:
        """The server's root (the /_sandbox routes live here)."""
        if self._server is None:
            raise RuntimeError("start() the sandbox first")
        return self._server.url

    def _shutdown(self) -> None:
        """Stop what the sandbox runs besides its server."""

    def close(self) -> None:
        self._shutdown()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
