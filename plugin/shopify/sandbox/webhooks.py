"""Webhook subscriptions and their deliveries: PRODUCTS_CREATE / PRODUCTS_UPDATE / PRODUCTS_DELETE.

`Subscriptions` is the state behind `webhookSubscriptions`, `webhookSubscriptionCreate` and
`webhookSubscriptionDelete` (called under the store lock). The store announces each change of a
product (`Store.emit`); `WebhookSender` delivers it from its own thread, the way Shopify does:

- POST to the subscription's `uri`, JSON body shaped like Shopify's product webhook (REST-style
  snake_case: id, admin_graphql_api_id, title, tags, created_at, updated_at, images, media, image);
- headers X-Shopify-Topic ("products/update"), X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(app
  secret, raw body)), X-Shopify-Webhook-Id (kept by every retry and copy of one delivery),
  X-Shopify-Shop-Domain, X-Shopify-API-Version, X-Shopify-Triggered-At, X-Shopify-Event-Id;
- any answer but 2xx, or none within 5 s, is retried a few times (Shopify: 8 times over 4 hours;
  here after `retry_delays`).

The body is built when the delivery leaves, not when the change happened: changes made in one
call coalesce into one delivery (a product's pending update is not queued twice), as Shopify
batches a burst of edits. Fault plans: the pseudo-endpoint "webhook" with `mode` "duplicate"
(the delivery is sent twice, same webhook id) or "late" (held back `seconds`, so later ones overtake it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog

from ...sandbox_kit.webhooks import WebhookPoster
from .model import gid, iso, parse_gid

log = structlog.get_logger(__name__)

TOPIC_HEADERS = {
    "PRODUCTS_CREATE": "products/create",
    "PRODUCTS_UPDATE": "products/update",
    "PRODUCTS_DELETE": "products/delete",
}
DELIVERY_TIMEOUT = 5.0  # Shopify's documented limit for an answer
FIRST_SUBSCRIPTION_ID = 1419385552946
SUBSCRIPTION_ID_STRIDE = 32768


def sign(secret: str, body: bytes) -> str:
    """X-Shopify-Hmac-Sha256 for `body`."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Subscription:
    id: int
    topic: str
    uri: str
    created_at: float
    updated_at: float

    @property
    def gid(self) -> str:
        return gid("WebhookSubscription", self.id)


