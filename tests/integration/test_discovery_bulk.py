"""Catalog-scale discovery through the pipeline: bulk export or pages, and every way an export ends.

Shopify here is the real sandbox over loopback HTTP, with its bulk operations scripted by
`bulk_testkit.BulkShop` (shaped like the captured answers) until the sandbox serves them itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import structlog

from bulk_testkit import BulkShop
from conftest import SHOP_TOKEN, config_text, run_async
from retouch.plugin.shopify.client import ShopifyClient
from retouch.storage.models import ImageState
from retouch.sync.config import load_settings
from retouch.sync.pipeline import bulk, discover
from retouch.sync.pipeline.context import BASELINE_RECORDED, CURSOR
from retouch.sync.runtime import open_context


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """The waits between polls and tries are seconds to minutes: recorded here, not slept."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(bulk, "_sleep", sleep)
    return slept


@pytest.fixture(autouse=True)
def logs():
    with structlog.testing.capture_logs() as captured:
        yield captured
    assert SHOP_TOKEN not in repr(captured)


def settings_for(shop, provider, tmp_path: Path, *, threshold: int, new_only: bool = False):
    path = tmp_path / "config.toml"
    text = config_text(shop, provider, tmp_path, new_only=new_only)
    path.write_text(text.replace("[shop]\n", f"[shop]\nbulk_threshold = {threshold}\n", 1))
    return load_settings(path)


def run_discovery(settings, fake: BulkShop, *passes: dict, before=None):
    """Discovery passes (keyword arguments of `discover` each) with Shopify behind `fake`;
    returns (counts of each pass, the store's states by media, meta)."""

    async def scenario():
        async with open_context(settings) as ctx:
            own = ctx.shopify
            ctx.shopify = ShopifyClient(settings.shop.url, SHOP_TOKEN, transport=httpx.MockTransport(fake))
            try:
                if before:
                    before(ctx)
                counts = [await discover(ctx, **options) for options in passes or ({},)]
                states = {row.media_id: row.state for row in ctx.store.images_in_state(*ImageState)}
                meta = {key: ctx.store.get_meta(key) for key in (CURSOR, BASELINE_RECORDED, bulk.BULK_OPERATION)}
                assert ctx.store.staged_line_count() == 0, "the staging table is emptied after each pass"
                return counts, states, meta
            finally:
                await ctx.shopify.aclose()
                ctx.shopify = own

    return run_async(scenario())


def media_of(shop) -> dict[str, tuple[str, int]]:
    return {m["id"]: (p["id"], i) for p in shop.products() for i, m in enumerate(p["media"])}


def test_bulk_export_in_any_order_is_joined_to_the_right_products(shop, provider, tmp_path):
    shop.seed(products=5, images_per_product=3, seed=21)
    fake = BulkShop(shop)
    lines = [json.loads(line) for line in fake.jsonl().splitlines()]
    first_line = {}
    for number, line in enumerate(lines):
        first_line.setdefault(line.get("__parentId", line["id"]), number)
    # Some product's media come before its own line, and products do not come in catalog order.
    assert any(first_line[line["id"]] < number for number, line in enumerate(lines) if "__parentId" not in line)
    assert [line["id"] for line in lines if "__parentId" not in line] != [p["id"] for p in shop.products()]
    settings = settings_for(shop, provider, tmp_path, threshold=5)

    async def rows():
        async with open_context(settings) as ctx:
            return {r.media_id: (r.product_id, r.position) for r in ctx.store.images_in_state(ImageState.DISCOVERED)}

    (counts,), states, meta = run_discovery(settings, fake)
    assert counts["bulk"] == 1 and counts["queued"] == 15 and counts["products"] == 5 and not counts["partial"]
    assert run_async(rows()) == media_of(shop)  # every media under its own product, at its position
    assert "ProductsPage" not in fake.calls and fake.calls.count("BulkProductsRun") == 1
    assert meta[CURSOR] and meta[BASELINE_RECORDED] and meta[bulk.BULK_OPERATION] is None


