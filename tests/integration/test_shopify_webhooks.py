"""Shopify's product webhooks: the pure decisions (a delivery; which subscriptions to change) and
the daemon's endpoint POST /webhooks/shopify over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from retouch.plugin.serve import serve_in_thread
from retouch.storage.store import Store
from retouch.sync.server import ServerDeps, build_app
from retouch.sync.shopify_webhooks import (
    Accepted,
    Existing,
    Refused,
    check_delivery,
    plan_subscriptions,
)

SECRET = "shpss_TESTSECRET_hooks_91ab"
PRODUCT = "gid://shopify/Product/10244032266546"
BODY = json.dumps(
    {
        "id": 10244032266546,
        "admin_graphql_api_id": PRODUCT,
        "updated_at": "2026-07-01T10:00:00Z",
        "media": [],
        "images": [],
    }
).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(
    body: bytes,
    *,
    topic: str = "products/update",
    webhook_id: str = "wh_1",
    secret: str = SECRET,
    signature: str | None = None,
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Hmac-Sha256": sign(body, secret) if signature is None else signature,
        "X-Shopify-Shop-Domain": "retouch-sandbox.myshopify.com",
        "X-Shopify-API-Version": "2026-07",
    }


def lower(h: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in h.items()}


# ----- the pure decision ------------------------------------------------------------------------


def test_a_genuine_delivery_names_the_product() -> None:
    assert check_delivery(SECRET, lower(headers(BODY)), BODY) == Accepted("wh_1", "products/update", PRODUCT)
    numeric_only = json.dumps({"id": 42}).encode()
    verdict = check_delivery(SECRET, lower(headers(numeric_only, topic="products/create")), numeric_only)
    assert verdict == Accepted("wh_1", "products/create", "gid://shopify/Product/42")


@pytest.mark.parametrize("case", ["other secret", "no signature", "body changed", "not base64"])
def test_a_forged_delivery_is_401(case: str) -> None:
    h = lower(headers(BODY))
    body = BODY
    if case == "other secret":
        h = lower(headers(BODY, secret="shpss_somebody_else"))
    elif case == "no signature":
        del h["x-shopify-hmac-sha256"]
    elif case == "body changed":
        body = BODY.replace(b"10244032266546", b"10244032266547", 1)
    else:
        h["x-shopify-hmac-sha256"] = "é" * 44
    assert check_delivery(SECRET, h, body) == Refused(401, "bad signature")


@pytest.mark.parametrize(
    ("topic", "webhook_id", "body", "reason"),
    [
        ("products/delete", "wh_1", BODY, "unexpected topic"),
        ("orders/create", "wh_1", BODY, "unexpected topic"),
        ("products/update", "", BODY, "missing webhook id"),
        ("products/update", "wh_1", b"{not json", "body is not JSON"),
        ("products/update", "wh_1", b"\xff\xfe", "body is not JSON"),
        ("products/update", "wh_1", b"[1, 2]", "no product id in the body"),
        ("products/update", "wh_1", b'{"id": "12"}', "no product id in the body"),
        ("products/update", "wh_1", b'{"admin_graphql_api_id": "gid://shopify/Order/1"}', "no product id in the body"),
    ],
)
def test_signed_but_not_for_us_or_malformed_is_400(topic: str, webhook_id: str, body: bytes, reason: str) -> None:
    h = lower(headers(body, topic=topic, webhook_id=webhook_id))
    assert check_delivery(SECRET, h, body) == Refused(400, reason)


WANTED = "https://hooks.example.com/webhooks/shopify"


def test_plan_creates_only_the_missing_topics() -> None:
    assert plan_subscriptions([], WANTED).create == ("PRODUCTS_CREATE", "PRODUCTS_UPDATE")
    one = [Existing("gid://shopify/WebhookSubscription/1", "PRODUCTS_UPDATE", WANTED)]
    assert plan_subscriptions(one, WANTED).create == ("PRODUCTS_CREATE",)
    both = one + [Existing("gid://shopify/WebhookSubscription/2", "PRODUCTS_CREATE", WANTED)]
    plan = plan_subscriptions(both, WANTED)
    assert plan.create == () and plan.delete == ()


def test_plan_removes_our_stale_ones_and_leaves_others_alone() -> None:
    existing = [
        Existing("s1", "PRODUCTS_UPDATE", "https://old-host.example.com/webhooks/shopify"),  # ours, public_url changed
        Existing("s2", "PRODUCTS_UPDATE", "https://erp.example.com/shopify/products"),  # somebody else's
        Existing("s3", "ORDERS_CREATE", "https://old-host.example.com/webhooks/shopify"),  # a topic we do not own
        Existing("s4", "PRODUCTS_CREATE", WANTED),
    ]
    plan = plan_subscriptions(existing, WANTED)
    assert plan.delete == ("s1",)
    assert plan.create == ("PRODUCTS_UPDATE",)


# ----- the endpoint over real HTTP ---------------------------------------------------------------


class Endpoint:
    def __init__(self, tmp_path: Path, *, secret: str | None = SECRET, max_body: int = 1 << 20) -> None:
        self.store = Store(f"sqlite:///{tmp_path / 'retouch.db'}")
        self.queued: list[str] = []
        self.lock = threading.Lock()
        deps = ServerDeps(
            store=self.store,
            provider=lambda: None,
            discover_every=60.0,
            scheduler_alive=lambda: True,
            on_provider_event=lambda event: None,
            max_body=max_body,
            shopify_webhook_secret=secret,
            on_shopify_product=self._queue,
        )
        self.server = serve_in_thread(build_app(deps, CollectorRegistry()))
        self.http = httpx.Client(base_url=self.server.url, trust_env=False, timeout=10)

    def _queue(self, product_id: str) -> None:
        with self.lock:
            self.queued.append(product_id)

    def handed_over(self) -> list[str]:
        with self.lock:
            return list(self.queued)

    def post(self, body: bytes, **options) -> httpx.Response:
        return self.http.post("/webhooks/shopify", content=body, headers=headers(body, **options))

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    e = Endpoint(tmp_path)
    yield e
    e.close()


def test_a_genuine_delivery_queues_its_product(endpoint: Endpoint) -> None:
    answer = endpoint.post(BODY)
    assert (answer.status_code, answer.json()) == (200, {"accepted": True})
    assert endpoint.handed_over() == [PRODUCT]


def test_a_forged_delivery_is_401_and_queues_nothing(endpoint: Endpoint) -> None:
    assert endpoint.post(BODY, secret="shpss_guessed").status_code == 401
    assert endpoint.post(BODY, signature="").status_code == 401
    assert endpoint.handed_over() == []
    # The forged id was not recorded: the genuine delivery with that id still goes through.
    assert endpoint.post(BODY).status_code == 200
    assert endpoint.handed_over() == [PRODUCT]


def test_a_topic_we_did_not_subscribe_to_is_400(endpoint: Endpoint) -> None:
    assert endpoint.post(BODY, topic="products/delete").status_code == 400
    assert endpoint.handed_over() == []


def test_malformed_json_is_400(endpoint: Endpoint) -> None:
    answer = endpoint.post(b'{"id": 1024403')
    assert answer.status_code == 400 and answer.json() == {"error": "body is not JSON"}
    assert endpoint.handed_over() == []


def test_a_webhook_id_seen_before_is_handled_once(endpoint: Endpoint) -> None:
    assert endpoint.post(BODY, webhook_id="wh_same").json() == {"accepted": True}
    assert endpoint.post(BODY, webhook_id="wh_same").json() == {"duplicate": True}
    # The same topic and body under a new id is the same delivery replayed (test_webhooks_hostile.py);
    # a later update of the product (its updated_at moved) is a new one.
    later = BODY.replace(b"10:00:00Z", b"10:05:00Z")
    assert endpoint.post(later, webhook_id="wh_other").json() == {"accepted": True}
    assert endpoint.handed_over() == [PRODUCT, PRODUCT]


def test_an_oversized_body_is_413_declared_or_streamed(tmp_path: Path) -> None:
    e = Endpoint(tmp_path, max_body=1024)
    try:
        padded = json.dumps({"id": 42, "pad": "x" * 4000}).encode()
        assert e.post(padded).status_code == 413  # Content-Length says it all: nothing is read

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
            for start in range(0, len(padded), 512):
                yield padded[start : start + 512]

        streamed = e.http.post("/webhooks/shopify", content=chunks(), headers=headers(padded, webhook_id="wh_2"))
        assert streamed.status_code == 413
        assert e.handed_over() == []
    finally:
        e.close()


def test_without_a_secret_the_endpoint_does_not_exist(tmp_path: Path) -> None:
    e = Endpoint(tmp_path, secret=None)
    try:
        assert e.post(BODY).status_code == 404
        assert e.handed_over() == []
    finally:
        e.close()
