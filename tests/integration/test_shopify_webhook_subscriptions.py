"""The Shopify sandbox's webhook subscriptions and deliveries, and the daemon's registration of
its product webhooks against it (real HTTP on 127.0.0.1 throughout)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest import SHOP_TOKEN, wait_for
from retouch.plugin.serve import serve_in_thread
from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.sync.shopify_subscriptions import register_product_webhooks

APP_SECRET = "shpss_TESTSECRET_sandbox_app_3c1d"


class Receiver:
    """A loopback HTTP endpoint that records every delivery (headers, raw body)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.got.append((dict(request.headers), body))
            return Response("ok")

        self.server = serve_in_thread(Starlette(routes=[Route("/webhooks/shopify", hook, methods=["POST"])]))
        self.url = self.server.url + "/webhooks/shopify"

    def deliveries(self) -> list[tuple[dict[str, str], dict]]:
        with self.lock:
            return [(h, json.loads(b)) for h, b in self.got]

    def raw(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.got)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.stop()


@pytest.fixture
def hooked_shop() -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(
        access_token=SHOP_TOKEN, processing_seconds=0.2, webhook_secret=APP_SECRET, webhook_retry_delays=(0.2,)
    )
    server = sandbox.start()
    yield sandbox
    sandbox.stop()
    server.stop()


def subscribe(shop: ShopifySandbox, url: str, *topics: str) -> None:
    async def go() -> None:
        async with ShopifyClient(shop.shop_url, SHOP_TOKEN) as client:
            for topic in topics:
                await client.create_webhook_subscription(topic, url)

    asyncio.run(go())


def register(shop: ShopifySandbox, public_url: str):
    async def go():
        async with ShopifyClient(shop.shop_url, SHOP_TOKEN) as client:
            return await register_product_webhooks(client, public_url)

    return asyncio.run(go())


# ----- the sandbox ------------------------------------------------------------------------------


def test_the_sandbox_delivers_signed_product_webhooks_to_subscribers(
    hooked_shop: ShopifySandbox, receiver: Receiver
) -> None:
    subscribe(hooked_shop, receiver.url, "PRODUCTS_CREATE", "PRODUCTS_UPDATE")
    product = hooked_shop.add_product("Blue mug", images=[{"filename": "mug.jpg"}])
    wait_for(
        lambda: any(h["x-shopify-topic"] == "products/create" for h, _ in receiver.deliveries()),
        timeout=10,
        what="products/create",
    )
    media = hooked_shop.add_image(product["legacy_id"], "mug-side.jpg")
    wait_for(
        lambda: any(len(b["media"]) == 2 for _, b in receiver.deliveries()),
        timeout=10,
        what="a products/update showing the second image",
    )
    for headers, raw in receiver.raw():
        expected = base64.b64encode(hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).digest()).decode()
        assert headers["x-shopify-hmac-sha256"] == expected
        assert headers["x-shopify-shop-domain"] == "retouch-sandbox.myshopify.com"
        assert headers["x-shopify-api-version"] == "2026-07"
        assert headers["x-shopify-webhook-id"] and headers["x-shopify-triggered-at"].endswith("Z")
    _, body = next((h, b) for h, b in receiver.deliveries() if len(b["media"]) == 2)
    assert body["admin_graphql_api_id"] == product["id"] and body["id"] == int(product["legacy_id"])
    assert body["media"][1]["admin_graphql_api_id"] == media["id"]
    assert body["updated_at"] and body["images"][0]["src"].startswith(hooked_shop.shop_url)
    assert len({h["x-shopify-webhook-id"] for h, _ in receiver.deliveries()}) == len(receiver.deliveries())


def test_only_subscribed_topics_and_later_changes_are_delivered(
    hooked_shop: ShopifySandbox, receiver: Receiver
) -> None:
    hooked_shop.add_product("Quiet", images=[{"filename": "q.jpg"}])  # before any subscription
    subscribe(hooked_shop, receiver.url, "PRODUCTS_UPDATE")
    product = hooked_shop.add_product("Loud")
    hooked_shop.add_image(product["legacy_id"], "a.jpg")
    wait_for(lambda: receiver.deliveries(), timeout=10, what="one delivery")
    assert {h["x-shopify-topic"] for h, _ in receiver.deliveries()} == {"products/update"}  # not subscribed to create
    assert {b["id"] for _, b in receiver.deliveries()} == {int(product["legacy_id"])}


def test_duplicate_and_late_faults_reach_the_receiver(hooked_shop: ShopifySandbox, receiver: Receiver) -> None:
    subscribe(hooked_shop, receiver.url, "PRODUCTS_UPDATE")
    first = hooked_shop.add_product("First")
    second = hooked_shop.add_product("Second")
    hooked_shop.add_fault(mode="duplicate")
    hooked_shop.add_image(first["legacy_id"], "one.jpg")
    wait_for(lambda: len(receiver.deliveries()) == 2, timeout=10, what="the duplicated delivery")
    (h1, b1), (h2, b2) = receiver.deliveries()
    assert h1["x-shopify-webhook-id"] == h2["x-shopify-webhook-id"] and b1 == b2  # the same delivery, twice

    # Held back 6 s: a stalled CI machine cannot let it go before the next one overtakes it (the
    # test waits for it below: 3 s more than before).
    hooked_shop.add_fault(mode="late", seconds=6.0)
    hooked_shop.add_image(first["legacy_id"], "two.jpg")  # held back
    wait_for(lambda: hooked_shop.faults()["webhook"] == [], timeout=10, what="the late fault taken")
    hooked_shop.add_image(second["legacy_id"], "three.jpg")  # overtakes it
    wait_for(lambda: len(receiver.deliveries()) == 4, timeout=20, what="both deliveries")
    order = [b["id"] for _, b in receiver.deliveries()[2:]]
    assert order == [int(second["legacy_id"]), int(first["legacy_id"])]


# ----- registration --------------------------------------------------------------------------------


def test_registration_is_idempotent_and_removes_our_stale_subscriptions(hooked_shop: ShopifySandbox) -> None:
    # Ours from an earlier public_url, and somebody else's for the same topic.
    subscribe(hooked_shop, "http://127.0.0.1:9/webhooks/shopify", "PRODUCTS_UPDATE")
    subscribe(hooked_shop, "http://127.0.0.1:9/erp/products", "PRODUCTS_UPDATE")
    first = register(hooked_shop, "http://127.0.0.1:8787")
    assert (first.create, len(first.delete)) == (("PRODUCTS_CREATE", "PRODUCTS_UPDATE"), 1)
    again = register(hooked_shop, "http://127.0.0.1:8787/")
    assert (again.create, again.delete) == ((), ())
    assert sorted((s["topic"], s["uri"]) for s in hooked_shop.webhook_subscriptions()) == [
        ("PRODUCTS_CREATE", "http://127.0.0.1:8787/webhooks/shopify"),
        ("PRODUCTS_UPDATE", "http://127.0.0.1:8787/webhooks/shopify"),
        ("PRODUCTS_UPDATE", "http://127.0.0.1:9/erp/products"),
    ]
