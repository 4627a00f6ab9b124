"""Every image log event names the product by its title and the file by its name (issue 23: "logs name only
ids"); the title is read with the product (discovery, a bulk export, a webhook's pass) and follows a rename."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from conftest import cli, db_rows, pipeline_settings, run_async
from retouch.sync.pipeline import discover
from retouch.sync.runtime import open_context, run_until_settled

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def image_events(events: list[dict]) -> list[dict]:
    """retouch's events about an image (the sandboxes, in the same process, log bare numeric media ids)."""
    return [event for event in events if str(event.get("media_id", "")).startswith("gid://")]


def test_image_events_carry_the_title_and_a_rename_shows_the_new_one(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=2, images_per_product=1, seed=61)
    titles = {p["id"]: p["title"] for p in products}
    settings = pipeline_settings(shop, provider, tmp_path)

    async def first_pass() -> None:
        async with open_context(settings) as ctx:
            await discover(ctx)
            await run_until_settled(ctx)

    with capture_logs() as events:
        run_async(first_pass())
    named = image_events(events)
    assert {"queued", "item_enhanced", "backed_up", "written", "done"} <= {e["event"] for e in named}, named
    for event in named:
        assert event["product_title"] == titles[event["product_id"]], event
        assert event["filename"], event

    renamed = products[0]
    shop.update_product(renamed["legacy_id"], title="Linen Shirt, Spring Edition")
    shop.add_image(renamed["legacy_id"], filename="linen-back.jpg")

    async def after_rename() -> None:
        async with open_context(settings) as ctx:
            await discover(ctx)
            await run_until_settled(ctx)

    with capture_logs() as events:
        run_async(after_rename())
    new = [e for e in image_events(events) if e["product_id"] == renamed["id"]]
    assert new and {e["product_title"] for e in new} == {"Linen Shirt, Spring Edition"}, new
    # Every image of the renamed product carries the new title, the one done before the rename too.
    stored = db_rows(tmp_path / "retouch.db", "select product_title from image where product_id = ?", renamed["id"])
    assert [title for (title,) in stored] == ["Linen Shirt, Spring Edition"] * 2


def test_cli_log_lines_name_the_product(shop, provider, write_config) -> None:
    """Through the CLI, from a bulk export of the sandbox store (the title is in the export's lines too)."""
    products = shop.seed(products=2, images_per_product=1, seed=62)
    config = write_config(new_only=False)
    config.write_text(config.read_text().replace("[shop]\n", "[shop]\nbulk_threshold = 1\n", 1))
    done = cli("resync", "--all", "--yes", config=config)
    assert done.returncode == 0, done.stderr
    assert "read by bulk operation" in done.stdout, done.stdout
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    named = [line for line in lines if line["event"] in ("queued", "item_enhanced", "done")]
    assert len(named) == 6, lines
    assert {line["product_title"] for line in named} == {p["title"] for p in products}
    assert all(line["product_title"] in line["message"] and line["filename"] in line["message"] for line in named)
    status = json.loads(cli("status", "--json", config=config).stdout)
    assert status["counts"]["done"] == 2
