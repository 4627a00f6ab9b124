"""`resync --dry-run` plans from reads alone (issue 21): no copy of the database, no bulk export, no file
written; its plan is discovery's own (pipeline/discover_plan.py), tested here without I/O too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import SHOP_TOKEN, cli, config_text
from retouch.plugin.shopify.models import Media, Product
from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.storage.models import ImageState
from retouch.sync.pipeline.discover_plan import (
    DiscoverOptions,
    Excluded,
    MediaGone,
    NewRow,
    RecordOutput,
    Requeue,
    RuleSkip,
    plan_product,
)
from retouch.sync.resync_plan import per_product_estimate, to_send, unread_to_send

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


# ---------------------------------------------------------------------- the plan, without I/O


def media(n: int, filename: str = "shoe.jpg", content_type: str = "IMAGE") -> Media:
    return Media(
        id=f"gid://shopify/MediaImage/{n}",
        content_type=content_type,
        status="READY",
        url=f"https://cdn.example/{filename}?v=1",
        original_url=None,
        mime_type="image/jpeg",
        alt=f"alt {n}",
        width=64,
        height=64,
        errors=(),
        updated_at=None,
    )


def product(*items: Media, tags: tuple[str, ...] = (), marker: frozenset[str] = frozenset()) -> Product:
    return Product(
        id="gid://shopify/Product/1",
        legacy_id=1,
        title="Red shoe",
        tags=tags,
        updated_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
        media=items,
        marker_media_ids=marker,
        marker_digest=None,
    )


def row(image_id: int, n: int, state: ImageState, rule: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        id=image_id,
        media_id=f"gid://shopify/MediaImage/{n}",
        product_id="gid://shopify/Product/1",
        state=state,
        rule=rule,
        source_url=f"https://cdn.example/{n}.jpg",
    )


def test_plan_product_says_what_discovery_does_with_each_media() -> None:
    shoe = product(
        media(1),
        media(2, "retouch-2.jpg"),
        media(3),
        media(4, content_type="VIDEO"),
        media(5),
        marker=frozenset({"gid://shopify/MediaImage/6"}),
    )
    rows = {m: r for r in (row(10, 3, ImageState.FAILED), row(11, 5, ImageState.DONE)) for m in [r.media_id]}
    gone = row(12, 9, ImageState.DISCOVERED)  # queued, then deleted by the merchant
    options = DiscoverOptions(first_run=False, new_only=True, requeue=(ImageState.FAILED, ImageState.SKIPPED))
    actions = plan_product(shoe, rows, [*rows.values(), gone], set(), options)
    assert [type(a) for a in actions] == [NewRow, RecordOutput, Requeue, MediaGone]
    new, output, requeue, deleted = actions
    assert new.state is ImageState.DISCOVERED and new.fields["media_id"].endswith("/1") and new.fields["position"] == 0
    assert output.media_id.endswith("/2") and output.new
    assert (requeue.image_id, requeue.was) == (10, "failed")
    assert requeue.fields == {
        "source_url": "https://cdn.example/shoe.jpg?v=1",
        "position": 2,
        "alt": "alt 3",
        "rule": None,
        "product_title": shoe.title,  # a rename shows in the requeued image's messages
    }  # the requeue transition clears the rest (storage/lifecycle.py)
    assert deleted.image_id == 12 and deleted.fields["error_code"] == "media_deleted"
    # Done rows come back only when the pass asks for them (resync --force); the first run records a baseline.
    back = plan_product(
        shoe,
        rows,
        list(rows.values()),
        set(),
        DiscoverOptions(first_run=True, new_only=True, requeue=(ImageState.DONE,)),
    )
    assert [type(a) for a in back] == [NewRow, RecordOutput, Requeue]
    assert back[0].state is ImageState.BASELINE and back[2].image_id == 11
    # An excluded tag keeps new media out, and tracked rows stay as they are.
    excluded = plan_product(
        product(media(1), media(3), tags=("No-Retouch",)),
        rows,
        [],
        set(),
        DiscoverOptions(first_run=False, new_only=False, exclude_tags=["no-retouch"], requeue=(ImageState.FAILED,)),
    )
    assert [type(a) for a in excluded] == [Excluded]


def test_plan_product_records_a_rules_skip_once() -> None:
    from retouch.sync.rules import Rule, RuleSettings

    rule = Rule(number=1, settings=RuleSettings(tags=["sale"], skip=True))
    shoe = product(media(1), media(3), tags=("sale",))
    options = DiscoverOptions(
        first_run=False,
        new_only=False,
        rules=[rule],
        provider_name="aigenstudio",
        requeue=(ImageState.FAILED, ImageState.SKIPPED),
    )
    actions = plan_product(shoe, {"gid://shopify/MediaImage/3": row(10, 3, ImageState.FAILED)}, [], set(), options)
    new, skip = actions
    assert isinstance(new, NewRow) and new.state is ImageState.SKIPPED and new.fields["error_code"] == "rule_skip"
    assert isinstance(skip, RuleSkip) and skip.was == "failed" and skip.fields["error_code"] == "rule_skip"
    already = row(10, 3, ImageState.SKIPPED, rule=skip.fields["rule"])
    (_, again) = plan_product(shoe, {already.media_id: already}, [], set(), options)
    assert isinstance(again, RuleSkip) and again.fields is None  # nothing to write a second time


def test_to_send_orders_as_the_queue_sends() -> None:
    waiting = [row(3, 30, ImageState.DISCOVERED), row(7, 70, ImageState.DISCOVERED)]
    gone = MediaGone(7, "gid://shopify/MediaImage/70", {})
    back = Requeue(5, "gid://shopify/MediaImage/50", "failed", {"source_url": "u"})
    new = NewRow({"media_id": "gid://shopify/MediaImage/1", "state": ImageState.DISCOVERED})
    skipped = NewRow({"media_id": "gid://shopify/MediaImage/2", "state": ImageState.SKIPPED})
    plan = to_send(waiting, [("gid://shopify/Product/1", [new, back, skipped, gone])])
    assert [(i.image_id, i.how) for i in plan] == [(3, "waiting"), (5, "requeued"), (None, "queued")]


def test_counts_for_what_the_plan_did_not_read() -> None:
    by_state = {"baseline": 100, "failed": 4, "discovered": 2, "done": 50}
    read = {"baseline": 1, "discovered": 2}
    assert unread_to_send(by_state, read, (ImageState.FAILED, ImageState.BASELINE)) == 99 + 4
    assert unread_to_send(by_state, read, ()) == 0
    assert per_product_estimate(48, 16, 100_000) == 300_000
    assert per_product_estimate(0, 0, 10) == 0


# ---------------------------------------------------------------------- through the CLI


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (but configs) with its size and mtime."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".toml"
    }


@pytest.fixture
def big_shop() -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    sandbox.seed_catalog(100_000, 3, seed=1, spread_seconds=200_000.0)
    server = sandbox.start()
    yield sandbox
    server.stop()


def test_dry_run_on_100k_products_plans_without_a_bulk_export_or_a_file(big_shop, provider, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text(big_shop, provider, tmp_path))  # new_only = true; no database yet
    before = files_of(tmp_path)

    everything = cli("resync", "--all", "--dry-run", config=config, timeout=300)
    assert everything.returncode == 0, everything.stderr
    assert (
        "plan: 100000 product(s) in the store; the run reads them by bulk export, this plan read 16 of them "
        "page by page"
    ) in everything.stdout
    assert (
        "dry run: about 300000 image(s) would be sent, 0 credits (sandbox: free); nothing was sent" in everything.stdout
    )
    assert (
        "cost and time: 300000 image(s), 0 credits (sandbox: free); about 12000 h at 25 images an hour"
        in everything.stdout
    )
    assert "would send" not in everything.stdout  # counted, not listed

    first = cli("resync", "--dry-run", config=config, timeout=300)  # a first run only records the baseline
    assert first.returncode == 0, first.stderr
    assert "would record about 300000 image(s) as the baseline" in first.stdout
    assert "dry run: 0 image(s) would be sent" in first.stdout

    stats = big_shop.stats()["operations"]
    assert "BulkProductsRun" not in stats and big_shop.store.bulk.by_id == {}
    assert stats["ProductsPage"] == 2 and stats["ProductsCount"] == 2  # one page each, and the count
    assert files_of(tmp_path) == before  # absent stays absent: no database, no -wal, no copy
    assert not any(name.startswith("retouch.db") for name in os.listdir(tmp_path))


def test_dry_run_past_the_bulk_threshold_reads_what_changed_and_counts_the_rest(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=20, images_per_product=1, seed=41, spread_seconds=2000)  # one every 100 s
    config = tmp_path / "config.toml"
    config.write_text(config_text(shop, provider, tmp_path).replace("[shop]\n", "[shop]\nbulk_threshold = 5\n", 1))
    first = cli("resync", "--yes", config=config)  # the real first run: a bulk export, the baseline recorded
    assert first.returncode == 0, first.stderr
    assert shop.stats()["operations"]["BulkProductsRun"] == 1
    changed = products[3]
    added = shop.add_image(changed["legacy_id"], filename="new-angle.jpg")  # the merchant adds one picture
    pages = shop.stats()["operations"].get("ProductsPage", 0)
    before = files_of(tmp_path)
    assert "retouch.db" in before

    everything = cli("resync", "--all", "--dry-run", config=config)
    assert everything.returncode == 0, everything.stderr
    # Read page by page: the changed product (its baseline and the new picture) and the newest seeded one
    # (within [schedule] discover_overlap of the cursor); the other 18 products' baseline rows counted.
    assert "this plan read 2 of them page by page and counted the rest in the database" in everything.stdout
    assert "dry run: at most 21 image(s) would be sent" in everything.stdout
    assert f"would send {changed['id']} {added['id']} " in everything.stdout

    new_only = cli("resync", "--dry-run", config=config)
    assert new_only.returncode == 0, new_only.stderr
    assert "dry run: 1 image(s) would be sent" in new_only.stdout and added["id"] in new_only.stdout

    named = cli("resync", "--product", products[0]["legacy_id"], "--dry-run", config=config)
    assert "dry run: 1 image(s) would be sent" in named.stdout

    assert shop.stats()["operations"]["BulkProductsRun"] == 1  # the dry runs started none
    assert shop.stats()["operations"]["ProductsPage"] == pages + 2  # only what changed since the last pass
    assert files_of(tmp_path) == before  # the database's bytes and mtime, and no file beside it
