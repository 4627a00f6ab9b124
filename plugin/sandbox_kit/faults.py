"""Injected faults for the sandboxes: "the next N requests to ENDPOINT go wrong like this".

One fault book serves every sandbox (the three providers and Shopify), so a test speaks the same
fault language to each:
- `status` 5xx or 429: answer that error instead of handling the request (`retry_after`: with a
  Retry-After header of that many seconds; without it, none);
- `mode="hang"`: wait `seconds`, then handle the request normally (a slow service);
- `mode="html"`: a proxy's 502 HTML page instead of JSON;
- `mode="reset"`: close the TCP connection with a reset, no response at all;
- `mode="truncated"`: a 200 whose Content-Length promises more than is sent, then the connection closes;
- `mode="non_json"`: a 200 whose body is not JSON (a maintenance page);
- `mode="wrong_shape"`: a 200 with valid JSON of the wrong shape (a list where an object belongs);
  on an endpoint that starts paid work (where `drop_response` applies), these three come after the
  work is done: a 200 means the service processed the request, only the answer came back broken;
- `mode="drop_response"`: do the work (and charge for it), then lose the answer (a 500);
- `mode="fail"`: accept the request, then let the job (or media) end failed;
- `mode="quote_auth"` (where a sandbox offers it): a 400 whose message quotes the request's
  credentials back, in the forms a careless service uses (`quoted_credentials`): what our
  redaction must catch at every boundary;
- on the pseudo-endpoint "webhook": `mode="duplicate"` delivers a webhook twice, `mode="late"`
  holds it back `seconds`, so later ones overtake it (out of order).

Each sandbox says which endpoints it has and which endpoints each mode applies to; `operation`
narrows a fault to one operation of an endpoint (Shopify: a GraphQL operationName).

A fault plan is a list of such faults. Each fires at most `count` times; `skip` lets that many
matching requests through first (an exact schedule: "the 3rd status request fails"), and
`probability` makes each later request fail with that chance (a rate: "10% of creates answer
503"), drawn from the book's seeded generator so a run can be repeated exactly.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..serve import connection_of

# Modes that replace a request's answer the same way whatever the service: every sandbox offers them.
ANSWER_MODES = ("hang", "html", "reset", "truncated", "non_json", "wrong_shape")
WEBHOOK = "webhook"  # the pseudo-endpoint of a sandbox's outgoing webhooks or callbacks
WEBHOOK_MODES = ("duplicate", "late")


@dataclass
class Fault:
    endpoint: str
    count: int = 1
    status: int | None = None  # answer with this 5xx or 429
    mode: str | None = None  # one of the sandbox's modes
    seconds: float = 0.0  # for "hang" and "late"
    skip: int = 0  # let this many matching requests through first
    probability: float = 1.0  # then fail each matching request with this chance
    retry_after: float | None = None  # with `status`: send Retry-After (seconds, rounded up)
    operation: str | None = None  # only requests of this operation (None: any)
    code: str | None = None  # for "fail": the failure code the sandbox reports

    @property
    def kind(self) -> str:
        """What a counter calls it: "503", "429+retry-after", "reset", ..."""
        if self.status is not None:
            return f"{self.status}+retry-after" if self.retry_after is not None else str(self.status)
        return str(self.mode)


def answer_modes(endpoints: Collection[str]) -> dict[str, tuple[str, ...]]:
    """The service-independent modes, offered on `endpoints`."""
    return {mode: tuple(endpoints) for mode in ANSWER_MODES}


class FaultBook:
    """Pending faults, thread-safe (sandbox handlers and job threads take from it)."""

    def __init__(self, endpoints: Collection[str], modes: Mapping[str, Collection[str]], *, seed: int = 0) -> None:
        """`modes` maps each offered mode to the endpoints it applies to; `seed` makes the chances
        of probabilistic faults repeatable."""
        self.endpoints = tuple(endpoints)
        self.modes = {mode: tuple(applies_to) for mode, applies_to in modes.items()}
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._served: Counter[str] = Counter()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._random.seed(seed)

    def check(self, fault: Fault) -> None:
        """ValueError naming what is wrong with `fault`."""
        if fault.endpoint not in self.endpoints:
            raise ValueError(f"endpoint must be one of {', '.join(self.endpoints)}")
        if not isinstance(fault.count, int) or fault.count < 1:
            raise ValueError("count must be at least 1")
        if (fault.status is None) == (fault.mode is None):
            raise ValueError("give either a status (5xx) or a mode")
        if fault.status is not None and not (
            isinstance(fault.status, int) and (500 <= fault.status <= 599 or fault.status == 429)
        ):
            raise ValueError("status must be a 5xx code or 429")
        if fault.retry_after is not None and (fault.status is None or fault.retry_after < 0):
            raise ValueError("retry_after goes with a status, and is 0 or more")
        if fault.mode is not None:
            if fault.mode not in self.modes:
                raise ValueError(f"mode must be one of {', '.join(self.modes)}")
            if fault.endpoint not in self.modes[fault.mode]:
                raise ValueError(f"{fault.mode} applies to {', '.join(self.modes[fault.mode])} only")
        if fault.mode in ("hang", "late") and fault.seconds <= 0:
            raise ValueError(f"{fault.mode} needs seconds > 0")
        if not isinstance(fault.skip, int) or fault.skip < 0:
            raise ValueError("skip must be 0 or more")
        if not 0 < fault.probability <= 1:
            raise ValueError("probability must be above 0 and at most 1")

    def add(self, fault: Fault) -> None:
        self.check(fault)
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, endpoint: str, operation: str | None = None) -> Fault | None:
        """The fault this request to `endpoint` (doing `operation`) meets, if any (each fault's count
        used up by one, and counted as served)."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint != endpoint or fault.operation not in (None, operation):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.probability < 1 and self._random.random() >= fault.probability:
                    continue
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                self._served[fault.kind] += 1
                return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(fault.count for fault in self._faults)

    def served(self) -> dict[str, int]:
        """Faults injected so far, by kind: the sandbox's own count, for benchmarks and tests."""
        with self._lock:
            return dict(self._served)

    def as_list(self) -> list[dict[str, Any]]:
        """The pending faults, as a `GET /_sandbox/faults` shows them."""
        with self._lock:
            return [{key: value for key, value in vars(fault).items() if value is not None} for fault in self._faults]


