"""Webhook subscriptions over the GraphQL transport: list, create, delete."""

from __future__ import annotations

from typing import Iterable

from .models import WebhookSubscription
from .reading import MAX_PAGE as _MAX_PAGE
from .reading import next_cursor, parsed, required_field
from .transport import GraphQLTransport


async def webhook_subscriptions(gql: GraphQLTransport, topics: Iterable[str]) -> list[WebhookSubscription]:
    """The app's subscriptions to `topics` (every page)."""
    found: list[WebhookSubscription] = []
    after: str | None = None
    while True:
        data = await gql.execute("WebhookSubscriptions", {"topics": list(topics), "first": _MAX_PAGE, "after": after})
        connection = required_field(data, "webhookSubscriptions", "WebhookSubscriptions")
        found += parsed(
            "WebhookSubscriptions",
            lambda: [
                WebhookSubscription(id=str(n["id"]), topic=str(n["topic"]), uri=str(n["uri"]))
                for n in connection["nodes"]
            ],
        )
        after = next_cursor(connection, after, "WebhookSubscriptions")
        if after is None:
            return found


async def create_webhook_subscription(gql: GraphQLTransport, topic: str, uri: str) -> str:
    """Subscribe `uri` to `topic`; returns the subscription's gid."""
    data = await gql.execute("WebhookSubscriptionCreate", {"topic": topic, "uri": uri})
    return str(
        parsed("WebhookSubscriptionCreate", lambda: data["webhookSubscriptionCreate"]["webhookSubscription"]["id"])
    )


async def delete_webhook_subscription(gql: GraphQLTransport, subscription_id: str) -> None:
    await gql.execute("WebhookSubscriptionDelete", {"id": subscription_id})
