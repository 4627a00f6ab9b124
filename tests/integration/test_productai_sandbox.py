"""ProductAI sandbox: real HTTP over loopback with httpx, no mocks (CONTRACTS.md §3)."""

from __future__ import annotations

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
from starlette.responses import Response
from starlette.routing import Route

from conftest import FakeClock
from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.plugin.providers.productai.sandbox.processing import JobDurations
from retouch.plugin.serve import serve_in_thread

KEY = "pai_retouch_tests_key"
OTHER_KEY = "pai_someone_else_key"
GENERATE = "/api/generate"
UPSCALE = "/api/upscale"
HOOK_TOKEN = "s3cr3t-path-token-91f2"


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
WEBP = encoded(product_photo((90, 90)), "WEBP")


# --- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    """A tiny image host: good JPEG/WebP, a non-image, a file of 10 MB, a 404 for anything else."""

    async def jpeg(request: Request) -> Response:
        return Response(JPEG, media_type="image/jpeg")

    async def webp(request: Request) -> Response:
        return Response(WEBP, media_type="image/webp")

    async def not_an_image(request: Request) -> Response:
        return Response(b"GIF89a definitely not what it claims", media_type="image/jpeg")

    async def huge(request: Request) -> Response:
        return Response(JPEG + b"\0" * (10 * 1024 * 1024), media_type="image/jpeg")

    app = Starlette(
        routes=[
            Route("/p/{name}.jpg", jpeg),
            Route("/p/{name}.webp", webp),
            Route("/not-an-image.jpg", not_an_image),
            Route("/huge.jpg", huge),
        ]
    )
    with serve_in_thread(app) as server:
        yield server.url


class Receiver:
    """A webhook endpoint behind a secret path token; answers `first_status` once, then 200."""

    def __init__(self, first_status: int = 200) -> None:
        self.first_status = first_status
        self.deliveries: list[tuple[str, dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            status = self.first_status if not self.deliveries else 200
            self.deliveries.append((request.path_params["token"], dict(request.headers), raw, status))
        return Response(status_code=status)

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(raw) for _, _, raw, status in self.deliveries if status == 200]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """(the receiver, its full URL with the secret token)."""
    hooks = Receiver()
    with serve_in_thread(Starlette(routes=[Route("/hooks/{token}", hooks.hook, methods=["POST"])])) as server:
        yield hooks, f"{server.url}/hooks/{HOOK_TOKEN}"


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., ProductAISandbox]]:
    """Sandboxes with quick jobs; the budget is lifted unless a test asks for it (polling uses it up)."""
    started: list[ProductAISandbox] = []

    def make(**options: Any) -> ProductAISandbox:
        options.setdefault("keys", {KEY: 1000})
        options.setdefault("job_seconds", 0.05)
        options.setdefault("requests_per_window", 10_000)
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


# --- helpers -------------------------------------------------------------------------------------


def post(sandbox: ProductAISandbox, path: str, body: Any, key: str | None = KEY, **kwargs: Any) -> httpx.Response:
    headers = {} if key is None else {"x-api-key": key}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers["Content-Type"] = "application/json"
    return httpx.post(sandbox.base_url + path, content=content, headers=headers, **kwargs)


def get_job(sandbox: ProductAISandbox, job_id: Any, key: str | None = KEY, **kwargs: Any) -> httpx.Response:
    headers = {} if key is None else {"x-api-key": key}
    return httpx.get(f"{sandbox.base_url}/api/job/{job_id}", headers=headers, **kwargs)


def generate(
    sandbox: ProductAISandbox,
    image_url: str | list[str],
    model: str = "kontext-pro",
    prompt: str = "clean product shot on white",
    key: str = KEY,
) -> int:
    response = post(sandbox, GENERATE, {"model": model, "image_url": image_url, "prompt": prompt}, key=key)
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def wait_terminal(sandbox: ProductAISandbox, job_id: int, key: str = KEY) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = get_job(sandbox, job_id, key)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "OK"
        if body["data"]["status"] in ("COMPLETED", "ERROR"):
            return body["data"]
        assert body["data"]["status"] in ("NOT_STARTED", "RUNNING")
        assert time.monotonic() < deadline, f"job stuck in {body['data']['status']}"
        time.sleep(0.02)


