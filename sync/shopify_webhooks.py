"""Shopify's product webhooks: pure decisions (is this delivery genuine and for us; which
subscriptions to create and delete). The HTTP endpoint is in server.py, the registration's I/O in
shopify_subscriptions.py.

A webhook only makes one product's discovery immediate: discovery reads the product from the
Admin API as always (the payload's media are not trusted or used), and polling stays the safety
net for a missed or lost delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .nesting import nested_deeper_than

WEBHOOK_PATH = "/webhooks/shopify"
# What we subscribe to, and the X-Shopify-Topic header each one's deliveries carry.
TOPICS = {"PRODUCTS_CREATE": "products/create", "PRODUCTS_UPDATE": "products/update"}
DEDUPE_SOURCE = "shopify"  # the seen-event table's source for X-Shopify-Webhook-Id
# ... and for the digest of topic and body: a captured delivery sent again with a fresh webhook id
# is the same delivery (the seen-event table keeps both for the replay window, then forgets them).
BODY_DEDUPE_SOURCE = "shopify-body"
# A product's gid, and nothing else: no path segments, no query, ASCII digits, a 64-bit id.
PRODUCT_GID = re.compile(r"gid://shopify/Product/[1-9][0-9]{0,18}")
MAX_PRODUCT_ID = 2**63 - 1


def callback_url(public_url: str) -> str:
    return public_url.rstrip("/") + WEBHOOK_PATH


# ----- a delivery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    webhook_id: str
    topic: str
    product_id: str  # the product's gid
    digest: str = field(default="", compare=False)  # of topic and body: the same delivery under a new id is a duplicate


def delivery_digest(topic: str, raw: bytes) -> str:
    return hashlib.sha256(topic.encode() + b"\n" + raw).hexdigest()


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str  # for the log and the sender; never holds the secret or the signature


def expected_signature(secret: str, raw: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def check_delivery(secret: str, headers: Mapping[str, str], raw: bytes) -> Accepted | Refused:
    """Decide about one delivery from its headers and raw body, in this order: the signature
    (401: unsigned or forged, before anything in it is believed), the topic (400: not one we
    subscribed to), the webhook id (400), the body (400: not JSON, or no product id)."""
    presented = headers.get("x-shopify-hmac-sha256") or ""
    if not hmac.compare_digest(presented.encode(), expected_signature(secret, raw).encode()):
        return Refused(401, "bad signature")
    topic = headers.get("x-shopify-topic") or ""
    if topic not in TOPICS.values():
        return Refused(400, "unexpected topic")
    webhook_id = (headers.get("x-shopify-webhook-id") or "").strip()
    if not webhook_id or len(webhook_id) > 200:
        return Refused(400, "missing webhook id")
    if nested_deeper_than(raw):
        return Refused(400, "body nested too deeply")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Refused(400, "body is not JSON")
    product_id = product_gid(body)
    if product_id is None:
        return Refused(400, "no product id in the body")
    return Accepted(webhook_id=webhook_id, topic=topic, product_id=product_id, digest=delivery_digest(topic, raw))


def product_gid(body: object) -> str | None:
    """The product's gid from a product webhook body: admin_graphql_api_id, else the numeric id.
    Only a plain gid (PRODUCT_GID) or a positive 64-bit number is believed: "gid://shopify/Product/1/../2"
    or "…/Product/１２" (non-ASCII digits) is no product id."""
    if not isinstance(body, dict):
        return None
    api_id, number = body.get("admin_graphql_api_id"), body.get("id")
    from_number = (
        f"gid://shopify/Product/{number}"
        if isinstance(number, int) and not isinstance(number, bool) and 0 < number <= MAX_PRODUCT_ID
        else None
    )
    if api_id is None:
        return from_number
    plain = isinstance(api_id, str) and PRODUCT_GID.fullmatch(api_id)
    if not plain or int(api_id.rsplit("/", 1)[1]) > MAX_PRODUCT_ID:
        return None  # a gid that is not a plain one is not made good by a number beside it
    if number is not None and from_number != api_id:
        return None  # the two ids disagree: which product is meant?
    return api_id


# ----- subscriptions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Existing:
    id: str
    topic: str
    uri: str


@dataclass(frozen=True)
class SubscriptionPlan:
    create: tuple[str, ...]  # topics
    delete: tuple[str, ...]  # subscription ids


def plan_subscriptions(existing: Iterable[Existing], wanted_uri: str) -> SubscriptionPlan:
    """What to change so that each of our topics has exactly one subscription to `wanted_uri`.

    Ours are recognised by the callback path (the app lists only its own subscriptions, but the
    owner may have others for these topics pointing elsewhere): one of our topics with a uri whose
    path is our webhook path but which is not `wanted_uri` is stale (public_url changed) and goes.
    """
    have: set[str] = set()
    delete: list[str] = []
    for sub in existing:
        if sub.topic not in TOPICS:
            continue
        if sub.uri == wanted_uri:
            if sub.topic in have:
                delete.append(sub.id)  # a duplicate: Shopify refuses them, but one is enough either way
            have.add(sub.topic)
        elif urlsplit(sub.uri).path.rstrip("/") == WEBHOOK_PATH:
            delete.append(sub.id)
    return SubscriptionPlan(create=tuple(t for t in TOPICS if t not in have), delete=tuple(delete))