def _uri_problem(uri: str | None) -> str | None:
    parts = urlsplit(uri or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Address is invalid"
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return "Address protocol http:// is not supported"  # the sandbox takes http only on loopback
    return None


class Subscriptions:
    """The shop's webhook subscriptions (the caller holds the store lock)."""

    def __init__(self) -> None:
        self.by_id: dict[int, Subscription] = {}
        self._next_id = FIRST_SUBSCRIPTION_ID

    def for_topic(self, topic: str) -> list[Subscription]:
        return [s for s in self.by_id.values() if s.topic == topic]

    def create(self, topic: str, webhook_subscription: dict[str, Any], now: float) -> dict[str, Any]:
        uri = webhook_subscription.get("uri")
        problem = _uri_problem(uri)
        if problem is None and any(s.topic == topic and s.uri == uri for s in self.by_id.values()):
            problem = "Address for this topic has already been taken"
        if problem is not None:
            return {
                "webhookSubscription": None,
                "userErrors": [{"field": ["webhookSubscription", "callbackUrl"], "message": problem}],
            }
        subscription = Subscription(self._next_id, topic, str(uri), now, now)
        self._next_id += SUBSCRIPTION_ID_STRIDE
        self.by_id[subscription.id] = subscription
        log.info("webhook_subscription_created", topic=topic, id=subscription.id)
        return {"webhookSubscription": subscription, "userErrors": []}

    def delete(self, subscription_gid: str) -> dict[str, Any]:
        parsed = parse_gid(subscription_gid)
        found = self.by_id.pop(parsed[1], None) if parsed and parsed[0] == "WebhookSubscription" else None
        if found is None:
            return {
                "deletedWebhookSubscriptionId": None,
                "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}],
            }
        log.info("webhook_subscription_deleted", topic=found.topic, id=found.id)
        return {"deletedWebhookSubscriptionId": found.gid, "userErrors": []}


def product_payload(product_json: dict[str, Any], legacy_media: Callable[[str], int]) -> dict[str, Any]:
    """Shopify's product webhook body from the sandbox's product JSON (only the parts retouch or a
    reader may use; variants and options are empty lists)."""
    number = int(product_json["legacy_id"])
    media, images = [], []
    for position, item in enumerate(product_json["media"], start=1):
        media_id = legacy_media(item["id"])
        preview = (
            {"width": item["width"], "height": item["height"], "src": item["url"], "status": item["status"]}
            if item["url"]
            else {"status": item["status"]}
        )
        media.append(
            {
                "id": media_id,
                "product_id": number,
                "position": position,
                "created_at": item["created_at"],
                "updated_at": item["updated_at"],
                "alt": item["alt"] or None,
                "status": item["status"],
                "media_content_type": "IMAGE",
                "preview_image": preview,
                "variant_ids": [],
                "admin_graphql_api_id": item["id"],
            }
        )
        if item["url"]:
            images.append(
                {
                    "id": media_id,
                    "product_id": number,
                    "position": position,
                    "alt": item["alt"] or None,
                    "width": item["width"],
                    "height": item["height"],
                    "src": item["url"],
                    "created_at": item["created_at"],
                    "updated_at": item["updated_at"],
                    "variant_ids": [],
                    "admin_graphql_api_id": gid("ProductImage", media_id),
                }
            )
    return {
        "admin_graphql_api_id": product_json["id"],
        "id": number,
        "title": product_json["title"],
        "handle": product_json["title"].lower().replace(" ", "-"),
        "body_html": "",
        "vendor": "",
        "product_type": "",
        "status": "active",
        "tags": ", ".join(product_json["tags"]),
        "created_at": product_json["created_at"],
        "updated_at": product_json["updated_at"],
        "published_at": product_json["created_at"],
        "variants": [],
        "options": [],
        "images": images,
        "image": images[0] if images else None,
        "media": media,
        "variant_gids": [],
        "has_variants_that_requires_components": False,
        "category": None,
    }


@dataclass(frozen=True)
class Delivery:
    uri: str
    topic: str
    body: bytes
    webhook_id: str
    event_id: str
    triggered_at: str


class WebhookSender:
    """Delivers queued product events: a background thread builds each delivery's body when it
    leaves (under the store lock), and `WebhookPoster`'s pool posts it."""

    def __init__(
        self,
        *,
        secret: str,
        shop_domain: str,
        api_version: str,
        build: Callable[[str, int], list[Delivery]],
        faults: Any,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0),
    ) -> None:
        self._secret = secret
        self._shop_domain = shop_domain
        self._api_version = api_version
        self._build = build  # (topic, product number) -> the deliveries, built under the store lock
        self._queue: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._stop = threading.Event()
        self._poster = WebhookPoster(
            self._stop, faults, retry_delays=retry_delays, timeout=DELIVERY_TIMEOUT, thread_name="shopify-webhook"
        )
        self._thread = threading.Thread(target=self._run, name="shopify-webhooks", daemon=True)
        self._thread.start()

    def enqueue(self, topic: str, product: int) -> None:
        self._queue.put((topic, product))

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            try:
                deliveries = self._build(*item)
            except Exception:
                log.exception("webhook_build_failed")
                continue
            for delivery in deliveries:
                headers = self._headers(delivery)
                self._poster.post(
                    delivery.uri,
                    delivery.body,
                    lambda headers=headers: headers,  # type: ignore[misc]  # a default binds this delivery's
                    lambda d=delivery: log.warning(
                        "shopify_webhook_abandoned",
                        topic=d.topic,  # type: ignore[misc]  # as above
                        webhook_id=d.webhook_id,
                    ),
                )

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": TOPIC_HEADERS[delivery.topic],
            "X-Shopify-Hmac-Sha256": sign(self._secret, delivery.body),
            "X-Shopify-Webhook-Id": delivery.webhook_id,
            "X-Shopify-Event-Id": delivery.event_id,
            "X-Shopify-Shop-Domain": self._shop_domain,
            "X-Shopify-API-Version": self._api_version,
            "X-Shopify-Triggered-At": delivery.triggered_at,
        }

    def stats(self) -> dict[str, int]:
        return self._poster.stats()

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._poster.close()


def new_delivery(subscription: Subscription, body: dict[str, Any], now: float) -> Delivery:
    return Delivery(
        uri=subscription.uri,
        topic=subscription.topic,
        body=json.dumps(body, separators=(",", ":")).encode(),
        webhook_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        triggered_at=iso(now),
    )
