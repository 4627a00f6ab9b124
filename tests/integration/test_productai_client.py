"""The ProductAI client against the loopback ProductAISandbox (real HTTP), plus a MockTransport for
the shapes the sandbox never sends. Every failure maps to one exception; the key never leaks."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import structlog
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from retouch.plugin.providers import errors as generic
from retouch.plugin.providers.productai.client import JobStatus, ProductAIClient, WebhookEvent, parse_webhook
from retouch.plugin.providers.productai.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OutOfTokens,
    ProductAIError,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)
from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.plugin.serve import serve_in_thread

KEY = "pai_TESTSECRET_client_5d1e"
WRONG_KEY = "pai_TESTSECRET_wrong_9a7c"


def photo_jpeg() -> bytes:
    image = Image.new("RGB", (120, 90), (215, 195, 165))
    ImageDraw.Draw(image).rectangle((40, 20, 80, 70), fill=(30, 70, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


SOURCE = photo_jpeg()


class Host:
    """Serves source images to the sandbox and receives its webhooks."""

    def __init__(self) -> None:
        self.hooks: list[bytes] = []
        self.lock = threading.Lock()

    async def image(self, request: Request) -> Response:
        return Response(SOURCE, media_type="image/jpeg")

    async def not_an_image(self, request: Request) -> Response:
        return Response(b"GIF89a nope", media_type="image/jpeg")

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            self.hooks.append(raw)
        return Response(status_code=200)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Host, str]]:
    host = Host()
    app = Starlette(
        routes=[
            Route("/p/{name}.jpg", host.image),
            Route("/broken.jpg", host.not_an_image),
            Route("/hooks/{token}", host.hook, methods=["POST"]),
        ]
    )
    with serve_in_thread(app) as server:
        yield host, server.url


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., ProductAISandbox]]:
    """Fresh sandboxes (so each test has the full 15/min budget) with 0.2 s jobs, budget counted per key."""
    started: list[ProductAISandbox] = []

    def make(**options: Any) -> ProductAISandbox:
        options.setdefault("keys", {KEY: 100})
        options.setdefault("job_seconds", 0.2)
        options.setdefault("rate_limit_scope", "key")
        sandbox = ProductAISandbox(**options)
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., ProductAISandbox]) -> ProductAISandbox:
    return make_sandbox()


def run(coro_fn: Callable[[ProductAIClient], Any], base_url: str, key: str = KEY, **options: Any) -> Any:
    """Run `coro_fn(client)` with a fresh client; returns (result or raised ProductAIError, client)."""

    async def go() -> Any:
        async with ProductAIClient(key, base_url, **options) as client:
            try:
                return await coro_fn(client), client
            except ProductAIError as exc:
                return exc, client

    return asyncio.run(go())


async def wait_finished(client: ProductAIClient, job_id: int) -> tuple[JobStatus, list[str]]:
    seen: list[str] = []
    for _ in range(40):
        status = await client.job(job_id)
        seen.append(status.status)
        if status.finished:
            return status, seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never finished: {seen}")


def fault(sandbox: ProductAISandbox, **body: Any) -> None:
    httpx.post(sandbox.server_url + "/_sandbox/faults", json=body).raise_for_status()


def mocked(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.MockTransport(lambda request: httpx.Response(status, content=content.encode(), headers=headers))


# --- the happy paths, for real ------------------------------------------------------------------


def test_generate_then_poll_until_completed_gives_a_new_downloadable_image(
    sandbox: ProductAISandbox, host: tuple[Host, str]
) -> None:
    source_url = f"{host[1]}/p/bottle.jpg"

    async def go(client: ProductAIClient) -> tuple[int, JobStatus, list[str]]:
        job_id = await client.generate(model="kontext-pro", image_url=source_url, prompt="clean shot on white")
        return (job_id, *await wait_finished(client, job_id))

    (job_id, done, seen), client = run(go, sandbox.base_url)
    assert isinstance(job_id, int) and done.id == job_id
    assert done.status == "COMPLETED" and done.message is None and set(seen[:-1]) <= {"NOT_STARTED", "RUNNING"}
    result = httpx.get(done.image_url)
    assert result.status_code == 200 and result.content != SOURCE
    assert Image.open(io.BytesIO(result.content)).format in ("PNG", "JPEG")
    assert client.stats == {"ok": 1 + len(seen)}
    stats = sandbox.stats()["keys"][KEY]
    assert stats["tokens_spent"] == 3 and stats["requests"] == {"generate": 1, "upscale": 0, "job": len(seen)}


def test_upscale_doubles_the_image(sandbox: ProductAISandbox, host: tuple[Host, str]) -> None:
    async def go(client: ProductAIClient) -> JobStatus:
        return (await wait_finished(client, await client.upscale(image_url=f"{host[1]}/p/a.jpg")))[0]

    done, _ = run(go, sandbox.base_url)
    assert done.status == "COMPLETED"
    upscaled = Image.open(io.BytesIO(httpx.get(done.image_url).content))
    assert upscaled.size == (240, 180)
    assert sandbox.stats()["keys"][KEY]["tokens_spent"] == 20


def test_a_failed_job_is_error_and_the_sandbox_gives_no_reason(
    sandbox: ProductAISandbox, host: tuple[Host, str]
) -> None:
    async def go(client: ProductAIClient) -> JobStatus:
        job_id = await client.generate(model="gpt-low", image_url=f"{host[1]}/broken.jpg", prompt="x")
        return (await wait_finished(client, job_id))[0]

    done, _ = run(go, sandbox.base_url)
    assert (done.status, done.image_url, done.message) == ("ERROR", None, None)  # [DOC] the bare ERROR shape
    assert "not a PNG, JPG or WebP" in sandbox.job(done.id)["error_reason"]


def test_an_error_reason_in_the_job_answer_is_kept() -> None:
    body = {"status": "OK", "data": {"id": 7, "status": "ERROR", "message": "Content policy violation"}}
    done, _ = run(lambda client: client.job(7), "https://productai.test/v1", transport=mocked(200, body))
    assert done == JobStatus(id=7, status="ERROR", image_url=None, message="Content policy violation")


def test_requests_carry_the_key_only_in_x_api_key_and_no_cookies() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"status": "OK", "data": {"id": 5, "status": "RUNNING"}},
            headers={"Set-Cookie": "session=tracking; Path=/"},
        )

    async def go(client: ProductAIClient) -> list[int]:
        return [
            await client.generate(model="seedream", image_url=["https://a/1.jpg", "https://a/2.jpg"], prompt="p"),
            await client.upscale(image_url="https://a/1.jpg"),
        ]

    ids, _ = run(go, "https://productai.test/v1", transport=httpx.MockTransport(answer))
    assert ids == [5, 5]
    assert [str(request.url) for request in seen] == [
        "https://productai.test/v1/api/generate",
        "https://productai.test/v1/api/upscale",
    ]
    assert json.loads(seen[0].content) == {
        "model": "seedream",
        "image_url": ["https://a/1.jpg", "https://a/2.jpg"],
        "prompt": "p",
    }
    for request in seen:
        assert request.headers["x-api-key"] == KEY and "authorization" not in request.headers
        assert "cookie" not in request.headers and KEY not in str(request.url)


# --- failures from the sandbox ------------------------------------------------------------------


def test_the_16th_request_in_a_minute_is_rate_limited_without_retry_after(sandbox: ProductAISandbox) -> None:
    async def go(client: ProductAIClient) -> list[ProductAIError]:
        raised = []
        for _ in range(16):
            with pytest.raises(ProductAIError) as info:
                await client.job(1)
            raised.append(info.value)
        return raised

    raised, client = run(go, sandbox.base_url)
    assert all(isinstance(exc, NotFound) and exc.status == 404 for exc in raised[:15])
    limited = raised[15]
    assert isinstance(limited, RateLimited) and isinstance(limited, generic.RateLimited)
    assert limited.status == 429 and limited.retry_after is None  # the sandbox sends no Retry-After
    assert client.stats == {"client_error": 15, "rate_limited": 1}


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("DATE", 120.0), ("soon", None)])
def test_retry_after_in_seconds_or_as_a_date(header: str, expected: float | None) -> None:
    value = formatdate(timeval=time.time() + 120, usegmt=True) if header == "DATE" else header
    exc, _ = run(
        lambda client: client.job(1),
        "https://productai.test/v1",
        transport=mocked(429, {"name": "ApiError", "message": "TOO_MANY_REQUESTS"}, {"Retry-After": value}),
    )
    assert isinstance(exc, RateLimited) and exc.code == "TOO_MANY_REQUESTS"
    if expected is None:
        assert exc.retry_after is None
    elif header == "DATE":
        # Counted from when the answer is read: a date 120 s ahead (to the whole second) less however
        # long a stalled CI machine took to get there; 10 s of slack, never more than 120.
        assert expected - 10 <= exc.retry_after <= expected
    else:
        assert exc.retry_after == expected


def test_out_of_tokens_from_the_sandbox_in_both_shapes(
    make_sandbox: Callable[..., ProductAISandbox], host: tuple[Host, str]
) -> None:
    sandbox = make_sandbox(keys={KEY: 2})  # the sandbox alternates: 400 ApiError, then 402 {"code"}
    url = f"{host[1]}/p/a.jpg"

    async def go(client: ProductAIClient) -> list[Any]:
        answers: list[Any] = [await client.generate(model="gpt-low", image_url=url, prompt="no OUT_OF_TOKENS here")]
        for _ in range(2):
            with pytest.raises(ProductAIError) as info:
                await client.generate(model="gpt-low", image_url=url, prompt="p")
            answers.append(info.value)
        return answers

    (job_id, first, second), _ = run(go, sandbox.base_url)
    assert isinstance(job_id, int)  # a prompt echoing the word is not an error
    for exc, status in ((first, 400), (second, 402)):
        assert isinstance(exc, OutOfTokens) and isinstance(exc, generic.OutOfCredits)
        assert (exc.status, exc.code, exc.message) == (status, "OUT_OF_TOKENS", "Not enough credits")
    assert sandbox.stats()["keys"][KEY]["jobs_started"]["generate"] == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            200,
            {"name": "ApiError", "message": "OUT_OF_TOKENS", "details": "Not enough credits"},
        ),  # documented: no status
        (402, {"code": "OUT_OF_TOKENS", "message": "Not enough credits"}),
        (500, {"error": {"reason": "OUT_OF_TOKENS"}}),
        (403, "OUT_OF_TOKENS"),
    ],
)
def test_out_of_tokens_anywhere_in_the_body_wins_over_the_status(status: int, body: Any) -> None:
    exc, client = run(
        lambda client: client.upscale(image_url="https://a/b.jpg"),
        "https://productai.test/v1",
        transport=mocked(status, body),
    )
    assert isinstance(exc, OutOfTokens) and exc.status == status and client.stats == {"client_error": 1}


def test_a_wrong_key_is_authentication_failed_and_never_leaks(sandbox: ProductAISandbox) -> None:
    with structlog.testing.capture_logs() as logs:
        exc, client = run(
            lambda client: client.generate(model="gpt-low", image_url="https://a/b.jpg", prompt="p"),
            sandbox.base_url,
            key=WRONG_KEY,
        )
    assert isinstance(exc, AuthenticationFailed) and isinstance(exc, generic.AuthenticationFailed)
    assert (exc.status, exc.code) == (401, "UNAUTHORIZED")
    for text in (str(exc), repr(exc), repr(client), str(exc.args), repr(logs)):
        assert WRONG_KEY not in text and "TESTSECRET" not in text
    assert exc.__cause__ is None


def test_a_key_echoed_by_the_server_is_redacted() -> None:
    body = {"name": "ApiError", "message": "UNAUTHORIZED", "details": f"Key {KEY} was revoked"}
    exc, _ = run(lambda client: client.job(1), "https://productai.test/v1", transport=mocked(403, body))
    assert isinstance(exc, AuthenticationFailed) and KEY not in str(exc) and KEY not in repr(exc)


def test_a_bad_model_is_invalid_request_and_costs_nothing(sandbox: ProductAISandbox) -> None:
    exc, client = run(
        lambda client: client.generate(model="gpt-ultra", image_url="https://a/b.jpg", prompt="p"), sandbox.base_url
    )
    assert isinstance(exc, InvalidRequest) and isinstance(exc, generic.Rejected)
    assert (exc.status, exc.code) == (400, "BAD_REQUEST") and exc.message
    assert sandbox.stats()["keys"][KEY]["tokens"] == 100 and client.stats == {"client_error": 1}


def test_a_503_is_service_unavailable_and_not_retried(sandbox: ProductAISandbox, host: tuple[Host, str]) -> None:
    fault(sandbox, endpoint="generate", status=503, count=2)
    exc, client = run(
        lambda client: client.generate(model="gpt-low", image_url=f"{host[1]}/p/a.jpg", prompt="p"), sandbox.base_url
    )
    assert isinstance(exc, ServiceUnavailable) and isinstance(exc, generic.Unavailable)
    assert (exc.reason, exc.status) == ("server_error", 503)
    stats = sandbox.stats()
    assert stats["keys"][KEY]["requests"]["generate"] == 1 and stats["faults_pending"] == 1
    assert client.stats == {"server_error": 1}


def test_a_hanging_server_is_a_timeout(sandbox: ProductAISandbox) -> None:
    # The hang outlasts the 0.2 s timeout by more than a stalled CI machine can lose (the sandbox's
    # stop waits for it: 3 s more than before).
    fault(sandbox, endpoint="job", mode="hang", seconds=4.0)
    exc, client = run(lambda client: client.job(1), sandbox.base_url, timeout=0.2)
    assert isinstance(exc, ServiceUnavailable) and (exc.reason, exc.status) == ("timeout", None)
    assert client.stats == {"timeout": 1}


def test_an_html_page_is_non_json_body(sandbox: ProductAISandbox) -> None:
    fault(sandbox, endpoint="job", mode="html")
    exc, client = run(lambda client: client.job(1), sandbox.base_url)
    assert isinstance(exc, ServiceUnavailable) and (exc.reason, exc.status) == ("non_json_body", 502)
    assert client.stats == {"non_json_body": 1}


def test_nobody_listening_is_a_connection_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        exc, client = run(lambda client: client.job(1), f"http://127.0.0.1:{closed.getsockname()[1]}/v1")
    assert isinstance(exc, ServiceUnavailable) and exc.reason == "connection_error"
    assert client.stats == {"connection_error": 1}


# --- answers the contract does not allow (MockTransport) ------------------------------------------


@pytest.mark.parametrize(
    ("call", "status", "body", "error", "reason"),
    [
        ("generate", 200, {"status": "OK", "data": {"id": "22292", "status": "RUNNING"}}, UnexpectedResponse, None),
        ("generate", 200, {"status": "OK", "data": {"id": True}}, UnexpectedResponse, None),
        ("generate", 200, {"status": "OK"}, UnexpectedResponse, None),
        ("generate", 200, [], UnexpectedResponse, None),
        ("generate", 200, {"name": "ApiError", "message": "BAD_REQUEST"}, UnexpectedResponse, None),
        ("job", 200, {"status": "OK", "data": {"id": 1, "status": "COMPLETED"}}, UnexpectedResponse, None),
        (
            "job",
            200,
            {"status": "OK", "data": {"id": 1, "status": 7}},
            UnexpectedResponse,
            None,
        ),  # a word we do not know is read
        ("job", 200, {"status": "OK", "data": {"id": 1, "status": ""}}, UnexpectedResponse, None),
        ("job", 200, {"status": "OK", "data": {"id": 2, "status": "RUNNING"}}, UnexpectedResponse, None),
        ("job", 302, "", UnexpectedResponse, None),  # not followed, with or without a Location
        ("job", 307, {"status": "OK", "data": {"id": 1, "status": "RUNNING"}}, UnexpectedResponse, None),
        ("job", 200, "<html>maintenance</html>", ServiceUnavailable, "non_json_body"),
        ("job", 404, "<html>no such route</html>", ServiceUnavailable, "non_json_body"),
        ("job", 408, {}, ServiceUnavailable, "server_error"),
        ("job", 422, {"message": "bad"}, InvalidRequest, None),
    ],
)
def test_answers_outside_the_contract(call: str, status: int, body: Any, error: type, reason: str | None) -> None:
    async def go(client: ProductAIClient) -> Any:
        if call == "job":
            return await client.job(1)
        return await client.generate(model="gpt-low", image_url="https://a/b.jpg", prompt="p")

    exc, _ = run(go, "https://productai.test/v1", transport=mocked(status, body))
    assert type(exc) is error and exc.status == status
    assert getattr(exc, "reason", None) == reason


def test_a_redirect_is_never_followed() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "productai.test":
            return httpx.Response(301, headers={"Location": "https://elsewhere.test/collect"})
        return httpx.Response(200, json={"status": "OK", "data": {"id": 1, "status": "RUNNING"}})

    exc, _ = run(lambda client: client.job(1), "https://productai.test/v1", transport=httpx.MockTransport(answer))
    assert isinstance(exc, UnexpectedResponse) and exc.status == 301
    assert [request.url.host for request in seen] == ["productai.test"]


def test_bad_arguments_and_keys_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError) as info:
        ProductAIClient(" pai_TESTSECRET ")
    assert "TESTSECRET" not in str(info.value)
    with pytest.raises(ValueError):
        ProductAIClient(KEY, "ftp://productai.test/v1")
    with pytest.raises(ValueError):
        run(lambda client: client.job(True), "https://productai.test/v1")


# --- webhooks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        (
            {"status": "success", "image_url": "https://cdn/r.png", "job_id": "12312"},
            WebhookEvent(12312, "success", "https://cdn/r.png"),
        ),
        ({"status": "error"}, WebhookEvent(None, "error", None)),
        ({"status": "error", "job_id": "7", "image_url": "https://x"}, WebhookEvent(7, "error", None)),
        (
            {"status": "success", "image_url": "https://cdn/r.png", "job_id": 12, "extra": 1},
            WebhookEvent(12, "success", "https://cdn/r.png"),
        ),
    ],
)
def test_parse_webhook_documented_payloads(payload: dict[str, Any], event: WebhookEvent) -> None:
    assert parse_webhook(json.dumps(payload).encode()) == event


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1]",
        b'"success"',
        b"{}",
        b'{"status": "SUCCESS", "image_url": "https://a", "job_id": "1"}',
        b'{"status": "success", "image_url": "https://a"}',
        b'{"status": "success", "job_id": "1"}',
        b'{"status": "success", "image_url": "javascript:alert(1)", "job_id": "1"}',
        b'{"status": "success", "image_url": "https://a", "job_id": "12a"}',
        b'{"status": "success", "image_url": "https://a", "job_id": 1.5}',
        b'{"status": "error", "job_id": true}',
        b'{"status": "error", "job_id": "-3"}',
    ],
)
def test_parse_webhook_refuses_anything_else(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_webhook(raw)


def test_the_sandbox_webhooks_parse_and_match_the_api_job(
    make_sandbox: Callable[..., ProductAISandbox], host: tuple[Host, str]
) -> None:
    receiver, url = host
    with receiver.lock:
        receiver.hooks.clear()
    sandbox = make_sandbox(webhook_url=f"{url}/hooks/secret-token")

    async def go(client: ProductAIClient) -> tuple[JobStatus, int]:
        good = await client.generate(model="gpt-low", image_url=f"{url}/p/a.jpg", prompt="p")
        bad = await client.generate(model="gpt-low", image_url=f"{url}/broken.jpg", prompt="p")
        await wait_finished(client, bad)
        return (await wait_finished(client, good))[0], bad

    (done, _), _ = run(go, sandbox.base_url)
    for _ in range(100):
        with receiver.lock:
            if len(receiver.hooks) == 2:
                break
        time.sleep(0.05)
    events = sorted((parse_webhook(raw) for raw in receiver.hooks), key=lambda event: event.status)
    assert events == [WebhookEvent(None, "error", None), WebhookEvent(done.id, "success", done.image_url)]
