"""AI Gen Studio: the real client against the sandbox over loopback HTTP (and raw HTTP where the client cannot go)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conftest import FakeClock
from retouch.plugin.providers.aigenstudio import (
    AigenClient,
    AuthenticationFailed,
    CreateResult,
    Enhancement,
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    SourceImage,
    webhooks,
)
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.serve import serve_in_thread

TEST_KEY = "aigen_test_retouch_tests"
OTHER_TEST_KEY = "aigen_test_someone_else"
LIVE_KEY = "aigen_live_retouch_tests"
CREATE = "/api/v1/product-image-enhancements"
PRESET = "single_product_white_background"
T0 = 1_800_000_000.0  # a multiple of 3600: windows start here


# --- servers -------------------------------------------------------------------------------------


def product_photo(size: tuple[int, int] = (160, 120)) -> Image.Image:
    width, height = size
    photo = Image.linear_gradient("L").resize(size).convert("RGB")
    photo = Image.blend(photo, Image.new("RGB", size, (210, 190, 160)), 0.7)  # uneven beige backdrop
    ImageDraw.Draw(photo).rectangle((width // 3, height // 4, width * 2 // 3, height * 3 // 4), fill=(30, 70, 160))
    return photo


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


JPEG = encoded(product_photo(), "JPEG")
PNG = encoded(product_photo(), "PNG")


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    """A tiny image host: good images, a 404, a wrong Content-Type, non-images, redirect chains, a huge file."""

    async def jpeg(request: Request) -> Response:
        return Response(JPEG, media_type="image/jpeg")

    async def png(request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async def wrong_type(request: Request) -> Response:
        return Response(PNG, media_type="image/jpeg")

    async def html_type(request: Request) -> Response:
        return Response(JPEG, media_type="text/html")

    async def not_an_image(request: Request) -> Response:
        return Response(b"GIF89a definitely not what it claims", media_type="image/jpeg")

    async def huge(request: Request) -> Response:
        return Response(JPEG + b"\0" * (10 * 1024 * 1024), media_type="image/jpeg")

    async def hop(request: Request) -> Response:
        left = int(request.path_params["left"])
        return RedirectResponse(f"/hop/{left - 1}") if left > 0 else Response(JPEG, media_type="image/jpeg")

    app = Starlette(
        routes=[
            Route("/p/{name}.jpg", jpeg),
            Route("/p/{name}.png", png),
            Route("/wrong-type.jpg", wrong_type),
            Route("/html-type.jpg", html_type),
            Route("/not-an-image.jpg", not_an_image),
            Route("/huge.jpg", huge),
            Route("/hop/{left}", hop),
        ]
    )
    with serve_in_thread(app) as server:
        yield server.url


class Receiver:
    """A webhook endpoint that keeps every delivery, and fails the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            status = 500 if len(self.deliveries) < self.fail_first else 204
            self.deliveries.append((dict(request.headers), raw, status))
        return Response(status_code=status)


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., AigenSandbox]]:
    started: list[AigenSandbox] = []

    def make(**options: Any) -> AigenSandbox:
        options.setdefault("seconds_per_item", 0.05)
        sandbox = AigenSandbox(**options)
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., AigenSandbox]) -> AigenSandbox:
    return make_sandbox()


@pytest.fixture(scope="module")
def shared() -> Iterator[AigenSandbox]:
    """One sandbox for the tests that only need the default limits; each test uses its own key."""
    with AigenSandbox(seconds_per_item=0.05) as sandbox:
        sandbox.start()
        yield sandbox


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A sandbox key of this test's own (its own account, quotas and stats)."""
    return "aigen_test_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]


# --- helpers -------------------------------------------------------------------------------------


def run(key: str, sandbox: AigenSandbox, method: str, timeout: float = 10.0, **kwargs: Any) -> Any:
    async def go() -> Any:
        async with AigenClient(key, sandbox.base_url, timeout=timeout) as client:
            return await getattr(client, method)(**kwargs)

    return asyncio.run(go())


def create(
    sandbox: AigenSandbox, idempotency_key: str, urls: list[str], key: str = TEST_KEY, **kwargs: Any
) -> CreateResult:
    images = [SourceImage(external_id=str(8123456700 + i), source_url=url) for i, url in enumerate(urls)]
    return run(
        key,
        sandbox,
        "create_enhancement",
        idempotency_key=idempotency_key,
        preset=PRESET,
        preservation_level="strict",
        images=images,
        **kwargs,
    )