def test_a_store_below_the_threshold_is_paged(shop, provider, tmp_path):
    shop.seed(products=4, images_per_product=1, seed=22)
    fake = BulkShop(shop)
    (counts,), _, _ = run_discovery(settings_for(shop, provider, tmp_path, threshold=5), fake)
    assert counts["queued"] == 4 and not counts["bulk"]
    assert "ProductsCount" in fake.calls and "ProductsPage" in fake.calls and "BulkProductsRun" not in fake.calls


def test_incremental_passes_page_whatever_the_size(shop, provider, tmp_path):
    shop.seed(products=3, images_per_product=1, seed=23)
    fake = BulkShop(shop)
    (first, second), _, _ = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), fake, {}, {})
    assert first["bulk"] == 1 and not second["bulk"]
    assert fake.calls.count("BulkProductsRun") == 1 and fake.calls.count("ProductsCount") == 1


def test_lines_are_staged_in_batches_and_read_back_a_chunk_at_a_time(shop, provider, tmp_path, monkeypatch):
    shop.seed(products=6, images_per_product=4, seed=24)
    monkeypatch.setattr(bulk, "BATCH", 4)
    monkeypatch.setattr(bulk, "PRODUCTS_PER_READ", 2)
    batches: list[int] = []
    reads: list[int] = []
    from retouch.storage.store import Store

    stage, parents = Store.stage_bulk_lines, Store.staged_parents
    monkeypatch.setattr(
        Store, "stage_bulk_lines", lambda self, lines: (batches.append(len(lines)), stage(self, lines))[1]
    )
    monkeypatch.setattr(
        Store,
        "staged_parents",
        lambda self, after, limit: (lambda got: (reads.append(len(got)), got)[1])(parents(self, after, limit)),
    )
    (counts,), _, _ = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), BulkShop(shop))
    assert counts["queued"] == 24
    assert sum(batches) == 30 and max(batches) <= 4 and len([b for b in batches if b]) >= 8
    assert max(reads) <= 2 and sum(reads) == 6


def test_partial_data_is_processed_but_moves_no_cursor_and_closes_no_baseline(shop, provider, tmp_path, logs):
    shop.seed(products=6, images_per_product=2, seed=25)
    fake = BulkShop(shop, endings=[{"status": "FAILED", "partial": True, "error_code": "TIMEOUT"}])
    settings = settings_for(shop, provider, tmp_path, threshold=1)
    (partial, complete), states, meta = run_discovery(settings, fake, {}, {})
    assert partial["partial"] == 1 and 0 < partial["queued"] < 12
    warning = [e for e in logs if e["event"] == "bulk_partial"]
    assert warning and warning[0]["error_code"] == "TIMEOUT" and warning[0]["log_level"] == "warning"
    # The next pass had no cursor and no baseline to go by: a full pass again, which completes it.
    assert complete["bulk"] == 1 and not complete["partial"] and fake.calls.count("BulkProductsRun") == 2
    assert set(states) == set(media_of(shop)) and set(states.values()) == {"discovered"}
    assert meta[CURSOR] and meta[BASELINE_RECORDED]


def test_partial_data_takes_no_absent_media_for_deleted(shop, provider, tmp_path):
    shop.seed(products=6, images_per_product=2, seed=26)
    fake = BulkShop(shop, endings=[{"status": "FAILED", "partial": True, "error_code": "INTERNAL_SERVER_ERROR"}])
    settings = settings_for(shop, provider, tmp_path, threshold=100)
    holder = {}

    def paged_first(ctx):
        holder["ctx"] = ctx

    (paged, _), _, _ = run_discovery(settings, fake, {}, {}, before=paged_first)
    cursor_after_paging = None

    # Now a resync --all of a bigger-than-threshold store whose export fails half-way.
    settings = settings_for(shop, provider, tmp_path, threshold=1)

    async def resync():
        async with open_context(settings) as ctx:
            nonlocal cursor_after_paging
            cursor_after_paging = ctx.store.get_meta(CURSOR)
            ctx.shopify = ShopifyClient(settings.shop.url, SHOP_TOKEN, transport=httpx.MockTransport(fake))
            try:
                counts = await discover(ctx, full=True)
                return counts, ctx.store.counts_by_state(), ctx.store.get_meta(CURSOR)
            finally:
                await ctx.shopify.aclose()

    counts, by_state, cursor = run_async(resync())
    assert paged["queued"] == 12 and counts["partial"] == 1
    assert by_state == {"discovered": 12}  # nothing "media_deleted" for the lines that did not arrive
    assert cursor == cursor_after_paging