def wait_for(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def key_stats(sandbox: ProductAISandbox, key: str = KEY) -> dict[str, Any]:
    return sandbox.stats()["keys"][key]


def is_api_error(response: httpx.Response, status: int, message: str) -> bool:
    body = response.json()
    return response.status_code == status and body["name"] == "ApiError" and body["message"] == message


# --- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        pytest.param({}, {}, id="no key"),
        pytest.param({"x-api-key": "pai_unknown_key"}, {}, id="unknown key"),
        pytest.param({"Authorization": f"Bearer {KEY}"}, {}, id="bearer (the other API)"),
        pytest.param({}, {"api_key": KEY}, id="key in query string"),
        pytest.param({"x-api-key": ""}, {}, id="empty key"),
    ],
)
@pytest.mark.parametrize("endpoint", ["generate", "upscale", "job"])
def test_only_a_known_x_api_key_is_accepted(
    sandbox: ProductAISandbox, images: str, headers: dict[str, str], params: dict[str, str], endpoint: str
) -> None:
    body = {"model": "gpt-low", "image_url": f"{images}/p/a.jpg", "prompt": "x"}

    def call(with_headers: dict[str, str]) -> httpx.Response:
        if endpoint == "job":
            return httpx.get(sandbox.base_url + "/api/job/22292", headers=with_headers, params=params)
        path = GENERATE if endpoint == "generate" else UPSCALE
        return httpx.post(sandbox.base_url + path, json=body, headers=with_headers, params=params)

    refused = call(headers)
    assert is_api_error(refused, 401, "UNAUTHORIZED"), refused.text
    assert key_stats(sandbox)["jobs_started"] == {"generate": 0, "upscale": 0}
    assert key_stats(sandbox)["tokens"] == 1000
    # The same request with the key where it belongs passes auth.
    accepted = call({"x-api-key": KEY})
    assert accepted.status_code in (200, 404) and accepted.status_code != 401


def test_keys_can_be_added_over_http_and_jobs_are_private(sandbox: ProductAISandbox, images: str) -> None:
    assert get_job(sandbox, 22292, OTHER_KEY).status_code == 401
    httpx.post(sandbox.server_url + "/_sandbox/tokens", json={"key": OTHER_KEY, "tokens": 50}).raise_for_status()
    job_id = generate(sandbox, f"{images}/p/a.jpg")
    assert is_api_error(get_job(sandbox, job_id, OTHER_KEY), 404, "NOT_FOUND")
    assert is_api_error(get_job(sandbox, 99_999_999), 404, "NOT_FOUND")
    assert is_api_error(get_job(sandbox, "abc"), 400, "BAD_REQUEST")
    assert key_stats(sandbox, OTHER_KEY)["tokens"] == 50


# --- generate, poll, result ----------------------------------------------------------------------


def test_generate_runs_then_completes_with_a_real_image(sandbox: ProductAISandbox, images: str) -> None:
    response = post(sandbox, GENERATE, {"model": "kontext-pro", "image_url": f"{images}/p/a.jpg", "prompt": "on white"})
    assert response.status_code == 200
    body = response.json()
    job_id = body["data"]["id"]
    assert body == {"status": "OK", "data": {"id": job_id, "status": "RUNNING", "prompt": "on white"}}
    assert isinstance(job_id, int)

    done = wait_terminal(sandbox, job_id)
    assert done == {"id": job_id, "status": "COMPLETED", "prompt": "on white", "image_url": done["image_url"]}
    result = httpx.get(done["image_url"])  # public, like a CDN link
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(result.content))
    assert image.format == "PNG" and image.width == image.height  # a square catalogue shot
    assert image.getpixel((0, 0))[:3] == (255, 255, 255)  # on white, unlike the beige source
    assert result.content != JPEG
    assert Image.open(io.BytesIO(JPEG)).getpixel((0, 0)) != (255, 255, 255)

    stats = key_stats(sandbox)
    assert stats["jobs_started"] == {"generate": 1, "upscale": 0}
    assert stats["tokens_by_job"] == {str(job_id): 3} and stats["tokens"] == 997
    assert stats["tokens_by_image_url"] == {f"{images}/p/a.jpg": 3}
    assert stats["jobs_by_image_url"] == {f"{images}/p/a.jpg": 1}


