"""Each client scrubs what it raises: a service that quotes the request's credentials back in every
field of its error body, at every status, never puts the key or token into an exception's text."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fuzz_clients import SECRETS, TARGETS, run_operation

CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-shopify-access-token")
STATUSES = (200, 400, 401, 403, 404, 409, 422, 429, 500, 503)


class QuotingServer:
    """Answers every request with `status` and an error body whose every field quotes the request's
    credential headers (and the raw key, as a careless proxy's error page would)."""

    def __init__(self) -> None:
        self.status = 400
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                quoted = "; ".join(f"{name}: {self.headers[name]}" for name in CREDENTIAL_HEADERS if self.headers[name])
                echo = f"rejected ({quoted or 'no credentials'})"
                body = json.dumps(
                    {
                        "error": {"code": echo, "message": echo, "request_id": echo},
                        "detail": echo,
                        "message": echo,
                        "details": echo,
                        "code": echo,
                        "name": echo,
                        "status": "ERROR",
                        "errors": [{"message": echo, "extensions": {"code": echo}}],
                        "data": {"error": echo, "status": "ERROR", "id": 1},
                    }
                ).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if server.status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda *args: None
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def quoting() -> Any:
    server = QuotingServer()
    yield server
    server.stop()


CASES = [(target.name, operation) for target in TARGETS for operation in target.operations]


@pytest.mark.parametrize(("client", "operation"), CASES, ids=[f"{c}-{o}" for c, o in CASES])
def test_no_client_raises_a_credential_the_service_quoted_back(
    quoting: QuotingServer, client: str, operation: str
) -> None:
    target = next(t for t in TARGETS if t.name == client)
    for status in STATUSES:
        quoting.status = status
        problem = run_operation(target, operation, quoting.url)
        assert problem is None, f"HTTP {status}: {problem!r}"[:500]
    assert SECRETS  # fuzz_clients checks each raised error's text for these