def test_a_failed_export_without_data_pages_instead(shop, provider, tmp_path, logs):
    shop.seed(products=3, images_per_product=2, seed=27)
    fake = BulkShop(shop, endings=[{"status": "FAILED", "error_code": "INTERNAL_SERVER_ERROR"}])
    (counts,), states, meta = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), fake)
    assert counts["queued"] == 6 and not counts["bulk"] and "ProductsPage" in fake.calls
    failed = [e for e in logs if e["event"] == "bulk_failed"]
    assert failed[0]["error_code"] == "INTERNAL_SERVER_ERROR" and failed[0]["then"] == "paging"
    assert meta[CURSOR] and meta[bulk.BULK_OPERATION] is None


def test_an_expired_operation_of_an_earlier_run_is_replaced_by_a_new_one(shop, provider, tmp_path):
    shop.seed(products=3, images_per_product=1, seed=28)
    old = "gid://shopify/BulkOperation/7000000000001"
    fake = BulkShop(shop, expired_ids={old})
    (counts,), _, meta = run_discovery(
        settings_for(shop, provider, tmp_path, threshold=1),
        fake,
        before=lambda ctx: ctx.store.set_meta(bulk.BULK_OPERATION, old),
    )
    assert counts["bulk"] == 1 and counts["queued"] == 3
    assert fake.calls[:2] == ["BulkOperation", "BulkProductsRun"]  # resumed, found EXPIRED, ran anew
    assert meta[bulk.BULK_OPERATION] is None


def test_an_operation_started_before_a_restart_is_polled_not_started_again(shop, provider, tmp_path):
    shop.seed(products=3, images_per_product=1, seed=29)
    fake = BulkShop(shop)
    earlier = fake._BulkProductsRun({})["bulkOperationRunQuery"]["bulkOperation"]["id"]
    (counts,), _, _ = run_discovery(
        settings_for(shop, provider, tmp_path, threshold=1),
        fake,
        before=lambda ctx: ctx.store.set_meta(bulk.BULK_OPERATION, earlier),
    )
    assert counts["bulk"] == 1 and counts["queued"] == 3
    assert "BulkProductsRun" not in fake.calls and "ProductsCount" not in fake.calls


def test_a_cut_off_download_is_read_again(shop, provider, tmp_path):
    shop.seed(products=4, images_per_product=2, seed=30)
    fake = BulkShop(shop, cut_downloads=1)
    (counts,), _, meta = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), fake)
    assert counts["queued"] == 8 and not counts["partial"] and fake.calls.count("download") == 2
    assert meta[CURSOR]


def test_a_download_cut_off_every_time_is_read_as_partial(shop, provider, tmp_path, logs):
    shop.seed(products=4, images_per_product=2, seed=31)
    fake = BulkShop(shop, cut_downloads=bulk.DOWNLOAD_TRIES)
    (counts,), _, meta = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), fake)
    assert counts["partial"] == 1 and counts["queued"] < 8 and fake.calls.count("download") == bulk.DOWNLOAD_TRIES
    assert [e["reason"] for e in logs if e["event"] == "discovery_partial"] == ["download_cut"]
    assert meta[CURSOR] is None and meta[BASELINE_RECORDED] is None


def test_operation_in_progress_waits_and_tries_again(shop, provider, tmp_path, quick):
    shop.seed(products=2, images_per_product=1, seed=32)
    fake = BulkShop(shop, in_progress=2)
    (counts,), _, _ = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), fake)
    assert counts["bulk"] == 1 and fake.calls.count("BulkProductsRun") == 3
    assert quick[:2] == [5.0, 15.0]


