"""The AI Gen Studio client against a misbehaving server: every failure maps to one exception, no secret leaks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retouch.plugin.providers.aigenstudio import (
    AigenClient,
    AigenError,
    AuthenticationFailed,
    InvalidPayload,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    SourceImage,
    UnexpectedResponse,
)
from retouch.plugin.serve import bind_loopback, serve_in_thread

KEY = "aigen_test_client_secret_123"
LIVE = "aigen_live_client_secret_456"
ENHANCEMENT = {"id": "e1", "status": "queued", "total_items": 1, "credits_reserved": 0, "sandbox": True}

# Status endpoint answers, by enhancement id: (HTTP status, body, content type, extra headers).
ANSWERS: dict[str, tuple[int, Any, str, dict[str, str]]] = {
    "not-json-200": (200, "<html>maintenance</html>", "text/html", {}),
    "array": (200, [1, 2], "application/json", {}),
    "no-enhancement": (200, {"request_id": "r"}, "application/json", {}),
    "enhancement-list": (200, {"enhancement": []}, "application/json", {}),
    "wrong-types": (200, {"enhancement": {"id": 5, "status": None, "total_items": "many"}}, "application/json", {}),
    "bad-items": (200, {"enhancement": {**ENHANCEMENT, "items": [{"status": "completed"}]}}, "application/json", {}),
    "bad-date": (200, {"enhancement": {**ENHANCEMENT, "created_at": "yesterday"}}, "application/json", {}),
    "teapot": (418, {"error": {"code": "teapot", "message": "short and stout"}}, "application/json", {}),
    "redirect": (302, "", "text/plain", {"Location": "https://elsewhere.example/"}),
    "502-html": (502, "<html>Bad Gateway</html>", "text/html", {}),
    "500-json": (
        500,
        {"error": {"code": "internal_error", "message": "boom", "request_id": "req_srv"}},
        "application/json",
        {},
    ),
    "408": (408, "", "text/plain", {}),
    "400-odd-envelope": (400, {"error": "bad"}, "application/json", {}),
    "401": (
        401,
        {"error": {"code": "invalid_api_key", "message": "The API key is invalid.", "request_id": "r1"}},
        "application/json",
        {},
    ),
    "403": (403, "", "text/plain", {}),
    "404": (
        404,
        {"error": {"code": "not_found", "message": "Enhancement not found.", "request_id": "r2"}},
        "application/json",
        {},
    ),
    "429-date": (
        429,
        {"error": {"code": "rate_limited", "message": "slow down"}},
        "application/json",
        {"Retry-After": "DATE"},
    ),
    "429-garbled": (
        429,
        {"error": {"code": "rate_limited", "message": "slow down"}},
        "application/json",
        {"Retry-After": "soon", "X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "x"},
    ),
    "nulls": (
        200,
        {
            "enhancement": {
                **ENHANCEMENT,
                "credits_used": None,
                "future_field": 1,
                "items": [{"id": "i1", "status": "queued", "credits_used": None}],
            }
        },
        "application/json",
        {},
    ),
}


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def status(self, request: Request) -> Response:
        self.requests.append({"headers": dict(request.headers), "path": request.url.path})
        status, body, content_type, headers = ANSWERS[request.path_params["id"]]
        if "Retry-After" in headers and headers["Retry-After"] == "DATE":
            headers = {"Retry-After": formatdate(usegmt=True)}
        content = body if isinstance(body, str) else json.dumps(body)
        return Response(content, status_code=status, media_type=content_type, headers=headers)

    async def create(self, request: Request) -> Response:
        self.requests.append({"headers": dict(request.headers), "body": await request.body(), "path": request.url.path})
        response = JSONResponse(
            {"enhancement": ENHANCEMENT, "remaining_paid_credits": 0, "request_id": "req_x"}, status_code=203
        )
        response.set_cookie("session", "tracking")  # a client that kept cookies would send it back
        return response

    async def presets(self, request: Request) -> Response:
        self.requests.append({"headers": dict(request.headers), "path": request.url.path})
        return JSONResponse({"presets": [{"id": "p", "name": "P"}], "request_id": "r"})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    app = Starlette(
        routes=[
            Route("/api/v1/product-image-enhancements/{id}", recorder.status),
            Route("/api/v1/product-image-enhancements", recorder.create, methods=["POST"]),
            Route("/api/v1/product-image-enhancement-presets", recorder.presets),
        ]
    )
    with serve_in_thread(app) as running:
        yield running.url, recorder


def status_of(base_url: str, enhancement_id: str, key: str = KEY) -> Any:
    async def go() -> Any:
        async with AigenClient(key, base_url) as client:
            return await client.get_enhancement(enhancement_id)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("answer", "error", "detail"),
    [
        ("not-json-200", ServiceUnavailable, {"reason": "non_json_body", "status": 200}),
        ("array", UnexpectedResponse, {}),
        ("no-enhancement", UnexpectedResponse, {}),
        ("enhancement-list", UnexpectedResponse, {}),
        ("wrong-types", UnexpectedResponse, {}),
        ("bad-items", UnexpectedResponse, {}),
        ("bad-date", UnexpectedResponse, {}),
        ("teapot", UnexpectedResponse, {"status": 418, "code": "teapot"}),
        ("redirect", UnexpectedResponse, {"status": 302}),
        ("502-html", ServiceUnavailable, {"reason": "non_json_body", "status": 502}),
        ("500-json", ServiceUnavailable, {"reason": "server_error", "code": "internal_error", "request_id": "req_srv"}),
        ("408", ServiceUnavailable, {"status": 408}),
        ("400-odd-envelope", InvalidPayload, {"status": 400, "code": None}),
        ("401", AuthenticationFailed, {"code": "invalid_api_key", "request_id": "r1"}),
        ("403", AuthenticationFailed, {"status": 403}),
        ("404", NotFound, {"message": "Enhancement not found."}),
        ("429-garbled", RateLimited, {"retry_after": None}),
    ],
)
def test_every_failure_maps_to_one_exception(
    server: tuple[str, Recorder], answer: str, error: type[AigenError], detail: dict[str, Any]
) -> None:
    with pytest.raises(error) as caught:
        status_of(server[0], answer)
    assert type(caught.value) is error
    for name, value in detail.items():
        assert getattr(caught.value, name) == value
    assert caught.value.retryable == (error in (ServiceUnavailable, RateLimited))
    assert KEY not in str(caught.value) + repr(caught.value)


def test_rate_limit_headers_are_read_leniently(server: tuple[str, Recorder]) -> None:
    with pytest.raises(RateLimited) as garbled:
        status_of(server[0], "429-garbled")
    assert garbled.value.rate_limit is not None
    assert (garbled.value.rate_limit.limit, garbled.value.rate_limit.remaining, garbled.value.rate_limit.reset) == (
        120,
        None,
        None,
    )
    with pytest.raises(RateLimited) as dated:
        status_of(server[0], "429-date")
    assert dated.value.retry_after is not None and 0 <= dated.value.retry_after <= 2  # an HTTP date of "now"
    assert dated.value.rate_limit is None


def test_nulls_and_unknown_fields_are_tolerated(server: tuple[str, Recorder]) -> None:
    enhancement = status_of(server[0], "nulls")
    assert enhancement.credits_used == 0 and enhancement.items[0].credits_used == 0
    assert not enhancement.is_terminal


def test_unreachable_service_is_service_unavailable() -> None:
    closed = bind_loopback()
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ServiceUnavailable) as caught:
        status_of(f"http://127.0.0.1:{port}", "x")
    assert caught.value.reason == "connection_error" and caught.value.status is None


def test_requests_carry_the_key_only_where_they_should(server: tuple[str, Recorder]) -> None:
    base_url, recorder = server

    async def go() -> None:
        async with AigenClient(KEY, base_url) as client:
            await client.list_presets()
            with pytest.raises(UnexpectedResponse):  # 203 is not a create status (200, 201, 202 are)
                await client.create_enhancement(
                    idempotency_key="batch-0001",
                    preset="single_product_white_background",
                    preservation_level="strict",
                    images=[SourceImage("8123456789", "https://cdn.example/a.jpg")],
                )
            with pytest.raises(UnexpectedResponse):  # same client after a Set-Cookie
                await client.create_enhancement(
                    idempotency_key="batch-0002",
                    preset="single_product_white_background",
                    preservation_level="strict",
                    images=[SourceImage("8123456789", "https://cdn.example/a.jpg")],
                    instructions="keep the label",
                    webhook_url="https://hooks.example/aigen",
                )

    recorder.requests.clear()
    asyncio.run(go())
    presets, first, second = recorder.requests
    assert "authorization" not in presets["headers"]  # public endpoint: the key stays home
    for sent in (first, second):
        assert sent["headers"]["authorization"] == f"Bearer {KEY}"
        assert sent["headers"]["content-type"] == "application/json"
        assert sent["headers"]["x-request-id"].startswith("req_")
        assert "cookie" not in sent["headers"]
        body = json.loads(sent["body"])
        assert "idempotency_key" not in json.dumps(body)
        assert body["images"] == [{"external_id": "8123456789", "source_url": "https://cdn.example/a.jpg"}]
    assert first["headers"]["idempotency-key"] == "batch-0001"
    assert set(json.loads(first["body"])) == {"preset", "preservation_level", "images"}
    assert json.loads(second["body"])["instructions"] == "keep the label"
    assert json.loads(second["body"])["webhook_url"] == "https://hooks.example/aigen"


def test_key_checks_and_reprs_never_show_the_key() -> None:
    with pytest.raises(ValueError) as caught:
        AigenClient("sk_live_not_an_aigen_key_123")
    assert "sk_live_not_an_aigen_key_123" not in str(caught.value)
    with pytest.raises(ValueError):
        AigenClient(KEY, "ftp://aigenstudio.app")

    async def go() -> None:
        async with AigenClient(KEY, "http://127.0.0.1:9") as test_client, AigenClient(LIVE) as live_client:
            assert test_client.is_sandbox and not live_client.is_sandbox
            for client in (test_client, live_client):
                assert KEY not in repr(client) and LIVE not in repr(client)
                assert KEY not in repr(vars(client).get("_http")) and LIVE not in str(vars(client).get("_http"))

    asyncio.run(go())
