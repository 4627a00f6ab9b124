"""Bad input, webhooks of the providers whose deliveries are unsigned (Imagen's callback,
ProductAI's account webhook): the secret token in the path is the proof. Over real HTTP, with a
real Store. AI Gen Studio's signed deliveries (forged, stale, replayed, oversized, malformed) are
covered in test_server.py; this fills the same cases for the token schemes.

Answers: 401 wrong or missing token; 404 another provider's path; 413 over 1 MiB, unread; 400 not
the provider's body; 200 {"duplicate": true} for a replay (the sender stops retrying; nothing is
handed over twice). Neither scheme carries a timestamp, so there is no "stale": a replayed
delivery is the same event id and is only ever a hint to poll (the status endpoint is the truth).
None of the refusals changes the database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from retouch.plugin.providers.base import ProviderConfig, WebhookEvent, webhook_token
from retouch.plugin.providers.imagen.plugin import ImagenProvider, ImagenSettings
from retouch.plugin.providers.productai.plugin import ProductAIProvider, ProductAISettings
from retouch.plugin.serve import serve_in_thread
from retouch.storage.models import ImageState
from retouch.storage.store import Store
from retouch.sync.server import ServerDeps, build_app

KEY = "webhook_TESTSECRET_key_0042"
OTHER_KEY = "webhook_TESTSECRET_key_9999"
PROVIDERS = {
    "imagen": (
        lambda: ImagenProvider(
            ProviderConfig(
                api_key=KEY,
                base_url="http://127.0.0.1:9",
                timeout=5,
                settings=ImagenSettings(profile_key=1),
                public_url="https://hooks.example.com",
            )
        ),
        {"project_uuid": "p-1", "status": "Completed", "action": "edit"},
    ),
    "productai": (
        lambda: ProductAIProvider(
            ProviderConfig(
                api_key=KEY,
                base_url="http://127.0.0.1:9",
                timeout=5,
                settings=ProductAISettings(),
                public_url="https://hooks.example.com",
            )
        ),
        {"status": "success", "job_id": "12312", "image_url": "https://cdn.example.com/r.png"},
    ),
}


class Hooks:
    def __init__(self, tmp_path: Path, name: str) -> None:
        build, self.valid = PROVIDERS[name]
        self.name = name
        self.db = tmp_path / "retouch.db"
        self.store = Store(f"sqlite:///{self.db}")
        # Some state a forged delivery must not touch: an image on its way and its job.
        job = self.store.create_job(name, "retouch-key-1", [], options="{}")
        self.store.insert_image(
            media_id="gid://shopify/MediaImage/1",
            product_id="gid://shopify/Product/1",
            product_legacy_id="1",
            state=ImageState.DISCOVERED,
            source_url="https://cdn/x.jpg",
            filename="x.jpg",
            mime_type="image/jpeg",
            alt="",
            position=0,
        )
        self.job_id = job.id
        self.events: list[WebhookEvent] = []
        provider = build()
        deps = ServerDeps(
            store=self.store,
            provider=lambda: provider,
            discover_every=60.0,
            scheduler_alive=lambda: True,
            on_provider_event=self.events.append,
        )
        self.server = serve_in_thread(build_app(deps, CollectorRegistry()))
        self.http = httpx.Client(base_url=self.server.url, trust_env=False, timeout=10)

    def path(self, token: str | None = webhook_token(KEY)) -> str:
        return f"/webhooks/{self.name}" + (f"/{token}" if token is not None else "")

    def post(self, body: bytes | Iterator[bytes], path: str | None = None) -> httpx.Response:
        return self.http.post(path or self.path(), content=body, headers={"Content-Type": "application/json"})

    def snapshot(self) -> list[str]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.iterdump())

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.store.close()


@pytest.fixture(params=sorted(PROVIDERS))
def hooks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hooks]:
    h = Hooks(tmp_path, request.param)
    yield h
    h.close()


def refusals(h: Hooks) -> list[tuple[str, int, httpx.Response]]:
    body = json.dumps(h.valid).encode()
    return [
        ("wrong token", 401, h.post(body, h.path(webhook_token(OTHER_KEY)))),
        ("token of the wrong length", 401, h.post(body, h.path("x"))),
        ("no token", 401, h.post(body, h.path(None))),
        ("another provider's path", 404, h.post(body, f"/webhooks/aigenstudio/{webhook_token(KEY)}")),
        ("not JSON", 400, h.post(b"<html>hello</html>")),
        ("not UTF-8", 400, h.post(b"\xff\xfe{}")),
        ("a JSON list", 400, h.post(b"[]")),
        ("wrong shape", 400, h.post(json.dumps({**h.valid, "status": 7}).encode())),
        ("empty", 400, h.post(b"")),
        ("over 1 MiB, declared", 413, h.post(b"{" + b" " * (1 << 20) + b"}")),
        ("over 1 MiB, streamed", 413, h.post(iter([b"{" + b" " * 65536] * 17 + [b"}"]))),
    ]


def test_refused_deliveries_get_the_right_4xx_and_change_nothing(hooks: Hooks) -> None:
    before = hooks.snapshot()
    answers = {what: (expected, answer.status_code) for what, expected, answer in refusals(hooks)}
    assert all(expected == got for expected, got in answers.values()), answers
    assert hooks.events == []
    assert hooks.snapshot() == before


def test_a_replay_is_answered_200_duplicate_and_handed_over_once(hooks: Hooks) -> None:
    body = json.dumps(hooks.valid).encode()
    first, second = hooks.post(body), hooks.post(body)
    assert (first.status_code, first.json()) == (200, {"accepted": True})
    assert (second.status_code, second.json()) == (200, {"duplicate": True})
    assert len(hooks.events) == 1
    snapshot = hooks.snapshot()
    hooks.post(body)
    assert hooks.snapshot() == snapshot  # a third delivery records nothing new either


def test_the_token_never_appears_in_an_answer(hooks: Hooks) -> None:
    token = webhook_token(KEY)
    for _, _, answer in refusals(hooks):
        assert token not in answer.text and KEY not in answer.text
