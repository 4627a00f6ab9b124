"""Review before publish, end to end through the CLI: a real daemon and real `retouch review`
subprocesses, a real config and SQLite file, the two sandboxes on loopback.

Approve one, reject one, redo one: the Shopify sandbox then holds exactly the approved result (the
very bytes that were reviewed), the rejected original untouched, the redone one charged once more
(and waiting for review again), and nothing else was written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import PROVIDER_KEY, cli, db_rows, image_states, wait_for

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

REVIEW_ON = '\n[review]\nmode = "all"\n'


def charged(provider) -> int:
    return provider.stats()["keys"].get(PROVIDER_KEY, {}).get("images_charged", 0)


def image_id(db: Path, media_id: str) -> int:
    return db_rows(db, "select id from image where media_id = ?", media_id)[0][0]


def test_approve_reject_redo_through_the_cli(shop, provider, write_config, daemon, tmp_path: Path) -> None:
    products = shop.seed(products=3, images_per_product=1, seed=5)
    config = write_config(extra=REVIEW_ON)
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(lambda: len(image_states(db)) == 3, 30, what="baseline recorded")
    added = [shop.add_image(p["legacy_id"], filename=f"new-{n}.jpg", alt=f"new {n}") for n, p in enumerate(products)]
    media = [a["id"] for a in added]
    wait_for(
        lambda: all(image_states(db).get(m) == "awaiting_review" for m in media),
        90,
        what=f"results waiting for review ({image_states(db)})",
    )
    assert charged(provider) == 3
    # Nothing in the store changed: every picture is still the merchant's, and nothing was written.
    assert shop.writes() == []
    for product, original in zip(products, added, strict=True):
        now = {m["id"]: m for m in shop.product(product["legacy_id"])["media"]}
        assert now[original["id"]]["sha256"] == original["sha256"]

    listed = cli("review", "list", config=config)
    assert listed.returncode == 0, listed.stderr
    ids = [image_id(db, m) for m in media]
    for number in ids:
        assert f"#{number} " in listed.stdout
    assert "aigenstudio" in listed.stdout and "3 image(s) wait for review" in listed.stdout
    assert listed.stdout.count("after: ") == 3 and "(not on disk)" not in listed.stdout

    kept = {m: db_rows(db, "select result_sha256 from image where media_id = ?", m)[0][0] for m in media}
    approved, rejected, redone = ids
    result = cli("review", "approve", str(approved), config=config)
    assert result.returncode == 0 and "approved 1 image(s)" in result.stdout, result.stdout + result.stderr
    result = cli("review", "reject", "--product", products[1]["legacy_id"], "--reason", "label cut off", config=config)
    assert result.returncode == 0 and "rejected 1 image(s)" in result.stdout, result.stdout + result.stderr
    # A redo says what it costs first, and without a terminal it needs --yes.
    asked = cli("review", "redo", str(redone), "--preset", "marketplace_clean_catalog", config=config)
    assert asked.returncode == 2 and "confirm with --yes" in asked.stderr
    assert "1 image(s)" in asked.stderr and "credits" in asked.stderr
    result = cli("review", "redo", str(redone), "--preset", "marketplace_clean_catalog", "--yes", config=config)
    assert result.returncode == 0 and "queued again 1 image(s)" in result.stdout, result.stdout + result.stderr
    # A second decision on a decided image is refused with the reason, exit 1.
    again = cli("review", "approve", str(rejected), config=config)
    assert again.returncode == 1 and "already rejected (label cut off)" in again.stderr

    wait_for(lambda: image_states(db).get(media[0]) == "done", 60, what=f"approved one done ({image_states(db)})")
    wait_for(
        lambda: charged(provider) == 4 and image_states(db).get(media[2]) == "awaiting_review",
        60,
        what=f"the redo enhanced and waiting again ({image_states(db)})",
    )
    assert run.terminate(timeout=15) == 0

    states = image_states(db)
    assert [states[m] for m in media] == ["done", "rejected", "awaiting_review"]
    assert db_rows(db, "select review_note from image where media_id = ?", media[1])[0][0] == "label cut off"
    # Exactly one write: the approved result, the bytes that were reviewed (kept, not downloaded again).
    writes = shop.writes()
    assert [(w["media_id"], w["sha256"]) for w in writes] == [(int(str(media[0]).rsplit("/", 1)[-1]), kept[media[0]])]
    approved_now = {m["id"]: m for m in shop.product(products[0]["legacy_id"])["media"]}[media[0]]
    assert approved_now["sha256"] == kept[media[0]]
    for product, original in zip(products[1:], added[1:], strict=True):
        now = {m["id"]: m for m in shop.product(product["legacy_id"])["media"]}
        assert now[original["id"]]["sha256"] == original["sha256"]
    # The redo was one more paid job, with the preset asked for; the approved and rejected ones were not sent again.
    enhancements = provider.enhancements()
    assert sum(len(e["external_ids"]) for e in enhancements) == 4
    assert len(enhancements[-1]["external_ids"]) == 1 and enhancements[-1]["preset"] == "marketplace_clean_catalog"
    assert all(e["preset"] != "marketplace_clean_catalog" for e in enhancements[:-1])
    assert db_rows(db, "select paid_attempts from image where media_id = ?", media[2])[0][0] == 2
    new_result = db_rows(db, "select result_sha256 from image where media_id = ?", media[2])[0][0]
    path = tmp_path / "backups" / "results" / new_result[:2] / new_result
    assert hashlib.sha256(path.read_bytes()).hexdigest() == new_result