def wait_until_terminal(sandbox: AigenSandbox, enhancement_id: str, key: str = TEST_KEY) -> Enhancement:
    async def go() -> Enhancement:
        async with AigenClient(key, sandbox.base_url) as client:
            deadline = time.monotonic() + 15
            while True:
                enhancement = await client.get_enhancement(enhancement_id)
                if enhancement.is_terminal:
                    return enhancement
                assert time.monotonic() < deadline, f"enhancement stuck in {enhancement.status}"
                await asyncio.sleep(0.05)

    return asyncio.run(go())


def wait_for(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def raw_create(
    sandbox: AigenSandbox,
    body: Any,
    *,
    key: str | None = TEST_KEY,
    idempotency_key: str | None = "raw-key-0001",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    all_headers = {"Content-Type": "application/json"}
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    if idempotency_key is not None:
        all_headers["Idempotency-Key"] = idempotency_key
    all_headers.update(headers or {})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(sandbox.base_url + CREATE, content=content, headers=all_headers, **kwargs)


def key_stats(sandbox: AigenSandbox, key: str = TEST_KEY) -> dict[str, Any]:
    return sandbox.stats()["keys"][key]


def valid_body(images_url: str, count: int = 1) -> dict[str, Any]:
    return {
        "preset": PRESET,
        "preservation_level": "strict",
        "images": [{"external_id": f"p{i}", "source_url": f"{images_url}/p/{i}.jpg"} for i in range(count)],
    }


# --- presets and auth ----------------------------------------------------------------------------


def test_presets_are_public_and_request_ids_are_echoed(shared: AigenSandbox) -> None:
    sandbox = shared
    response = httpx.get(
        sandbox.base_url + "/api/v1/product-image-enhancement-presets", headers={"X-Request-Id": "corr-42"}
    )
    assert response.status_code == 200
    body = response.json()
    assert [preset["id"] for preset in body["presets"]] == [
        "single_product_white_background",
        "marketplace_clean_catalog",
        "clean_catalog_group",
    ]
    assert body["presets"][0]["description"].startswith("Best for one clear product")
    assert response.headers["X-Request-Id"] == body["request_id"] == "corr-42"

    generated = httpx.get(sandbox.base_url + "/api/v1/product-image-enhancement-presets")
    assert generated.headers["X-Request-Id"].startswith("req_")
    assert generated.json()["request_id"] == generated.headers["X-Request-Id"]

    presets = run(TEST_KEY, sandbox, "list_presets")
    assert [preset.id for preset in presets][0] == PRESET


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        pytest.param({}, {}, id="no key"),
        pytest.param({}, {"api_key": TEST_KEY}, id="key in query string"),
        pytest.param({"Authorization": f"Bearer {TEST_KEY}"}, {"api_key": TEST_KEY}, id="bearer plus query key"),
        pytest.param({"x-api-key": TEST_KEY}, {}, id="x-api-key header"),
        pytest.param({"X-Aigen-Key": TEST_KEY}, {}, id="other custom header"),
        pytest.param({"Cookie": f"session={TEST_KEY}"}, {}, id="cookie"),
        pytest.param({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}, {}, id="user JWT"),
        pytest.param({"Authorization": f"Basic {TEST_KEY}"}, {}, id="basic scheme"),
        pytest.param({"Authorization": "Bearer aigen_test_short"}, {}, id="malformed test key"),
        pytest.param({"Authorization": f"Bearer {LIVE_KEY}"}, {}, id="unregistered live key"),
    ],
)
def test_only_a_bearer_key_is_accepted(shared: AigenSandbox, headers: dict[str, str], params: dict[str, str]) -> None:
    sandbox = shared
    response = httpx.get(sandbox.base_url + CREATE + "/some-id", headers=headers, params=params)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["request_id"] == response.headers["X-Request-Id"]
    # The same key, sent properly, passes auth (and finds nothing).
    proper = httpx.get(sandbox.base_url + CREATE + "/some-id", headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert proper.status_code == 404


def test_client_maps_401_and_live_keys_need_registration(sandbox: AigenSandbox, images: str) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        run(LIVE_KEY, sandbox, "get_enhancement", enhancement_id="x")
    assert caught.value.status == 401 and LIVE_KEY not in repr(caught.value) + str(caught.value)
    sandbox.add_live_key(LIVE_KEY, purchased=500, available=100)
    with pytest.raises(NotFound):
        run(LIVE_KEY, sandbox, "get_enhancement", enhancement_id="x")


# --- payload validation --------------------------------------------------------------------------


def _with(images_url: str, **changes: Any) -> dict[str, Any]:
    body = valid_body(images_url)
    body.update(changes)
    return body


INVALID_BODIES: list[tuple[str, Callable[[str], Any]]] = [
    ("unknown preset", lambda u: _with(u, preset="vintage")),
    # (a missing preset is valid: the API reference makes it optional)
    ("bad preservation level", lambda u: _with(u, preservation_level="loose")),
    ("no images", lambda u: _with(u, images=[])),
    ("21 images", lambda u: valid_body(u, 21)),
    ("empty instructions", lambda u: _with(u, instructions="")),
    ("instructions too long", lambda u: _with(u, instructions="x" * 4001)),
    ("webhook not https", lambda u: _with(u, webhook_url="http://example.com/hook")),
    ("webhook too long", lambda u: _with(u, webhook_url="https://example.com/" + "a" * 2030)),
    ("source not http", lambda u: _with(u, images=[{"external_id": "1", "source_url": "ftp://example.com/a.jpg"}])),
    ("source missing", lambda u: _with(u, images=[{"external_id": "1"}])),
    (
        "external id not a string",
        lambda u: _with(u, images=[{"external_id": 8123456789, "source_url": f"{u}/p/1.jpg"}]),
    ),
    ("unknown image field", lambda u: _with(u, images=[{"source_url": f"{u}/p/1.jpg", "position": 1}])),
    ("idempotency key in body", lambda u: _with(u, idempotency_key="raw-key-0001")),
    ("unknown field", lambda u: _with(u, priority="high")),
    ("json array", lambda u: [valid_body(u)]),
    ("not json", lambda u: b"{preset: nope"),
]


@pytest.mark.parametrize(("name", "make_body"), INVALID_BODIES, ids=[name for name, _ in INVALID_BODIES])
def test_invalid_payloads_are_400_and_reserve_nothing(
    shared: AigenSandbox, key: str, images: str, name: str, make_body: Callable[[str], Any]
) -> None:
    response = raw_create(shared, make_body(images), key=key)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"
    assert key_stats(shared, key)["creations"] == 0


@pytest.mark.parametrize(
    ("idempotency_key", "headers"),
    [
        pytest.param(None, {}, id="missing Idempotency-Key"),
        pytest.param("short12", {}, id="7 characters"),
        pytest.param("x" * 161, {}, id="161 characters"),
        pytest.param("has space 1", {}, id="bad character"),
        pytest.param("raw-key-0001", {"Content-Type": "text/plain"}, id="not application/json"),
    ],
)
def test_bad_idempotency_keys_and_content_types_are_400(
    shared: AigenSandbox, key: str, images: str, idempotency_key: str | None, headers: dict[str, str]
) -> None:
    response = raw_create(shared, valid_body(images), key=key, idempotency_key=idempotency_key, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"
    assert key_stats(shared, key)["creations"] == 0


def test_boundary_values_are_accepted(make_sandbox: Callable[..., AigenSandbox], images: str) -> None:
    sandbox = make_sandbox(active_jobs_per_key=5, active_jobs_per_account=5, images_per_window=100)
    accepted = [
        raw_create(sandbox, valid_body(images, 20), idempotency_key="a.b_c:d-"),
        raw_create(
            sandbox, _with(images, instructions="x" * 4000, preservation_level="creative"), idempotency_key="k" * 160
        ),
        raw_create(
            sandbox,
            _with(
                images, webhook_url="https://example.com/" + "a" * 2028, images=[{"source_url": f"{images}/p/1.png"}]
            ),
            idempotency_key="no-external-id",
        ),
    ]
    assert [response.status_code for response in accepted] == [201, 201, 201]
    assert key_stats(sandbox)["creations"] == 3


# --- idempotency ---------------------------------------------------------------------------------


def test_same_key_same_body_replays_without_a_second_charge(sandbox: AigenSandbox, images: str) -> None:
    urls = [f"{images}/p/a.jpg", f"{images}/p/b.jpg"]
    first = create(sandbox, "batch-2025-0001", urls)
    assert not first.replayed
    assert first.enhancement.status == "queued" and first.enhancement.total_items == 2 and first.enhancement.sandbox
    assert first.remaining_paid_credits == 0 and first.enhancement.credits_reserved == 0
    again = create(sandbox, "batch-2025-0001", urls)
    assert again.replayed and again.enhancement.id == first.enhancement.id

    # Same JSON with another key order and spacing is the same body.
    body = valid_body(images)
    body["images"] = [{"source_url": url, "external_id": str(8123456700 + i)} for i, url in enumerate(urls)]
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    response = raw_create(sandbox, reordered, idempotency_key="batch-2025-0001")
    assert response.status_code == 200 and response.json()["enhancement"]["id"] == first.enhancement.id

    stats = key_stats(sandbox)
    assert (stats["creations"], stats["replays"]) == (1, 2)
    assert stats["images_charged"] == 2 and stats["charged_per_idempotency_key"] == {"batch-2025-0001": 2}
    assert stats["images_by_external_id"] == {"8123456700": 1, "8123456701": 1}


def test_same_key_other_body_is_409_and_scope_is_per_account(sandbox: AigenSandbox, images: str) -> None:
    first = create(sandbox, "batch-2025-0002", [f"{images}/p/a.jpg"])
    with pytest.raises(IdempotencyConflict) as caught:
        create(sandbox, "batch-2025-0002", [f"{images}/p/other.jpg"])
    assert caught.value.status == 409 and caught.value.code == "idempotency_conflict"
    assert key_stats(sandbox)["conflicts"] == 1
    # Another account may use the same key for its own job.
    theirs = create(sandbox, "batch-2025-0002", [f"{images}/p/other.jpg"], key=OTHER_TEST_KEY)
    assert not theirs.replayed and theirs.enhancement.id != first.enhancement.id
    # ...and cannot see ours.
    with pytest.raises(NotFound):
        run(OTHER_TEST_KEY, sandbox, "get_enhancement", enhancement_id=first.enhancement.id)


# --- quotas --------------------------------------------------------------------------------------


def test_sixth_job_in_a_window_is_429_until_the_window_resets(
    make_sandbox: Callable[..., AigenSandbox], images: str
) -> None:
    clock = FakeClock(T0 + 100)
    sandbox = make_sandbox(clock=clock, active_jobs_per_key=10, active_jobs_per_account=10)
    for i in range(5):
        result = create(sandbox, f"job-window-{i}", [f"{images}/p/{i}.jpg"])
        assert result.rate_limit is not None and result.rate_limit.remaining == 4 - i
    with pytest.raises(RateLimited) as caught:
        create(sandbox, "job-window-5", [f"{images}/p/5.jpg"])
    error = caught.value
    assert error.status == 429 and error.code == "rate_limited"
    assert error.retry_after == 3500  # seconds until T0 + 3600
    assert error.rate_limit is not None
    assert (error.rate_limit.limit, error.rate_limit.remaining, error.rate_limit.reset) == (5, 0, T0 + 3600)

    raw = raw_create(sandbox, valid_body(images), idempotency_key="job-window-raw")
    assert raw.status_code == 429
    assert raw.headers["Retry-After"] == "3500"
    assert raw.headers["X-RateLimit-Limit"] == "5" and raw.headers["X-RateLimit-Remaining"] == "0"
    assert raw.headers["X-RateLimit-Reset"] == str(int(T0 + 3600))
    assert key_stats(sandbox)["rate_limited"] == 2

    clock.now = T0 + 3600  # the next window
    assert not create(sandbox, "job-window-5", [f"{images}/p/5.jpg"]).replayed
    assert key_stats(sandbox)["creations"] == 6


def test_the_26th_image_in_a_window_is_429(make_sandbox: Callable[..., AigenSandbox], images: str) -> None:
    sandbox = make_sandbox(clock=FakeClock(T0), active_jobs_per_key=10, active_jobs_per_account=10)
    create(sandbox, "images-0001", [f"{images}/p/{i}.jpg" for i in range(20)])
    with pytest.raises(RateLimited) as caught:
        create(sandbox, "images-0002", [f"{images}/p/{i}.jpg" for i in range(6)])
    assert caught.value.rate_limit is not None
    assert (caught.value.rate_limit.limit, caught.value.rate_limit.remaining) == (25, 5)
    create(sandbox, "images-0003", [f"{images}/p/{i}.jpg" for i in range(5)])  # exactly 25
    assert key_stats(sandbox)["charged_per_idempotency_key"] == {"images-0001": 20, "images-0003": 5}


def test_status_polls_are_limited_per_window(make_sandbox: Callable[..., AigenSandbox], images: str) -> None:
    sandbox = make_sandbox(clock=FakeClock(T0), polls_per_window=3)
    job = create(sandbox, "polls-0001", [f"{images}/p/a.jpg"]).enhancement
    for _ in range(3):
        run(TEST_KEY, sandbox, "get_enhancement", enhancement_id=job.id)
    with pytest.raises(RateLimited) as caught:
        run(TEST_KEY, sandbox, "get_enhancement", enhancement_id=job.id)
    assert caught.value.retry_after == 3600
    assert caught.value.rate_limit is not None and caught.value.rate_limit.limit == 3
    assert key_stats(sandbox)["polls"] == 3


def test_one_active_job_per_key(make_sandbox: Callable[..., AigenSandbox], images: str) -> None:
    # Job 1 runs 4 s: long enough that a stalled CI machine cannot let it finish before the second
    # create (the test waits for it below: 3.2 s more than before).
    sandbox = make_sandbox(seconds_per_item=2.0)
    first = create(sandbox, "active-0001", [f"{images}/p/a.jpg", f"{images}/p/b.jpg"])
    with pytest.raises(RateLimited) as caught:
        create(sandbox, "active-0002", [f"{images}/p/c.jpg"])
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert caught.value.rate_limit is not None and caught.value.rate_limit.limit == 1
    # A replay of the active job is not a new job: no 429.
    assert create(sandbox, "active-0001", [f"{images}/p/a.jpg", f"{images}/p/b.jpg"]).replayed
    assert wait_until_terminal(sandbox, first.enhancement.id).status == "completed"
    assert not create(sandbox, "active-0002", [f"{images}/p/c.jpg"]).replayed


def test_two_active_jobs_per_account(make_sandbox: Callable[..., AigenSandbox], images: str) -> None:
    # Jobs of 10 s: both still active at the third create even on a stalled CI machine (nothing
    # waits for them; the sandbox stops them at teardown).
    sandbox = make_sandbox(seconds_per_item=5.0)
    keys = [f"aigen_live_acme_key_{i}" for i in range(3)]
    for key in keys:
        sandbox.add_live_key(key, purchased=1000, available=1000, account="acme")
    create(sandbox, "acct-0001", [f"{images}/p/a.jpg", f"{images}/p/b.jpg"], key=keys[0])
    create(sandbox, "acct-0002", [f"{images}/p/a.jpg", f"{images}/p/b.jpg"], key=keys[1])
    with pytest.raises(RateLimited) as caught:
        create(sandbox, "acct-0003", [f"{images}/p/a.jpg"], key=keys[2])
    assert "account" in caught.value.message
    # Credits belong to the account: three keys, one balance.
    assert sandbox.stats()["keys"][keys[2]]["credits"]["reserved"] == 20


# --- processing, items, credits ------------------------------------------------------------------


def test_items_keep_order_and_bad_sources_fail_only_their_item(sandbox: AigenSandbox, images: str) -> None:
    sources = {
        "good-jpeg": (f"{images}/p/1.jpg", None),
        "missing": (f"{images}/p/missing.gif", "source_download_failed"),
        "png-served-as-jpeg": (f"{images}/wrong-type.jpg", "source_content_type_mismatch"),
        "jpeg-served-as-html": (f"{images}/html-type.jpg", "source_content_type_mismatch"),
        "not-an-image": (f"{images}/not-an-image.jpg", "unsupported_source_type"),
        "three-redirects": (f"{images}/hop/3", None),
        "four-redirects": (f"{images}/hop/4", "source_download_failed"),
        "too-large": (f"{images}/huge.jpg", "source_too_large"),
        "good-png": (f"{images}/p/2.png", None),
        "unreachable": ("http://127.0.0.1:9/nothing.jpg", "source_download_failed"),
    }
    images_in = [SourceImage(external_id=name, source_url=url) for name, (url, _) in sources.items()]
    created = run(
        TEST_KEY,
        sandbox,
        "create_enhancement",
        idempotency_key="sources-0001",
        preset=PRESET,
        preservation_level="balanced",
        images=images_in,
    )
    done = wait_until_terminal(sandbox, created.enhancement.id)
    assert done.status == "partially_completed"
    assert [item.external_id for item in done.items] == list(sources)
    assert [item.error_code for item in done.items] == [code for _, code in sources.values()]
    assert (done.completed_items, done.failed_items, done.total_items) == (3, 7, 10)
    assert done.created_at is not None and done.completed_at is not None and done.completed_at >= done.created_at
    for item in done.items:
        if item.status == "completed":
            result = httpx.get(item.result_url)
            assert result.headers["content-type"] == "image/png"
            enhanced = Image.open(io.BytesIO(result.content))
            assert enhanced.format == "PNG" and enhanced.width == enhanced.height
            assert enhanced.getpixel((0, 0))[:3] == (255, 255, 255)
            assert result.content != JPEG
            thumb = Image.open(io.BytesIO(httpx.get(item.thumbnail_url).content))
            assert max(thumb.size) <= 256
        else:
            assert item.result_url is None and item.error_message


def test_all_sources_bad_is_failed(sandbox: AigenSandbox, images: str) -> None:
    created = create(sandbox, "all-bad-0001", [f"{images}/p/missing.gif", f"{images}/not-an-image.jpg"])
    assert wait_until_terminal(sandbox, created.enhancement.id).status == "failed"


def test_live_key_needs_credits_then_reserves_consumes_and_releases(sandbox: AigenSandbox, images: str) -> None:
    sandbox.add_live_key(LIVE_KEY, purchased=150, available=1000)
    urls = [f"{images}/p/a.jpg", f"{images}/p/missing.gif"]
    with pytest.raises(InsufficientCredits) as caught:  # lifetime purchases below 200
        create(sandbox, "live-0001", urls, key=LIVE_KEY)
    assert caught.value.status == 402 and caught.value.code == "insufficient_api_credits"

    httpx.post(
        sandbox.base_url + "/_sandbox/live_keys", json={"key": LIVE_KEY, "purchased": 500, "available": 9}
    ).raise_for_status()
    with pytest.raises(InsufficientCredits):  # 2 images cost 10
        create(sandbox, "live-0001", urls, key=LIVE_KEY)
    assert key_stats(sandbox, LIVE_KEY)["insufficient_credits"] == 2

    httpx.post(
        sandbox.base_url + "/_sandbox/live_keys", json={"key": LIVE_KEY, "purchased": 500, "available": 100}
    ).raise_for_status()
    created = create(sandbox, "live-0001", urls, key=LIVE_KEY)  # the same key works once credits exist
    assert not created.replayed and not created.enhancement.sandbox
    assert created.enhancement.credits_reserved == 10 and created.remaining_paid_credits == 90
    assert key_stats(sandbox, LIVE_KEY)["credits"] == {"purchased": 500, "available": 90, "reserved": 10, "used": 0}

    done = wait_until_terminal(sandbox, created.enhancement.id, key=LIVE_KEY)
    assert done.status == "partially_completed"
    assert [(item.credits_reserved, item.credits_used) for item in done.items] == [(5, 5), (5, 0)]
    assert (done.credits_reserved, done.credits_used) == (10, 5)
    assert key_stats(sandbox, LIVE_KEY)["credits"] == {"purchased": 500, "available": 95, "reserved": 0, "used": 5}


# --- webhooks ------------------------------------------------------------------------------------


def test_webhooks_are_signed_as_documented_and_retried(sandbox: AigenSandbox, images: str) -> None:
    receiver = Receiver(fail_first=1)
    with serve_in_thread(Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])) as server:
        created = create(
            sandbox, "hooks-0001", [f"{images}/p/a.jpg", f"{images}/p/missing.gif"], webhook_url=f"{server.url}/hook"
        )

        def delivered_types() -> set[str]:
            with receiver.lock:
                return {json.loads(raw)["type"] for _, raw, status in receiver.deliveries if status == 204}

        wait_for(lambda: len(delivered_types()) == 3, "three delivered event types")
        assert key_stats(sandbox)["polls"] == 0  # the job advanced with nobody asking

    signing_key = hashlib.sha256(TEST_KEY.encode()).hexdigest()  # the documented recipe, written out
    seen: dict[str, list[int]] = {}
    for headers, raw, status in receiver.deliveries:
        timestamp, event_id = headers["x-aigen-timestamp"], headers["x-aigen-event-id"]
        expected = hmac.new(signing_key.encode(), f"{timestamp}.{event_id}.".encode() + raw, hashlib.sha256).hexdigest()
        assert headers["x-aigen-signature"] == f"v1={expected}"
        assert abs(int(timestamp) - time.time()) < 60
        assert webhooks.verify(TEST_KEY, headers, raw, now=time.time())
        assert not webhooks.verify(TEST_KEY, headers, raw + b" ", now=time.time())
        assert not webhooks.verify(OTHER_TEST_KEY, headers, raw, now=time.time())
        assert not webhooks.verify(TEST_KEY, headers, raw, now=time.time() + 3600)
        assert not webhooks.verify(TEST_KEY, {**headers, "x-aigen-event-id": "evt_other"}, raw, now=time.time())
        body = json.loads(raw)
        assert body["enhancement_id"] == created.enhancement.id
        seen.setdefault(event_id, []).append(status)
    first_event = receiver.deliveries[0][0]["x-aigen-event-id"]
    assert seen[first_event][0] == 500 and 204 in seen[first_event]  # the failed delivery was retried
    by_type = {json.loads(raw)["type"]: json.loads(raw) for _, raw, status in receiver.deliveries if status == 204}
    assert by_type["enhancement.item.completed"]["item"]["external_id"] == "8123456700"
    assert by_type["enhancement.item.failed"]["item"]["error_code"] == "source_download_failed"
    assert by_type["enhancement.completed"]["status"] == "partially_completed"


