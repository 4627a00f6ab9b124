"""The real daemon (a subprocess) with Shopify product webhooks: a merchant's new image is queued
and enhanced by the webhook's discovery, not the (5-minute) discovery interval; registration is
idempotent across starts; a registration failure leaves the daemon polling."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import SHOP_TOKEN, config_text, image_states, wait_for
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

APP_SECRET = "shpss_TESTSECRET_daemon_app_8e2f"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hooked_shop() -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2, webhook_secret=APP_SECRET)
    server = sandbox.start()
    yield sandbox
    sandbox.stop()
    server.stop()


def write_config(shop: ShopifySandbox, provider: AigenSandbox, tmp_path: Path, *, discover_every: str) -> Path:
    port = free_port()
    server = (
        f'\n[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        f'shopify_webhook_secret_env = "RETOUCH_TEST_SHOPIFY_HOOKS"\n'
    )
    text = config_text(shop, provider, tmp_path, extra=server).replace(
        'discover_every = "1s"', f'discover_every = "{discover_every}"'
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


ENV = {"RETOUCH_TEST_SHOPIFY_HOOKS": APP_SECRET}


def events_named(proc, name: str) -> list[dict]:
    return [e for e in proc.events() if e.get("event") == name]


def test_a_new_image_is_queued_by_the_webhook_not_the_discovery_interval(
    hooked_shop: ShopifySandbox, provider: AigenSandbox, tmp_path: Path, daemon
) -> None:
    product = hooked_shop.add_product("Linen shirt", images=[{"filename": "shirt.jpg"}])
    db = tmp_path / "retouch.db"
    config = write_config(hooked_shop, provider, tmp_path, discover_every="5m")
    first = daemon(config, env=ENV)
    wait_for(
        lambda: events_named(first, "shopify_webhooks_registered") and "baseline" in image_states(db).values(),
        timeout=60,
        what="registration and the baseline",
    )
    assert sorted(s["topic"] for s in hooked_shop.webhook_subscriptions()) == ["PRODUCTS_CREATE", "PRODUCTS_UPDATE"]

    added_at = datetime.now().astimezone()
    media = hooked_shop.add_image(product["legacy_id"], "shirt-back.jpg")  # the merchant
    wait_for(lambda: image_states(db).get(media["id"]) == "done", timeout=90, what="the new image done")

    # Queued by the discovery the webhook triggered (the interval's next pass is minutes away).
    live = [e for e in events_named(first, "discovered") if e.get("trigger") == "webhook" and e.get("queued")]
    assert live, "the image was not queued by a webhook's discovery"
    assert any(e.get("media_id") == media["id"] for e in events_named(first, "queued"))
    assert events_named(first, "shopify_webhook_received")
    queued_at = next(
        datetime.fromisoformat(e["timestamp"])
        for e in events_named(first, "queued")
        if e.get("media_id") == media["id"]
    )
    print(f"\nmerchant's add -> queued: {(queued_at - added_at).total_seconds():.3f} s")
    assert first.terminate() == 0
    assert APP_SECRET not in first.output()

    # A second start finds both subscriptions and changes nothing.
    second = daemon(config, env=ENV)
    registered = wait_for(
        lambda: events_named(second, "shopify_webhooks_registered"), timeout=60, what="the second registration"
    )
    assert (registered[0]["created"], registered[0]["deleted"]) == (0, 0)
    assert len(hooked_shop.webhook_subscriptions()) == 2
    assert second.terminate() == 0
    assert APP_SECRET not in second.output()


def test_a_registration_failure_is_logged_and_the_daemon_keeps_polling(
    hooked_shop: ShopifySandbox, provider: AigenSandbox, tmp_path: Path, daemon
) -> None:
    product = hooked_shop.add_product("Wool hat", images=[{"filename": "hat.jpg"}])
    hooked_shop.add_fault(status=500, count=3, operation="WebhookSubscriptionCreate")
    db = tmp_path / "retouch.db"
    proc = daemon(write_config(hooked_shop, provider, tmp_path, discover_every="1s"), env=ENV)
    failed = wait_for(
        lambda: events_named(proc, "shopify_webhooks_not_registered"), timeout=60, what="the registration failure"
    )
    assert "500" in failed[0]["reason"] or "Internal" in failed[0]["reason"]
    wait_for(lambda: "baseline" in image_states(db).values(), timeout=60, what="the baseline")
    media = hooked_shop.add_image(product["legacy_id"], "hat-side.jpg")
    wait_for(lambda: image_states(db).get(media["id"]) == "done", timeout=90, what="the new image done by polling")
    assert proc.proc.poll() is None
    assert proc.terminate() == 0
    assert APP_SECRET not in proc.output()
