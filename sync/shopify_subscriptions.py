"""Registering the daemon's Shopify product webhooks at start: list ours, delete the stale ones,
create only what is missing (so any number of starts leaves one subscription per topic)."""

from __future__ import annotations

import structlog

from retouch.plugin.shopify.client import ShopifyClient

from .shopify_webhooks import TOPICS, Existing, SubscriptionPlan, callback_url, plan_subscriptions

log = structlog.get_logger("retouch.webhooks")


async def register_product_webhooks(shopify: ShopifyClient, public_url: str) -> SubscriptionPlan:
    """Make Shopify deliver PRODUCTS_CREATE/UPDATE to `public_url`'s webhook path. Raises
    ShopifyError; the caller decides that polling carries on without webhooks."""
    wanted = callback_url(public_url)
    existing = await shopify.webhook_subscriptions(TOPICS)
    plan = plan_subscriptions([Existing(s.id, s.topic, s.uri) for s in existing], wanted)
    for subscription_id in plan.delete:
        await shopify.delete_webhook_subscription(subscription_id)
        log.info("shopify_webhook_unsubscribed", id=subscription_id, reason="stale callback")
    for topic in plan.create:
        await shopify.create_webhook_subscription(topic, wanted)
        log.info("shopify_webhook_subscribed", topic=topic, uri=wanted)
    log.info(
        "shopify_webhooks_registered",
        topics=sorted(TOPICS),
        uri=wanted,
        created=len(plan.create),
        deleted=len(plan.delete),
    )
    return plan
