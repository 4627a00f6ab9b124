"""A loopback HTTP server that answers whatever the current hypothesis example says, and the
strategies for those answers: plausible bodies with parts replaced by wrong values, truncated JSON,
non-JSON, empty bodies, huge numbers, nulls where objects belong, odd statuses and headers.

Used by tests/integration/test_bad_input_responses.py and bench/bad_input.py.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hypothesis import strategies as st


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class AnsweringServer:
    """Every request, whatever its method and path, gets `self.answer`. Links inside fuzzed bodies
    that point at `self.url` come back here too, so a client that follows one meets the same answer."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests += 1
                answer = server.answer
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                body = b"" if self.command == "HEAD" or answer.status in (204, 304) else answer.body
                self.send_header("Content-Length", str(len(body)))  # (a 204 with a length makes clients wait)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda *args: None  # a client that hangs up early is not news
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# --- strategies ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1e308, -1e308, 1e400, float("nan"), 2**63, 10**30]),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "OK",
            "COMPLETED",
            "Completed",
            "completed",
            "http://127.0.0.1:9/x.jpg",
            "gid://shopify/Product/1",
            "OUT_OF_TOKENS",
            "THROTTLED",
            "null",
            "enh_1",
            "1",
        ]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """The template with some of its parts replaced by wrong values, dropped, or left alone."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            choice = draw(st.integers(0, 5))
            if choice == 0:
                continue  # key missing
            out[key] = draw(JSON) if choice == 1 else (None if choice == 2 else draw(mutated(value)))
        return out
    if isinstance(template, list):
        items = [draw(st.one_of(mutated(item), JSON)) for item in template]
        return items if draw(st.booleans()) else items * draw(st.integers(0, 3))
    return draw(st.one_of(SCALARS, JSON)) if draw(st.integers(0, 2)) == 0 else template


def encode(value: Any) -> bytes:
    # allow_nan: Python writes NaN and Infinity, which its own json.loads reads back: a server might too.
    return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn, templates: list[Any], base_url: str) -> bytes:
    templates = [json.loads(json.dumps(t).replace("{base}", base_url)) for t in templates]
    kind = draw(st.integers(0, 12))
    if kind <= 4 or kind > 9:
        return encode(draw(mutated(draw(st.sampled_from(templates)))))
    if kind == 5:
        return encode(draw(JSON))
    if kind == 6:
        full = encode(draw(st.sampled_from(templates)))
        return full[: draw(st.integers(0, max(0, len(full) - 1)))]  # truncated
    if kind == 7:
        return draw(
            st.sampled_from(
                [
                    b"",
                    b"<html><body>502 Bad Gateway</body></html>",
                    b"\xff\xfe\x00garbage",
                    b"null",
                    b"[]",
                    b"{}",
                    b'"text"',
                    b"1e999",
                    b"{" * 50,
                    b"[" * 100_000,
                ]
            )
        )
    if kind == 8:
        return draw(st.binary(max_size=64))
    return encode(draw(st.sampled_from(templates)))  # the plausible answer itself


STATUSES = st.one_of(
    st.sampled_from([200, 200, 200, 201, 202]),
    st.sampled_from([204, 301, 302, 400, 401, 402, 403, 404, 408, 409, 410, 413, 418, 422, 429, 500, 502, 503, 504]),
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            "5",
            "0",
            "-3",
            "nan",
            "inf",
            "1e309",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "soon",
            "",
            "99999999999999999999",
            "http:x",
            "//[::1",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
)


@st.composite
def answers(draw: st.DrawFn, templates: list[Any], base_url: str) -> Answer:
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/html", "application/json"]))}
    for name in (
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-Shopify-API-Version",
        "Location",
    ):
        if draw(st.integers(0, 3)) == 0:
            headers[name] = draw(HEADER_VALUES)
    return Answer(status=draw(STATUSES), headers=headers, body=draw(bodies(templates, base_url)))
