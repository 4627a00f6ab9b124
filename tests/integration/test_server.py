"""The daemon's HTTP server over real HTTP: health, metrics, AI Gen Studio webhooks, and `serve()`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from retouch.plugin.providers.aigenstudio import AigenClient, SourceImage, webhooks
from retouch.plugin.providers.aigenstudio.plugin import AigenProvider, AigenSettings
from retouch.plugin.providers.aigenstudio.quota import documented_limits
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.providers.base import ProviderConfig, WebhookEvent
from retouch.plugin.serve import serve_in_thread
from retouch.plugin.shopify.client import ClientStats
from retouch.storage.models import ImageState, JobState
from retouch.storage.store import Store
from retouch.sync.listen import is_loopback_listen, parse_listen
from retouch.sync.metrics import build_registry
from retouch.sync.server import ServerDeps, build_app, serve

KEY = "aigen_test_server_tests_key"
OTHER_KEY = "aigen_test_somebody_else_key"
HOOK = "/webhooks/aigenstudio"
EVERY = 60.0  # discover_every in these tests
LIMITS = documented_limits(window=100.0, jobs=5, images=10, polls=20)


def aigen_provider(key: str) -> AigenProvider:
    """The AI Gen Studio provider (it verifies the webhooks); no request goes to its base URL here."""
    return AigenProvider(
        ProviderConfig(api_key=key, base_url="http://127.0.0.1:9", timeout=5, settings=AigenSettings(), public_url=None)
    )


class Clock:
    """Wall clock the tests move by hand; starts at real time so sandbox timestamps agree with it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Harness:
    """A real Store on tmp_path, the app served on loopback, and a record of handed-over events."""

    def __init__(self, tmp_path: Path, **deps: Any) -> None:
        self.db = tmp_path / "retouch.db"
        self.store = Store(f"sqlite:///{self.db}")
        self.clock = Clock()
        self.alive = True
        self.events: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.shopify_stats: ClientStats | None = None
        self.provider_stats: Counter[str] | None = None
        self.registry = build_registry(
            self.store, "aigenstudio", LIMITS, lambda: self.shopify_stats, lambda: self.provider_stats, clock=self.clock
        )
        options = {"clock": self.clock, **deps}
        self.provider = aigen_provider(KEY)
        self.deps = ServerDeps(
            store=self.store,
            provider=lambda: self.provider,
            discover_every=EVERY,
            scheduler_alive=lambda: self.alive,
            on_provider_event=self._on_event,
            **options,
        )
        self.server = serve_in_thread(build_app(self.deps, self.registry))
        self.http = httpx.Client(base_url=self.server.url, trust_env=False, timeout=10)

    def _on_event(self, event: WebhookEvent) -> None:
        with self.lock:
            self.events.append((event.kind, event.provider_job_id))

    def handed_over(self) -> list[tuple[str, str | None]]:
        with self.lock:
            return list(self.events)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.store.close()

    # --- webhooks -----------------------------------------------------------------------------

    def deliver(
        self,
        body: bytes,
        *,
        event_id: str = "evt_1",
        timestamp: float | None = None,
        key: str = KEY,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        ts = str(int(self.clock() if timestamp is None else timestamp))
        signed = {
            "Content-Type": "application/json",
            "X-Aigen-Signature": webhooks.sign(key, ts, event_id, body),
            "X-Aigen-Timestamp": ts,
            "X-Aigen-Event-Id": event_id,
        }
        return self.http.post(HOOK, content=body, headers={**signed, **(headers or {})})

    def recorded(self, event_id: str) -> bool:
        """Was this event id stored? (Asking records it, so call this last.)"""
        return not self.store.remember_event("aigenstudio", event_id, self.clock())


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


def event_body(kind: str = "enhancement.item.completed", enhancement_id: str = "enh_1") -> bytes:
    return json.dumps({"type": kind, "enhancement_id": enhancement_id, "item": {"external_id": "81234"}}).encode()


# --- /healthz ------------------------------------------------------------------------------------


def test_healthz_ok_while_starting_and_with_a_recent_discovery(harness: Harness) -> None:
    answer = harness.http.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["ok"] is True
    assert set(answer.json()["checks"]) == {"database", "scheduler", "discovery"}

    harness.clock.now += 5 * EVERY  # long past the start-up grace, but discovery ran 10 s ago
    harness.store.set_meta("last_discovery_at", str(harness.clock.now - 10))
    answer = harness.http.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["checks"]["discovery"] == {"ok": True, "age_seconds": 10.0}


def test_healthz_503_when_the_last_discovery_is_stale(harness: Harness) -> None:
    harness.store.set_meta("last_discovery_at", str(harness.clock.now - 3 * EVERY - 1))
    answer = harness.http.get("/healthz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["ok"] is False
    assert body["checks"]["discovery"]["ok"] is False
    assert body["checks"]["database"]["ok"] and body["checks"]["scheduler"]["ok"]


def test_healthz_503_when_no_discovery_ever_happened_after_the_grace(harness: Harness) -> None:
    harness.clock.now += 3 * EVERY - 1
    assert harness.http.get("/healthz").status_code == 200
    harness.clock.now += 2
    answer = harness.http.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["discovery"]["ok"] is False


def test_healthz_503_when_the_scheduler_is_dead(harness: Harness) -> None:
    harness.alive = False
    answer = harness.http.get("/healthz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["scheduler"]["ok"] is False
    assert checks["database"]["ok"] and checks["discovery"]["ok"]


def _remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _replace_database_with_garbage(db: Path) -> None:
    garbage = db.with_name("garbage")
    garbage.write_bytes(b"this is not a SQLite database" * 200)
    os.replace(garbage, db)


@pytest.mark.parametrize("damage", [_remove_database, _replace_database_with_garbage], ids=["removed", "garbage"])
def test_healthz_503_when_the_database_is_gone_or_unreadable(harness: Harness, damage) -> None:
    assert harness.http.get("/healthz").status_code == 200
    damage(harness.db)
    answer = harness.http.get("/healthz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["database"]["ok"] is False
    assert str(harness.db) not in answer.text  # no file paths in a public answer


# --- /metrics ------------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_match_the_database_and_the_counters(harness: Harness) -> None:
    store, now = harness.store, harness.clock.now
    made = Counter()

    def image(n: int, state: ImageState) -> int:
        made[state] += 1
        return store.insert_image(
            media_id=f"gid://shopify/MediaImage/{n}",
            product_id=f"gid://shopify/Product/{n}",
            product_legacy_id=str(n),
            state=state,
        ).id

    for n in range(1, 5):
        image(n, ImageState.DISCOVERED)
    for n in range(10, 13):
        image(n, ImageState.DONE)
    image(20, ImageState.FAILED)
    pending_job = store.create_job("aigenstudio", "key-pending-0001", [image(30, ImageState.DISCOVERED)])
    submitted_job = store.create_job("aigenstudio", "key-submitted-01", [image(31, ImageState.DISCOVERED)])
    store.update_job(submitted_job.id, state=JobState.SUBMITTED, provider_job_id="enh_2")
    finished_job = store.create_job("aigenstudio", "key-finished-001", [image(32, ImageState.DISCOVERED)])
    store.update_job(finished_job.id, state=JobState.FINISHED)
    made[ImageState.DISCOVERED] -= 3
    made[ImageState.SUBMITTED] += 3  # create_job moved them
    assert pending_job.state == JobState.PENDING

    store.add_quota_event("aigenstudio", "job", now - 10)
    store.add_quota_event("aigenstudio", "image", now - 10, count=8)
    store.add_quota_event("aigenstudio", "image", now - LIMITS.window - 1, count=5)  # outside the window
    store.add_quota_event("aigenstudio", "poll", now - 5)
    store.set_meta("provider_paused", json.dumps({"reason": "insufficient_api_credits"}))

    harness.shopify_stats = ClientStats(requests=7, throttled=2, retries=Counter({"http_503": 3, "timeout": 1}))
    harness.provider_stats = Counter({"ok": 2, "rate_limited": 1})
    store.update_job(finished_job.id, credits_used=5)

    answer = harness.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples = _samples(answer.text)

    for state in ImageState:
        assert samples[("retouch_images", (("state", state.value),))] == made[state], state
    assert samples[("retouch_jobs_in_flight", ())] == 2  # pending + submitted, not finished
    assert samples[("retouch_provider_quota_left", (("kind", "job"),))] == LIMITS.jobs - 1
    assert samples[("retouch_provider_quota_left", (("kind", "image"),))] == LIMITS.images - 8
    assert samples[("retouch_provider_quota_left", (("kind", "poll"),))] == LIMITS.polls - 1
    # 4 queued, 2 fit in this window, the other 2 need one more window of 10 images.
    assert samples[("retouch_queue_eta_seconds", ())] == LIMITS.window
    assert samples[("retouch_provider_paused", ())] == 1
    assert samples[("retouch_shopify_requests_total", ())] == 7
    assert samples[("retouch_shopify_throttled_total", ())] == 2
    assert samples[("retouch_shopify_retries_total", (("reason", "http_503"),))] == 3
    assert samples[("retouch_shopify_retries_total", (("reason", "timeout"),))] == 1
    assert samples[("retouch_provider_requests_total", (("outcome", "ok"),))] == 2
    assert samples[("retouch_provider_requests_total", (("outcome", "rate_limited"),))] == 1
    assert samples[("retouch_provider_rate_limited_total", ())] == 1
    assert samples[("retouch_provider_credits_used_total", ())] == 5

    # Read at scrape time: a change in the DB shows at the next scrape, without touching the server.
    store.delete_meta("provider_paused")
    store.update_job(submitted_job.id, state=JobState.FINISHED)
    samples = _samples(harness.http.get("/metrics").text)
    assert samples[("retouch_provider_paused", ())] == 0
    assert samples[("retouch_jobs_in_flight", ())] == 1


def test_metrics_without_clients_leave_their_counters_out(harness: Harness) -> None:
    answer = harness.http.get("/metrics")
    assert answer.status_code == 200
    names = {name for name, _ in _samples(answer.text)}
    assert "retouch_images" in names
    assert not any(name.startswith("retouch_shopify_") for name in names)
    assert not any(name.startswith("retouch_provider_requests") for name in names)


# --- /webhooks/aigenstudio -----------------------------------------------------------------------


def test_a_valid_webhook_is_handed_over_once_and_recorded(harness: Harness) -> None:
    answer = harness.deliver(event_body(enhancement_id="enh_42"), event_id="evt_valid")
    assert answer.status_code == 200
    assert answer.json() == {"accepted": True}
    assert harness.handed_over() == [("enhancement.item.completed", "enh_42")]
    assert harness.recorded("evt_valid")


@pytest.mark.parametrize("forgery", ["wrong key", "tampered body", "other event id", "no signature", "no headers"])
def test_a_bad_signature_is_401_and_leaves_no_trace(harness: Harness, forgery: str) -> None:
    body = event_body()
    if forgery == "wrong key":
        answer = harness.deliver(body, event_id="evt_forged", key=OTHER_KEY)
    elif forgery == "tampered body":
        signed = webhooks.sign(KEY, str(int(harness.clock())), "evt_forged", body)
        answer = harness.deliver(
            body.replace(b"enh_1", b"enh_9"), event_id="evt_forged", headers={"X-Aigen-Signature": signed}
        )
    elif forgery == "other event id":
        signed = webhooks.sign(KEY, str(int(harness.clock())), "evt_original", body)
        answer = harness.deliver(body, event_id="evt_forged", headers={"X-Aigen-Signature": signed})
    elif forgery == "no signature":
        answer = harness.deliver(body, event_id="evt_forged", headers={"X-Aigen-Signature": ""})
    else:
        answer = harness.http.post(HOOK, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 401
    assert harness.handed_over() == []
    assert not harness.recorded("evt_forged")  # the dedupe table is not poisoned


@pytest.mark.parametrize("offset", [-301, +301, -3600])
def test_a_timestamp_outside_the_skew_is_401(harness: Harness, offset: float) -> None:
    answer = harness.deliver(event_body(), event_id="evt_stale", timestamp=harness.clock() + offset)
    assert answer.status_code == 401
    assert harness.handed_over() == []
    assert not harness.recorded("evt_stale")


def test_a_timestamp_just_inside_the_skew_is_accepted(harness: Harness) -> None:
    assert harness.deliver(event_body(), event_id="evt_edge", timestamp=harness.clock() - 299).status_code == 200
    assert len(harness.handed_over()) == 1


def test_a_replayed_event_id_is_a_duplicate_and_handed_over_once(harness: Harness) -> None:
    first = harness.deliver(event_body(), event_id="evt_replay")
    harness.clock.now += 30  # the sender retries later, with a fresh timestamp and a new signature
    second = harness.deliver(event_body(), event_id="evt_replay")
    assert first.status_code == 200 and first.json() == {"accepted": True}
    assert second.status_code == 200 and second.json() == {"duplicate": True}
    assert len(harness.handed_over()) == 1


def test_oversized_bodies_are_413_and_not_handed_over(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_body=1024)
    try:
        padded = json.dumps({"type": "enhancement.completed", "enhancement_id": "enh_1", "pad": "x" * 4000}).encode()
        assert h.deliver(padded, event_id="evt_big").status_code == 413  # Content-Length says it all

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
            for start in range(0, len(padded), 512):
                yield padded[start : start + 512]

        ts = str(int(h.clock()))
        streamed = h.http.post(
            HOOK,
            content=chunks(),
            headers={
                "X-Aigen-Signature": webhooks.sign(KEY, ts, "evt_big2", padded),
                "X-Aigen-Timestamp": ts,
                "X-Aigen-Event-Id": "evt_big2",
            },
        )
        assert streamed.status_code == 413
        assert h.handed_over() == []
        # A body exactly at the cap still goes through.
        small = json.dumps({"type": "enhancement.completed", "enhancement_id": "enh_1"}).encode()
        small = small[:-1] + b" " * (1024 - len(small)) + b"}"
        assert len(small) == 1024
        assert h.deliver(small, event_id="evt_fits").status_code == 200
        assert not h.recorded("evt_big") and not h.recorded("evt_big2")
    finally:
        h.close()


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"type": "enhancement.completed"}',
        b'{"type": 3, "enhancement_id": "enh_1"}',
    ],
    ids=["broken", "not utf-8", "array", "no enhancement_id", "type not a string"],
)
def test_a_malformed_event_is_400(harness: Harness, body: bytes) -> None:
    answer = harness.deliver(body, event_id="evt_malformed")
    assert answer.status_code == 400
    assert harness.handed_over() == []
    assert not harness.recorded("evt_malformed")


def test_a_failing_handler_still_answers_200(tmp_path: Path) -> None:
    def broken(event: WebhookEvent) -> None:
        raise RuntimeError("boom")

    h = Harness(tmp_path)
    h.deps.on_provider_event = broken  # the app reads deps at request time
    try:
        answer = h.deliver(event_body(), event_id="evt_broken_handler")
        assert answer.status_code == 200  # a retry would only be a duplicate; polling catches up
        assert h.recorded("evt_broken_handler")
    finally:
        h.close()


# --- end to end with the AI Gen Studio sandbox ---------------------------------------------------


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 180, 150)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_webhooks_signed_by_the_sandbox_are_accepted_and_handed_over(tmp_path: Path) -> None:
    photo = _jpeg()

    async def jpeg(request: Request) -> Response:
        return Response(photo, media_type="image/jpeg")

    h = Harness(tmp_path, clock=time.time)  # the sandbox stamps deliveries with the real clock
    sandbox = AigenSandbox(seconds_per_item=0.05)
    try:
        with serve_in_thread(Starlette(routes=[Route("/p/{name}.jpg", jpeg)])) as images:
            sandbox.start()

            async def create() -> str:
                async with AigenClient(KEY, sandbox.base_url) as client:
                    created = await client.create_enhancement(
                        idempotency_key="server-e2e-0001",
                        preset="single_product_white_background",
                        preservation_level="strict",
                        webhook_url=f"{h.server.url}{HOOK}",
                        images=[SourceImage(external_id="8123456700", source_url=f"{images.url}/p/a.jpg")],
                    )
                    return created.enhancement.id

            enhancement_id = asyncio.run(create())
            deadline = time.monotonic() + 15
            while len(h.handed_over()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        events = h.handed_over()
        assert sorted(kind for kind, _ in events) == ["enhancement.completed", "enhancement.item.completed"]
        assert {job_id for _, job_id in events} == {enhancement_id}
        assert sandbox.stats()["webhooks"] == {"delivered": 2, "failed_attempts": 0}
    finally:
        sandbox.close()
        h.close()


# --- serve() inside a running loop ---------------------------------------------------------------


def _free_port(family: socket.AddressFamily, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("host,family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], ids=["ipv4", "ipv6"])
def test_serve_runs_in_the_current_loop_and_stops_when_told(tmp_path: Path, host: str, family) -> None:
    store = Store(f"sqlite:///{tmp_path / 'retouch.db'}")
    registry = build_registry(store, "aigenstudio", LIMITS, lambda: None, lambda: None)
    provider = aigen_provider(KEY)
    deps = ServerDeps(
        store=store,
        provider=lambda: provider,
        discover_every=EVERY,
        scheduler_alive=lambda: True,
        on_provider_event=lambda event: None,
    )
    port = _free_port(family, host)
    listen = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
    term_handler_before = signal.getsignal(signal.SIGTERM)

    async def scenario() -> tuple[int, Any]:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(build_app(deps, registry), listen, stop))
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as http:
            for _ in range(200):
                try:
                    answer = await http.get("/healthz")
                    break
                except httpx.ConnectError:
                    assert not task.done(), task.exception() if task.done() else None
                    await asyncio.sleep(0.02)
            else:
                raise AssertionError("serve() never answered")
            handler_while_serving = signal.getsignal(signal.SIGTERM)
            stop.set()
            await asyncio.wait_for(task, timeout=10)
        return answer.status_code, handler_while_serving

    try:
        status, handler_while_serving = asyncio.run(scenario())
    finally:
        store.close()
    assert status == 200
    assert handler_while_serving is term_handler_before  # uvicorn did not take the signals
    with socket.socket(family, socket.SOCK_STREAM) as sock:  # nobody listens there any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections may linger in TIME_WAIT
        sock.bind((host, port))
        sock.listen()


def test_serve_reports_an_address_in_use(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'retouch.db'}")
    registry = build_registry(store, "aigenstudio", LIMITS, lambda: None, lambda: None)
    provider = aigen_provider(KEY)
    deps = ServerDeps(
        store=store,
        provider=lambda: provider,
        discover_every=EVERY,
        scheduler_alive=lambda: True,
        on_provider_event=lambda event: None,
    )
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            asyncio.run(asyncio.wait_for(serve(build_app(deps, registry), f"127.0.0.1:{port}", asyncio.Event()), 10))
    store.close()


# --- listen addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,expected",
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("[::1]:8787", ("::1", 8787)),
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        (" [::]:80 ", ("::", 80)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "8787",
        ":8787",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "::1:8787",
        "[::1]8787",
        "[nope]:8787",
        "a b:80",
        "",
    ],
)
def test_parse_listen_rejects_malformed_values(value: str) -> None:
    with pytest.raises(ValueError, match="listen"):
        parse_listen(value)


@pytest.mark.parametrize(
    "value,loopback",
    [
        ("127.0.0.1:8787", True),
        ("127.1.2.3:8787", True),
        ("[::1]:8787", True),
        ("localhost:8787", True),
        ("0.0.0.0:8787", False),
        ("[::]:8787", False),
        ("192.168.1.5:8787", False),
        ("example.com:8787", False),
    ],
)
def test_is_loopback_listen(value: str, loopback: bool) -> None:
    assert is_loopback_listen(value) is loopback


def test_the_api_key_stays_out_of_reprs(harness: Harness) -> None:
    assert KEY not in repr(harness.deps)