# --- faults --------------------------------------------------------------------------------------


def test_dropped_response_then_replay_gives_the_same_job_and_one_charge(sandbox: AigenSandbox, images: str) -> None:
    httpx.post(
        sandbox.base_url + "/_sandbox/faults", json={"endpoint": "create", "mode": "drop_response", "count": 1}
    ).raise_for_status()
    urls = [f"{images}/p/a.jpg", f"{images}/p/b.jpg"]
    with pytest.raises(ServiceUnavailable) as caught:
        create(sandbox, "crash-0001", urls)
    assert caught.value.status == 500 and caught.value.retryable
    replay = create(sandbox, "crash-0001", urls)
    assert replay.replayed
    stats = key_stats(sandbox)
    assert (stats["creations"], stats["replays"]) == (1, 1)
    assert stats["images_charged"] == 2 and stats["charged_per_idempotency_key"] == {"crash-0001": 2}
    assert wait_until_terminal(sandbox, replay.enhancement.id).status == "completed"


def test_hang_beyond_the_client_timeout_is_service_unavailable(sandbox: AigenSandbox, images: str) -> None:
    # The hang outlasts the 0.2 s timeout by more than a stalled CI machine can lose (waited for
    # below: 3.2 s more than before).
    sandbox.add_fault("create", mode="hang", seconds=4.0)
    urls = [f"{images}/p/a.jpg"]
    with pytest.raises(ServiceUnavailable) as caught:
        create(sandbox, "hang-0001", urls, timeout=0.2)
    assert caught.value.reason == "timeout" and caught.value.status is None
    # The slow request still went through on the server; retrying with the same key never makes a second job.
    retried = create(sandbox, "hang-0001", urls)
    wait_for(
        lambda: key_stats(sandbox)["creations"] + key_stats(sandbox)["replays"] == 2,
        "the hung request to finish",
        limit=20.0,
    )
    assert key_stats(sandbox)["creations"] == 1
    assert retried.enhancement.total_items == 1


def test_5xx_and_html_faults_on_status_are_retryable(sandbox: AigenSandbox, images: str) -> None:
    job = create(sandbox, "faults-0001", [f"{images}/p/a.jpg"]).enhancement
    sandbox.add_fault("status", status=503, count=2)
    sandbox.add_fault("status", mode="html")
    for reason in ("server_error", "server_error", "non_json_body"):
        with pytest.raises(ServiceUnavailable) as caught:
            run(TEST_KEY, sandbox, "get_enhancement", enhancement_id=job.id)
        assert caught.value.reason == reason
    assert run(TEST_KEY, sandbox, "get_enhancement", enhancement_id=job.id).id == job.id
    assert sandbox.stats()["faults_pending"] == 0


def test_fault_api_rejects_nonsense(sandbox: AigenSandbox) -> None:
    for body in (
        {"endpoint": "delete"},
        {"endpoint": "status", "mode": "drop_response"},
        {"endpoint": "create", "status": 404},
        {"endpoint": "create", "mode": "hang"},
    ):
        assert httpx.post(sandbox.base_url + "/_sandbox/faults", json=body).status_code == 400
    assert httpx.get(sandbox.base_url + "/_sandbox/stats").json()["faults_pending"] == 0
