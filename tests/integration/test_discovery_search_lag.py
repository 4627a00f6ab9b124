"""The products search index lags (../shared/reference/shopify/NOTES.md): a product changed a moment
ago may be missing from `products(query:)`. Incremental discovery reads again what changed
`[schedule] discover_overlap` before its cursor, so a change that reached the index late is still
found as long as the lag is shorter than the overlap. Longer, an incremental pass can miss it for
good; the product's webhook (a read by id, which does not go through the index) brings it, as do
its next change and `retouch resync`.

The Shopify sandbox (production profile: a 2 s lag for every change) runs on a pinned clock; one
product's change is made to reach the index 30 s late (`delay_search_index`), as the real index
catches up unevenly. Discovery runs in-process against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SHOP_TOKEN, FakeClock, config_text, run_async
from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.storage.models import ImageState
from retouch.sync.config import load_settings
from retouch.sync.pipeline import discover
from retouch.sync.runtime import open_context

INDEX_DELAY = 30.0  # the late product's change reaches the search index this long after it was made


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def lagging_shop(clock) -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2, profile="production", clock=clock)
    server = sandbox.start()
    yield sandbox
    server.stop()


def settings_with_overlap(shop, provider, tmp_path: Path, overlap: str):
    text = config_text(shop, provider, tmp_path, new_only=False).replace(
        'discover_overlap = "5s"', f'discover_overlap = "{overlap}"'
    )
    assert f'discover_overlap = "{overlap}"' in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path)


def scenario(shop: ShopifySandbox, clock: FakeClock, settings) -> dict[str, object]:
    """Two products; the late one changes at +10 s (indexed at +40 s), the other at +20 s (indexed
    at +22 s). Passes at +25 s and +45 s; then the late product's webhook pass."""
    early, late = shop.seed(products=2, images_per_product=1, seed=31)

    async def run():
        async with open_context(settings) as ctx:
            await discover(ctx)  # the first pass sets the cursor
            clock.advance(10)
            late_media = shop.add_image(late["legacy_id"], "late.jpg")["id"]
            shop.delay_search_index(late["legacy_id"], INDEX_DELAY)
            clock.advance(10)
            early_media = shop.add_image(early["legacy_id"], "early.jpg")["id"]
            clock.advance(5)
            await discover(ctx)
            seen = {
                "early_after_first": ctx.store.image_by_media(early_media) is not None,
                "late_after_first": ctx.store.image_by_media(late_media) is not None,
            }
            clock.advance(20)  # +45 s: the late change is in the index now
            await discover(ctx)
            seen["late_after_next"] = ctx.store.image_by_media(late_media) is not None
            await discover(ctx, product_ids=[late["id"]], live=True)  # the product's webhook
            row = ctx.store.image_by_media(late_media)
            seen["late_after_webhook"] = row is not None and row.state == ImageState.DISCOVERED
            return seen

    return run_async(run())


def test_a_change_indexed_within_the_overlap_is_found_by_the_next_pass(
    lagging_shop, clock, provider, tmp_path: Path
) -> None:
    seen = scenario(lagging_shop, clock, settings_with_overlap(lagging_shop, provider, tmp_path, "60s"))
    assert seen == {
        "early_after_first": True,
        "late_after_first": False,
        "late_after_next": True,
        "late_after_webhook": True,
    }


def test_a_change_indexed_later_than_the_overlap_is_missed_by_the_passes_and_found_by_the_webhook(
    lagging_shop, clock, provider, tmp_path: Path
) -> None:
    """The cursor moved past the late change (to the other product's, +20 s) before the index had
    it; +20 s minus a 5 s overlap is after +10 s, so the passes never ask for it again. The webhook's
    read by id finds it: nothing is lost where the product webhooks are on."""
    seen = scenario(lagging_shop, clock, settings_with_overlap(lagging_shop, provider, tmp_path, "5s"))
    assert seen == {
        "early_after_first": True,
        "late_after_first": False,
        "late_after_next": False,
        "late_after_webhook": True,
    }