def test_two_reference_images_for_multi_reference_models(sandbox: ProductAISandbox, images: str) -> None:
    job_id = generate(sandbox, [f"{images}/p/a.jpg", f"{images}/p/b.webp"], model="nanobananapro")
    assert wait_terminal(sandbox, job_id)["status"] == "COMPLETED"
    assert key_stats(sandbox)["tokens_by_job"] == {str(job_id): 8}
    # A broken second reference fails the job: both are fetched and checked.
    broken = generate(sandbox, [f"{images}/p/a.jpg", f"{images}/not-an-image.jpg"], model="seedream")
    assert wait_terminal(sandbox, broken)["status"] == "ERROR"


def test_statuses_before_completion(make_sandbox: Callable[..., ProductAISandbox], images: str) -> None:
    queued = make_sandbox(job_seconds=60, not_started_seconds=30)
    job_id = generate(queued, f"{images}/p/a.jpg")
    assert get_job(queued, job_id).json()["data"] == {
        "id": job_id,
        "status": "NOT_STARTED",
        "prompt": "clean product shot on white",
    }
    running = make_sandbox(job_seconds=60)
    job_id = generate(running, f"{images}/p/a.jpg")
    assert get_job(running, job_id).json()["data"] == {
        "id": job_id,
        "status": "RUNNING",
        "prompt": "clean product shot on white",
    }
    # Tokens are gone already: deducted when the job starts, not when it completes.
    assert key_stats(running)["tokens"] == 997 and key_stats(running)["tokens_spent"] == 3


def test_upscale_of_a_generated_image_is_larger(sandbox: ProductAISandbox, images: str) -> None:
    generated = wait_terminal(sandbox, generate(sandbox, f"{images}/p/a.jpg", model="gpt-low"))
    response = post(sandbox, UPSCALE, {"image_url": generated["image_url"]})
    assert response.status_code == 200
    job_id = response.json()["data"]["id"]
    assert response.json() == {"status": "OK", "data": {"id": job_id, "status": "RUNNING"}}  # no prompt
    done = wait_terminal(sandbox, job_id)
    assert done == {"id": job_id, "status": "COMPLETED", "image_url": done["image_url"]}
    before = Image.open(io.BytesIO(httpx.get(generated["image_url"]).content))
    after = Image.open(io.BytesIO(httpx.get(done["image_url"]).content))
    assert after.size == (before.width * 2, before.height * 2)
    stats = key_stats(sandbox)
    assert stats["jobs_started"] == {"generate": 1, "upscale": 1}
    assert stats["tokens_spent"] == 2 + 20 and stats["tokens_by_job"][str(job_id)] == 20


def test_job_durations_are_fixed_or_drawn_reproducibly() -> None:
    assert [JobDurations(2.5).draw() for _ in range(3)] == [2.5, 2.5, 2.5]
    first, second = JobDurations((20, 40), seed=7), JobDurations((20, 40), seed=7)
    draws = [first.draw() for _ in range(50)]
    assert draws == [second.draw() for _ in range(50)]
    assert all(20 <= d <= 40 for d in draws) and len(set(draws)) > 1
    with pytest.raises(ValueError):
        JobDurations((5, 1))


# --- validation ----------------------------------------------------------------------------------


def _body(images: str, **changes: Any) -> dict[str, Any]:
    body = {"model": "kontext-pro", "image_url": f"{images}/p/a.jpg", "prompt": "on white"}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not ...}