def fault_from_body(body: Mapping[str, Any]) -> Fault:
    """A fault from a `POST /_sandbox/faults` body; ValueError/TypeError for values of the wrong type."""
    retry_after = body.get("retry_after")
    return Fault(
        endpoint=str(body.get("endpoint")),
        count=int(body.get("count", 1)),
        status=body.get("status"),
        mode=body.get("mode"),
        seconds=float(body.get("seconds", 0.0)),
        skip=int(body.get("skip", 0)),
        probability=float(body.get("probability", 1.0)),
        retry_after=None if retry_after is None else float(retry_after),
        operation=body.get("operation"),
        code=body.get("code"),
    )


# --- what a fault sends instead of the answer ------------------------------------------------------


def retry_after_headers(fault: Fault) -> dict[str, str]:
    """{"Retry-After": whole seconds, rounded up so a client never comes back too early} or {}."""
    if fault.retry_after is None:
        return {}
    whole = int(fault.retry_after)
    return {"Retry-After": str(whole if whole == fault.retry_after else whole + 1)}


async def _until_disconnected(receive: Receive) -> None:
    """Wait (briefly) until the server has seen the connection go, so it sends nothing more."""
    try:
        while (await asyncio.wait_for(receive(), timeout=5))["type"] != "http.disconnect":
            pass
    except TimeoutError:
        pass