def test_operation_in_progress_for_too_long_pages_instead(shop, provider, tmp_path, logs):
    shop.seed(products=2, images_per_product=1, seed=33)
    fake = BulkShop(shop, in_progress=100)
    (counts,), _, _ = run_discovery(settings_for(shop, provider, tmp_path, threshold=1), fake)
    assert counts["queued"] == 2 and not counts["bulk"] and "ProductsPage" in fake.calls
    assert fake.calls.count("BulkProductsRun") == 6
    assert any(e["event"] == "bulk_busy" and e.get("then") == "paging" for e in logs)


def test_stopping_during_the_export_cancels_it_and_moves_nothing(shop, provider, tmp_path, quick):
    shop.seed(products=2, images_per_product=1, seed=34)
    fake = BulkShop(shop, never_ends=True)
    settings = settings_for(shop, provider, tmp_path, threshold=1)

    async def scenario():
        async with open_context(settings) as ctx:
            ctx.shopify = ShopifyClient(settings.shop.url, SHOP_TOKEN, transport=httpx.MockTransport(fake))
            try:
                task = asyncio.create_task(discover(ctx))
                while fake.calls.count("BulkOperation") < 3:
                    await asyncio.sleep(0.01)
                task.cancel()  # what the daemon's stop sequence does to a step past its grace
                with pytest.raises(asyncio.CancelledError):
                    await task
                return {key: ctx.store.get_meta(key) for key in (CURSOR, BASELINE_RECORDED, bulk.BULK_OPERATION)}
            finally:
                await ctx.shopify.aclose()

    meta = run_async(scenario())
    assert fake.calls[-1] == "BulkOperationCancel"
    assert list(fake.operations.values())[0]["node"]["status"] == "CANCELING"
    assert meta == {CURSOR: None, BASELINE_RECORDED: None, bulk.BULK_OPERATION: None}


# ----- against the sandbox's own bulk operations (real HTTP, lines in shuffled order)


@pytest.fixture
def bulk_shop():
    from retouch.plugin.shopify.sandbox import ShopifySandbox

    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2, bulk_any_order_seed=7)
    server = sandbox.start()
    yield sandbox
    server.stop()


def sandbox_discovery(settings, *passes: dict):
    async def scenario():
        async with open_context(settings) as ctx:
            counts = [await discover(ctx, **options) for options in passes or ({},)]
            rows = {r.media_id: (r.product_id, r.position) for r in ctx.store.images_in_state(*ImageState)}
            return counts, rows, ctx.store.get_meta(CURSOR)

    return run_async(scenario())


def test_the_sandbox_export_in_shuffled_order_is_joined_right(bulk_shop, provider, tmp_path, monkeypatch):
    bulk_shop.seed(products=6, images_per_product=3, seed=41)
    monkeypatch.setattr(bulk, "_sleep", asyncio.sleep)  # the sandbox's operations take real (short) time
    (counts,), rows, cursor = sandbox_discovery(settings_for(bulk_shop, provider, tmp_path, threshold=6))
    assert counts["bulk"] == 1 and counts["queued"] == 18 and cursor
    # Each media under its own product. (Not its position: this sandbox shuffles siblings too, and
    # no Media field carries a position — see bulk.py.)
    assert {m: p for m, (p, _) in rows.items()} == {m: p for m, (p, _) in media_of(bulk_shop).items()}


def test_the_sandbox_partial_export_then_a_cut_download(bulk_shop, provider, tmp_path, monkeypatch):
    bulk_shop.seed(products=6, images_per_product=2, seed=42)
    monkeypatch.setattr(bulk, "_sleep", asyncio.sleep)
    bulk_shop.add_fault(endpoint="bulk", mode="partial", code="TIMEOUT")
    settings = settings_for(bulk_shop, provider, tmp_path, threshold=1)
    (partial,), _, cursor = sandbox_discovery(settings)
    assert partial["partial"] == 1 and partial["queued"] < 12 and cursor is None
    bulk_shop.add_fault(endpoint="bulk_download", mode="truncated")
    (complete,), rows, cursor = sandbox_discovery(settings)
    assert complete["bulk"] == 1 and not complete["partial"] and cursor
    assert set(rows) == set(media_of(bulk_shop))