INVALID_GENERATE: list[tuple[str, Callable[[str], Any]]] = [
    ("unknown model", lambda u: _body(u, model="dall-e-3")),
    ("model in other case", lambda u: _body(u, model="Kontext-Pro")),
    ("missing model", lambda u: _body(u, model=...)),
    ("model not a string", lambda u: _body(u, model=["gpt-low"])),
    ("missing prompt", lambda u: _body(u, prompt=...)),
    ("empty prompt", lambda u: _body(u, prompt="")),
    ("blank prompt", lambda u: _body(u, prompt="   ")),
    ("prompt not a string", lambda u: _body(u, prompt=42)),
    ("prompt too long", lambda u: _body(u, prompt="x" * 4001)),
    ("missing image_url", lambda u: _body(u, image_url=...)),
    ("image_url not http", lambda u: _body(u, image_url="ftp://example.com/a.jpg")),
    ("image_url relative", lambda u: _body(u, image_url="/p/a.jpg")),
    ("two images for a single-reference model", lambda u: _body(u, model="gpt-high", image_url=[f"{u}/p/a.jpg"] * 2)),
    ("three images", lambda u: _body(u, model="seedream", image_url=[f"{u}/p/a.jpg"] * 3)),
    ("empty image array", lambda u: _body(u, model="nanobanana", image_url=[])),
    ("not json", lambda u: b"{model: nope"),
    ("json array", lambda u: [_body(u)]),
]


@pytest.mark.parametrize(("name", "make_body"), INVALID_GENERATE, ids=[name for name, _ in INVALID_GENERATE])
def test_invalid_generate_bodies_are_400_and_cost_nothing(
    sandbox: ProductAISandbox, images: str, name: str, make_body: Callable[[str], Any]
) -> None:
    response = post(sandbox, GENERATE, make_body(images))
    assert is_api_error(response, 400, "BAD_REQUEST"), response.text
    assert response.json()["details"]
    assert key_stats(sandbox)["tokens_spent"] == 0 and key_stats(sandbox)["jobs_started"]["generate"] == 0


def test_every_documented_model_is_accepted_at_its_price(sandbox: ProductAISandbox, images: str) -> None:
    prices = {
        "gpt-low": 2,
        "gpt-medium": 3,
        "gpt-high": 8,
        "kontext-pro": 3,
        "nanobanana": 3,
        "nanobananapro": 8,
        "seedream": 3,
    }
    ids = {model: generate(sandbox, [f"{images}/p/{model}.jpg"], model=model) for model in prices}
    assert key_stats(sandbox)["tokens_by_job"] == {str(ids[model]): price for model, price in prices.items()}
    assert key_stats(sandbox)["tokens"] == 1000 - sum(prices.values())


@pytest.mark.parametrize("body", [{}, {"image_url": None}, {"image_url": 5}, {"image_url": "not a url"}], ids=repr)
def test_invalid_upscale_bodies_are_400(sandbox: ProductAISandbox, body: dict[str, Any]) -> None:
    assert is_api_error(post(sandbox, UPSCALE, body), 400, "BAD_REQUEST")
    assert key_stats(sandbox)["jobs_started"]["upscale"] == 0


# --- sources -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        pytest.param("http://127.0.0.1:9/nothing.jpg", "could not be downloaded", id="unreachable"),
        pytest.param("/p/missing.gif", "HTTP 404", id="404"),
        pytest.param("/not-an-image.jpg", "not a PNG, JPG or WebP", id="not an image"),
        pytest.param("/huge.jpg", "10 MB", id="10 MB"),
    ],
)
def test_an_unusable_source_ends_in_error_with_a_reason(
    sandbox: ProductAISandbox, images: str, path: str, reason: str
) -> None:
    url = path if path.startswith("http") else images + path
    job_id = generate(sandbox, url)
    assert wait_terminal(sandbox, job_id) == {"id": job_id, "status": "ERROR"}  # [DOC] the bare shape
    inspected = httpx.get(f"{sandbox.server_url}/_sandbox/jobs/{job_id}").json()
    assert inspected["status"] == "ERROR" and reason in inspected["error_reason"]
    assert sandbox.job(job_id) == inspected
    assert key_stats(sandbox)["tokens_spent"] == 3  # spent at start, not refunded
    assert httpx.get(f"{sandbox.server_url}/results/{job_id}.png").status_code == 404


# --- the shared budget ---------------------------------------------------------------------------


