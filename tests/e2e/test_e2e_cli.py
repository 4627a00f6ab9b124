"""End to end through the CLI: a real `retouch` subprocess, a real config file and SQLite file,
and the two sandboxes on loopback."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from conftest import PROFILES, PROVIDER_KEY, SHOP_TOKEN, cli, db_rows, image_states, marker_of, wait_for

# Every test here runs the real CLI with distinctive fake secrets; none may leak anywhere.
pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def media_of(shop, legacy_id: str) -> list[dict]:
    return shop.product(legacy_id)["media"]


def provider_images_charged(provider) -> int:
    return provider.stats()["keys"][PROVIDER_KEY]["images_charged"] if PROVIDER_KEY in provider.stats()["keys"] else 0


def wait_done(db: Path, media_ids: list[str], timeout: float = 60) -> None:
    wait_for(
        lambda: all(image_states(db).get(m) == "done" for m in media_ids),
        timeout,
        what=f"{media_ids} done (states: {image_states(db)})",
    )


@pytest.mark.parametrize("provider", PROFILES, indirect=True)  # the sandbox's shapes, and the real service's
def test_replace_mode_end_to_end(shop, provider, write_config, daemon, tmp_path: Path) -> None:
    products = shop.seed(products=3, images_per_product=1, seed=1)
    baseline = {p["legacy_id"]: media_of(shop, p["legacy_id"])[0] for p in products}
    config = write_config()
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(lambda: len(image_states(db)) == 3, 30, what="baseline recorded")
    assert set(image_states(db).values()) == {"baseline"}

    first, second = products[0]["legacy_id"], products[1]["legacy_id"]
    added_jpg = shop.add_image(first, filename="new-front.jpg", alt="Front, new")
    added_png = shop.add_image(second, filename="new-side.png", alt="Side, new")
    wait_done(db, [added_jpg["id"], added_png["id"]])

    for legacy_id, added in ((first, added_jpg), (second, added_png)):
        media = {m["id"]: m for m in media_of(shop, legacy_id)}
        now = media[added["id"]]
        # Replaced in place: same media id, position and alt text; new bytes; original format kept.
        assert now["position"] == added["position"] and now["alt"] == added["alt"]
        assert now["sha256"] != added["sha256"]
        assert now["mime_type"] == added["mime_type"]
        assert len(media) == 2
        marker = json.loads(marker_of(shop, legacy_id)["value"])
        assert added["id"] in marker["media_ids"]
        # The original is kept byte for byte in the backup store.
        sha = db_rows(db, "select backup_sha256 from image where media_id = ?", added["id"])[0][0]
        assert sha == added["sha256"]
        assert hashlib.sha256((tmp_path / "backups" / sha[:2] / sha).read_bytes()).hexdigest() == sha
    # Baseline images were never touched.
    for legacy_id, original in baseline.items():
        assert media_of(shop, legacy_id)[0]["sha256"] == original["sha256"]

    charged = provider_images_charged(provider)
    assert charged == 2
    # More discovery cycles (our writes bumped updatedAt) never re-enhance our output.
    time.sleep(4)
    assert provider_images_charged(provider) == charged
    assert run.terminate(timeout=10) == 0
    output = run.output()
    assert SHOP_TOKEN not in output and PROVIDER_KEY not in output
    events = run.events()
    assert any(e.get("event") == "starting" and e.get("mode") == "sandbox" for e in events)
    # Every event about an image names its product and media; from submission on, its job too.
    about_images = [e for e in events if "media_id" in e]
    assert {e["event"] for e in about_images} >= {"queued", "item_enhanced", "backed_up", "written", "done"}
    for event in about_images:
        assert event.get("product_id"), event
        if event["event"] in ("item_enhanced", "backed_up", "written", "done", "failed"):
            assert event.get("job_id"), event

    # A fresh database on the same store, processing everything that is not ours: the marker
    # keeps our two outputs from being sent again; only the three untouched originals go.
    fresh = write_config("fresh.toml", db_name="fresh.db", new_only=False)
    rerun = daemon(fresh)
    fresh_db = tmp_path / "fresh.db"
    wait_for(
        lambda: sum(1 for s in image_states(fresh_db).values() if s == "done") == 3,
        60,
        what="the three originals enhanced with a fresh DB",
    )
    assert provider_images_charged(provider) == charged + 3
    assert added_jpg["id"] not in image_states(fresh_db) and added_png["id"] not in image_states(fresh_db)
    outputs = {row[0] for row in db_rows(fresh_db, "select media_id from outputmedia")}
    assert {added_jpg["id"], added_png["id"]} <= outputs
    assert rerun.terminate(timeout=10) == 0


@pytest.mark.parametrize("provider", PROFILES, indirect=True)
def test_append_mode_end_to_end(shop, provider, write_config, daemon, tmp_path: Path) -> None:
    products = shop.seed(products=2, images_per_product=2, seed=2)
    config = write_config(mode="append")
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(lambda: len(image_states(db)) == 4, 30, what="baseline recorded")
    legacy_id = products[0]["legacy_id"]
    added = shop.add_image(legacy_id, filename="new.jpg", alt="New angle")
    shop.add_image(legacy_id, filename="later.jpg", alt="Later angle")
    wait_done(db, [added["id"]])
    wait_for(lambda: len(media_of(shop, legacy_id)) == 6, 30, what="two results appended")
    media = media_of(shop, legacy_id)
    ids = [m["id"] for m in media]
    output_id = db_rows(db, "select output_media_id from image where media_id = ?", added["id"])[0][0]
    # The result sits right after its original, which is kept unchanged.
    assert ids.index(output_id) == ids.index(added["id"]) + 1
    assert next(m for m in media if m["id"] == added["id"])["sha256"] == added["sha256"]
    assert next(m for m in media if m["id"] == output_id)["alt"] == "New angle"
    time.sleep(4)
    assert len(media_of(shop, legacy_id)) == 6  # no duplicate, no re-enhancement of the appended output
    assert provider_images_charged(provider) == 2
    assert run.terminate(timeout=10) == 0


def test_resync_dry_run_product_and_revert(shop, provider, write_config, tmp_path: Path) -> None:
    products = shop.seed(products=3, images_per_product=1, seed=3)
    config = write_config()
    db = tmp_path / "retouch.db"
    # No daemon: resync alone. A first full resync records the baseline (new_only) and sends nothing.
    first = cli("resync", "--yes", config=config)
    assert first.returncode == 0, first.stderr
    assert set(image_states(db).values()) == {"baseline"}

    target = products[1]["legacy_id"]
    original = media_of(shop, target)[0]
    before_db = db.read_bytes()
    dry = cli("resync", "--product", target, "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    assert "1 image(s) would be sent, 0 credits" in dry.stdout
    assert original["id"] in dry.stdout
    assert provider_images_charged(provider) == 0
    assert db.read_bytes() == before_db or image_states(db)[original["id"]] == "baseline"

    done = cli("resync", "--product", target, config=config)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "1 done" in done.stdout
    assert image_states(db)[original["id"]] == "done"
    assert media_of(shop, target)[0]["sha256"] != original["sha256"]
    assert provider_images_charged(provider) == 1
    assert media_of(shop, products[0]["legacy_id"])[0]["sha256"] != ""  # untouched products stay baseline
    assert image_states(db)[media_of(shop, products[0]["legacy_id"])[0]["id"]] == "baseline"

    reverted = cli("revert", "--product", target, config=config)
    assert reverted.returncode == 0, reverted.stderr
    wait_for(lambda: media_of(shop, target)[0]["status"] == "READY", 10)
    assert media_of(shop, target)[0]["sha256"] == original["sha256"]  # byte-identical original
    assert media_of(shop, target)[0]["id"] == original["id"]
    marker = marker_of(shop, target)
    assert marker is None or original["id"] not in json.loads(marker["value"])["media_ids"]
    assert image_states(db)[original["id"]] == "reverted"

    status = cli("status", "--json", config=config)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["counts"]["reverted"] == 1 and report["counts"]["baseline"] == 2


def test_usage_errors_exit_2(write_config) -> None:
    config = write_config()
    assert cli("resync", "--product", "not-a-number", config=config).returncode == 2
    assert cli("revert", config=config).returncode == 2
    assert cli("frobnicate").returncode == 2
