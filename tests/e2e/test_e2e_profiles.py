"""The real daemon (a `retouch run` subprocess, a real config and SQLite file) against the Shopify
sandbox in both its profiles (`default`; `production`: partial fileUpdate, silent reorder, a lagging
search index, as the real Shopify was recorded), in both write-back modes. The rest of the
end-to-end tests run on the default profile; `RETOUCH_TEST_SHOPIFY_PROFILE=production` runs them
on the production one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PROVIDER_KEY, SHOP_TOKEN, config_text, db_rows, image_states, marker_of, wait_for
from retouch.plugin.shopify.sandbox import ShopifySandbox
from test_shopify_webhooks_daemon import APP_SECRET, ENV, events_named
from test_shopify_webhooks_daemon import write_config as hooked_config

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


@pytest.fixture(params=["default", "production"])
def profiled_shop(request) -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2, profile=request.param)
    server = sandbox.start()
    yield sandbox
    server.stop()


def charged(provider) -> int:
    keys = provider.stats()["keys"]
    return keys[PROVIDER_KEY]["images_charged"] if PROVIDER_KEY in keys else 0


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_new_photos_are_written_back_once(profiled_shop, provider, daemon, tmp_path: Path, mode: str) -> None:
    """Two new photos on one product (one shared write in replace mode) and one on another: each is
    enhanced once, written where it belongs, named in the marker; nothing else changes."""
    shop = profiled_shop
    products = shop.seed(products=2, images_per_product=1, seed=51)
    config = tmp_path / "config.toml"
    config.write_text(config_text(shop, provider, tmp_path, mode=mode))
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(lambda: len(image_states(db)) == 2, 30, what="baseline recorded")
    first, second = products[0]["legacy_id"], products[1]["legacy_id"]
    added = {
        first: [
            shop.add_image(first, filename="front.jpg", alt="Front"),
            shop.add_image(first, filename="side.png", alt="Side"),
        ],
        second: [shop.add_image(second, filename="back.jpg", alt="Back")],
    }
    new_ids = [a["id"] for photos in added.values() for a in photos]
    wait_for(
        lambda: all(image_states(db).get(m) == "done" for m in new_ids),
        90,
        what=f"new photos done on the {shop.profile} profile (states: {image_states(db)})",
    )

    for legacy_id, photos in added.items():
        media = shop.product(legacy_id)["media"]
        ids = [m["id"] for m in media]
        assert len(media) == 1 + len(photos) * (2 if mode == "append" else 1)  # no duplicate
        marker = json.loads(marker_of(shop, legacy_id)["value"])["media_ids"]
        for photo in photos:
            (output_id,) = db_rows(db, "select output_media_id from image where media_id = ?", photo["id"])[0]
            now = next(m for m in media if m["id"] == output_id)
            assert now["sha256"] != photo["sha256"] and now["alt"] == photo["alt"]
            if mode == "replace":
                assert output_id == photo["id"] and ids.index(output_id) == photo["position"]
            else:
                assert ids.index(output_id) == ids.index(photo["id"]) + 1
            assert output_id in marker
    assert charged(provider) == 3
    time.sleep(3)  # more discovery passes (our writes bumped updatedAt) send nothing again
    assert charged(provider) == 3
    assert run.terminate(timeout=10) == 0


def test_on_the_production_profile_a_loopback_webhook_address_is_refused_and_the_daemon_polls(
    provider, daemon, tmp_path: Path
) -> None:
    """Shopify refuses a webhook address on an internal host ("Address cannot be a Shopify or an
    internal domain"); the daemon says so and discovers by polling (its search lags, not long)."""
    shop = ShopifySandbox(
        access_token=SHOP_TOKEN, processing_seconds=0.2, webhook_secret=APP_SECRET, profile="production"
    )
    server = shop.start()
    try:
        product = shop.add_product("Linen shirt", images=[{"filename": "shirt.jpg"}])
        db = tmp_path / "retouch.db"
        run = daemon(hooked_config(shop, provider, tmp_path, discover_every="1s"), env=ENV)
        wait_for(lambda: events_named(run, "shopify_webhooks_not_registered"), 60, what="the refusal logged")
        (refused,) = events_named(run, "shopify_webhooks_not_registered")
        assert "Address cannot be a Shopify or an internal domain" in refused["reason"]
        assert shop.webhook_subscriptions() == []
        wait_for(lambda: "baseline" in image_states(db).values(), 30, what="the baseline")
        media = shop.add_image(product["legacy_id"], "shirt-back.jpg")
        wait_for(lambda: image_states(db).get(media["id"]) == "done", 90, what="the new image done by polling")
        assert run.terminate(timeout=10) == 0
    finally:
        shop.stop()
        server.stop()