def test_the_16th_request_in_a_minute_is_429_whatever_the_endpoint(
    make_sandbox: Callable[..., ProductAISandbox], images: str
) -> None:
    clock = FakeClock(1000.0)
    sandbox = make_sandbox(clock=clock, requests_per_window=15)  # the documented figure, stated
    job_id = generate(sandbox, f"{images}/p/a.jpg")  # 1
    assert post(sandbox, UPSCALE, {"image_url": f"{images}/p/a.jpg"}).status_code == 200  # 2
    assert post(sandbox, GENERATE, {"model": "nope"}).status_code == 400  # 3: refused requests count too
    clock.now += 30
    for _ in range(12):  # 4..15
        assert get_job(sandbox, job_id).status_code == 200
    refused = get_job(sandbox, job_id)  # 16
    assert is_api_error(refused, 429, "TOO_MANY_REQUESTS")
    assert "retry-after" not in refused.headers  # nothing documented: the client backs off on its own
    assert is_api_error(post(sandbox, GENERATE, _body(images)), 429, "TOO_MANY_REQUESTS")

    clock.now += 30  # the first three leave the sliding window; the 429s never entered it
    for _ in range(3):
        assert get_job(sandbox, job_id).status_code == 200
    assert get_job(sandbox, job_id).status_code == 429

    stats = key_stats(sandbox)
    assert stats["requests"] == {"generate": 2, "upscale": 1, "job": 15}
    assert stats["rate_limited"] == 3
    assert stats["max_requests_per_window"] == 15
    assert sandbox.stats()["rate_limit"] == {
        "scope": "ip",
        "limit": 15,
        "window_seconds": 60.0,
        "max_requests_per_window": 15,
    }
    assert stats["jobs_started"] == {"generate": 1, "upscale": 1}  # the refused generate started nothing


def test_the_default_budget_is_15_per_minute_per_ip_and_the_window_is_configurable(
    make_sandbox: Callable[..., ProductAISandbox],
) -> None:
    clock = FakeClock(1000.0)
    sandbox = make_sandbox(clock=clock, keys={KEY: 10, OTHER_KEY: 10}, requests_per_window=15, window_seconds=5)
    statuses = [get_job(sandbox, 1, KEY if i % 2 else OTHER_KEY).status_code for i in range(16)]
    assert statuses == [404] * 15 + [429]  # two keys, one IP, one budget
    clock.now += 5
    assert get_job(sandbox, 1).status_code == 404

    with ProductAISandbox(keys={KEY: 10}, clock=FakeClock(1000.0)) as defaults:
        defaults.start()
        assert [get_job(defaults, 1).status_code for _ in range(16)][-2:] == [404, 429]
        assert defaults.stats()["rate_limit"]["window_seconds"] == 60.0


def test_budget_per_key_when_asked(make_sandbox: Callable[..., ProductAISandbox]) -> None:
    sandbox = make_sandbox(
        clock=FakeClock(1000.0), keys={KEY: 10, OTHER_KEY: 10}, requests_per_window=3, rate_limit_scope="key"
    )
    assert [get_job(sandbox, 1, KEY).status_code for _ in range(4)] == [404, 404, 404, 429]
    assert [get_job(sandbox, 1, OTHER_KEY).status_code for _ in range(4)] == [404, 404, 404, 429]


# --- tokens --------------------------------------------------------------------------------------


def test_out_of_tokens_alternates_between_both_documented_shapes(
    make_sandbox: Callable[..., ProductAISandbox], images: str
) -> None:
    sandbox = make_sandbox(keys={KEY: 10})
    first = post(sandbox, GENERATE, _body(images, model="gpt-high"))  # 8 of 10
    assert first.status_code == 200
    answers = [post(sandbox, GENERATE, _body(images, model="gpt-high")) for _ in range(2)]
    assert answers[0].status_code == 400
    assert answers[0].json() == {"name": "ApiError", "message": "OUT_OF_TOKENS", "details": "Not enough credits"}
    assert answers[1].status_code == 402
    assert answers[1].json()["code"] == "OUT_OF_TOKENS"
    upscale = post(sandbox, UPSCALE, {"image_url": f"{images}/p/a.jpg"})  # 20 > 2 left
    assert "OUT_OF_TOKENS" in upscale.text and upscale.status_code == 400
    stats = key_stats(sandbox)
    assert stats["out_of_tokens"] == 3 and stats["tokens"] == 2
    assert stats["jobs_started"] == {"generate": 1, "upscale": 0}

    # A top-up (over HTTP) makes the same request work.
    httpx.post(sandbox.server_url + "/_sandbox/tokens", json={"key": KEY, "tokens": 8}).raise_for_status()
    assert post(sandbox, GENERATE, _body(images, model="gpt-high")).status_code == 200
    assert key_stats(sandbox)["tokens"] == 0