class ResetConnection(Response):
    """No response at all: the TCP connection is closed with a reset (SO_LINGER 0, then abort)."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = connection_of(scope)
        if transport is None:  # not served by serve_in_thread: the nearest thing is an empty 500
            await super().__call__(scope, receive, send)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        await _until_disconnected(receive)


class TruncatedBody(Response):
    """A 200 whose Content-Length promises more than is sent; then the connection closes (FIN)."""

    SENT = b'{"data": {"status": "'

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.SENT) + 64).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.SENT, "more_body": True})
        await close_connection(scope, receive)


async def close_connection(scope: Scope, receive: Receive) -> None:
    """Close the connection under a response that has started and not ended: what was written is
    flushed, then a FIN, so the client gets a body shorter than announced."""
    transport = connection_of(scope)
    if transport is not None:
        transport.close()
    await _until_disconnected(receive)


CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-shopify-access-token")


def quoted_credentials(headers: Mapping[str, str]) -> str:
    """The request's credentials as a careless service quotes them back: the headers as sent, the
    key URL-encoded in a query string, and as HTTP Basic (base64 of "account:key")."""
    import base64
    from urllib.parse import quote

    parts = []
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value:
            key = value.split(" ", 1)[1] if name == "authorization" and " " in value else value
            parts.append(f"{name}: {value}")
            parts.append(f"retry as GET /v1/ping?api_key={quote(key, safe='')}")
            parts.append(f"or Authorization: Basic {base64.b64encode(f'account-7:{key}'.encode()).decode()}")
    return "request rejected (" + "; ".join(parts or ["no credentials"]) + ")"


def answer_for(fault: Fault) -> Response | None:
    """What the service-independent modes send instead of the answer (None: not one of them)."""
    if fault.mode == "html":
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
    if fault.mode == "reset":
        return ResetConnection()
    if fault.mode == "truncated":
        return TruncatedBody()
    if fault.mode == "non_json":
        # Announced as JSON, but a maintenance page: what a misconfigured edge serves.
        return Response(
            b"<html><body>Down for maintenance</body></html>", status_code=200, media_type="application/json"
        )
    if fault.mode == "wrong_shape":
        return JSONResponse([{"unexpected": True}])  # valid JSON; every API answers an object
    return None


AFTER_WORK_MODES = ("truncated", "non_json", "wrong_shape")


def answered_after_work(book: FaultBook, fault: Fault) -> bool:
    """Whether the sandbox does the request's work first, then sends the fault's answer (or a 500
    for drop_response) instead of its own."""
    return fault.mode == "drop_response" or (
        fault.mode in AFTER_WORK_MODES and fault.endpoint in book.modes.get("drop_response", ())
    )


async def delay_for(fault: Fault | None) -> None:
    """A "hang": the request is then handled normally, only too late."""
    if fault is not None and fault.mode == "hang":
        await asyncio.sleep(fault.seconds)


def webhook_plan(book: FaultBook) -> tuple[int, float]:
    """(how many times to deliver the next webhook, seconds to hold it back first)."""
    fault = book.take(WEBHOOK)
    if fault is None:
        return 1, 0.0
    if fault.mode == "duplicate":
        return 2, 0.0
    return 1, fault.seconds  # late


class SandboxFaults:
    """`add_fault` / `clear_faults` for a sandbox whose fault book is `self.faults`."""

    faults: FaultBook

    def add_fault(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        mode: str | None = None,
        count: int = 1,
        seconds: float = 0.0,
        skip: int = 0,
        probability: float = 1.0,
        retry_after: float | None = None,
        operation: str | None = None,
        code: str | None = None,
    ) -> None:
        """Answer `count` requests to `endpoint` with a 5xx/429 `status`, or per `mode`: the next ones,
        or after `skip` requests went through, each with `probability`."""
        self.faults.add(
            Fault(
                endpoint=endpoint,
                count=count,
                status=status,
                mode=mode,
                seconds=seconds,
                skip=skip,
                probability=probability,
                retry_after=retry_after,
                operation=operation,
                code=code,
            )
        )

    def clear_faults(self) -> None:
        self.faults.clear()