@pytest.mark.parametrize(("shape", "status"), [("api_error", 400), ("code", 402)])
def test_out_of_tokens_in_one_fixed_shape(
    make_sandbox: Callable[..., ProductAISandbox], images: str, shape: str, status: int
) -> None:
    sandbox = make_sandbox(keys={KEY: 0}, out_of_tokens_shape=shape)
    answers = [post(sandbox, GENERATE, _body(images)) for _ in range(3)]
    assert {answer.status_code for answer in answers} == {status}
    assert all("OUT_OF_TOKENS" in answer.text for answer in answers)
    with pytest.raises(ValueError):
        ProductAISandbox(out_of_tokens_shape="teapot")


# --- webhook -------------------------------------------------------------------------------------


def test_the_account_webhook_gets_each_finished_job(
    make_sandbox: Callable[..., ProductAISandbox], images: str, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    sandbox = make_sandbox()
    httpx.post(sandbox.server_url + "/_sandbox/webhook", json={"key": KEY, "url": url}).raise_for_status()
    good = generate(sandbox, f"{images}/p/a.jpg")
    bad = generate(sandbox, f"{images}/gone/missing.jpg")  # 404
    wait_for(lambda: len(hooks.accepted()) == 2, "two webhooks")
    assert key_stats(sandbox)["requests"]["job"] == 0  # the jobs advanced with nobody polling

    with hooks.lock:
        deliveries = list(hooks.deliveries)
    assert {token for token, _, _, _ in deliveries} == {HOOK_TOKEN}  # posted to the configured path
    for _, headers, _, _ in deliveries:
        assert headers["content-type"] == "application/json"
        assert not any("signature" in name for name in headers)  # unsigned [DOC]
    success = next(body for body in hooks.accepted() if body["status"] == "success")
    assert success == {"status": "success", "image_url": success["image_url"], "job_id": str(good)}
    assert success["image_url"] == wait_terminal(sandbox, good)["image_url"]
    assert {"status": "error"} in hooks.accepted()
    assert wait_terminal(sandbox, bad)["status"] == "ERROR"
    assert sandbox.stats()["webhooks"] == {"delivered": 2, "failed_attempts": 0, "abandoned": 0}


def test_webhook_is_retried_until_it_gets_200_and_is_account_level(
    make_sandbox: Callable[..., ProductAISandbox], images: str, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    hooks.first_status = 204  # a 2xx that is not 200 does not count [DOC "must respond with HTTP 200"]
    sandbox = make_sandbox(keys={KEY: 100, OTHER_KEY: 100}, webhook_url=url, webhook_retry_delays=(0.05, 0.05))
    sandbox.set_webhook(OTHER_KEY, None)
    generate(sandbox, f"{images}/p/b.jpg", key=OTHER_KEY)  # no webhook for this account
    job_id = generate(sandbox, f"{images}/p/a.jpg")
    wait_for(lambda: len(hooks.accepted()) == 1, "the retried webhook")
    assert hooks.accepted()[0]["job_id"] == str(job_id)
    assert [status for _, _, _, status in hooks.deliveries] == [204, 200]
    # The sandbox counts a delivery once it has read the receiver's 200, a moment after the receiver saw it.
    wait_for(lambda: sandbox.stats()["webhooks"]["delivered"] == 1, "the sandbox to count the delivery")
    assert sandbox.stats()["webhooks"] == {"delivered": 1, "failed_attempts": 1, "abandoned": 0}
    assert key_stats(sandbox, OTHER_KEY)["webhook_url"] is None and key_stats(sandbox)["webhook_url"] == url


# --- faults --------------------------------------------------------------------------------------


def test_5xx_faults_then_normal_service(sandbox: ProductAISandbox, images: str) -> None:
    httpx.post(
        sandbox.server_url + "/_sandbox/faults", json={"endpoint": "generate", "status": 503, "count": 2}
    ).raise_for_status()
    assert sandbox.stats()["faults_pending"] == 2
    for _ in range(2):
        failed = post(sandbox, GENERATE, _body(images))
        assert is_api_error(failed, 503, "INTERNAL_SERVER_ERROR")
    assert key_stats(sandbox)["jobs_started"]["generate"] == 0 and key_stats(sandbox)["tokens_spent"] == 0
    assert post(sandbox, GENERATE, _body(images)).status_code == 200
    assert key_stats(sandbox)["requests"]["generate"] == 3  # faulted answers still used the budget
    assert sandbox.stats()["faults_pending"] == 0


def test_html_and_hang_faults_on_job_status(sandbox: ProductAISandbox, images: str) -> None:
    job_id = generate(sandbox, f"{images}/p/a.jpg")
    sandbox.add_fault("job", mode="html")
    # The hang outlasts the 0.2 s timeout by more than a stalled CI machine can lose (the sandbox's
    # stop waits for it: 3 s more than before).
    sandbox.add_fault("job", mode="hang", seconds=4.0)
    html = get_job(sandbox, job_id)
    assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")
    with pytest.raises(httpx.ReadTimeout):
        get_job(sandbox, job_id, timeout=0.2)
    assert wait_terminal(sandbox, job_id)["status"] == "COMPLETED"


def test_a_dropped_response_still_started_and_charged_the_job(sandbox: ProductAISandbox, images: str) -> None:
    sandbox.add_fault("upscale", mode="drop_response")
    lost = post(sandbox, UPSCALE, {"image_url": f"{images}/p/a.jpg"})
    assert lost.status_code == 500
    stats = key_stats(sandbox)
    assert stats["jobs_started"]["upscale"] == 1 and stats["tokens_spent"] == 20
    assert stats["tokens_by_image_url"] == {f"{images}/p/a.jpg": 20}
    wait_for(lambda: sandbox.stats()["jobs"]["by_status"] == {"COMPLETED": 1}, "the unseen job to complete")


def test_fault_api_rejects_nonsense_and_can_be_cleared(sandbox: ProductAISandbox) -> None:
    for body in (
        {"endpoint": "delete", "status": 500},
        {"endpoint": "job", "mode": "drop_response"},
        {"endpoint": "generate", "status": 404},
        {"endpoint": "generate", "mode": "hang"},
        {"endpoint": "generate"},
        {"endpoint": "job", "status": 500, "count": 0},
    ):
        assert httpx.post(sandbox.server_url + "/_sandbox/faults", json=body).status_code == 400, body
    sandbox.add_fault("job", status=500, count=5)
    assert httpx.get(sandbox.server_url + "/_sandbox/stats").json()["faults_pending"] == 5
    httpx.delete(sandbox.server_url + "/_sandbox/faults").raise_for_status()
    assert sandbox.stats()["faults_pending"] == 0
    assert get_job(sandbox, 1).status_code == 404


# --- stats ---------------------------------------------------------------------------------------


def test_stats_over_http_prove_nothing_was_paid_twice(
    make_sandbox: Callable[..., ProductAISandbox], images: str
) -> None:
    sandbox = make_sandbox(clock=FakeClock(1000.0), requests_per_window=15)
    urls = [f"{images}/p/{i}.jpg" for i in range(3)]
    ids = [generate(sandbox, url, model="gpt-medium") for url in urls]
    stats = httpx.get(sandbox.server_url + "/_sandbox/stats").json()
    mine = stats["keys"][KEY]
    assert mine["jobs_by_image_url"] == {url: 1 for url in urls}
    assert mine["tokens_by_image_url"] == {url: 3 for url in urls}
    assert mine["tokens_by_job"] == {str(job_id): 3 for job_id in ids}
    assert mine["requests"] == {"generate": 3, "upscale": 0, "job": 0}
    assert mine["max_requests_per_window"] == 3 <= stats["rate_limit"]["limit"]
    assert mine["rate_limited"] == 0 and mine["out_of_tokens"] == 0
    assert stats["jobs"]["total"] == 3
