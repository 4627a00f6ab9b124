"""[backup] keep: `retouch backups`, `retouch backups prune [--dry-run]`, status's disk line, and a
revert of a pruned image. Through the CLI as a subprocess, on a real config and SQLite file."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import cli, db_rows, image_states
from retouch.storage.backups import BackupStore, Holder, prunable_digests
from retouch.storage.store import Store

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

DAY = 86400.0


def test_the_policy_lets_an_original_go_only_when_every_image_holding_it_may() -> None:
    old_done = Holder("a", "done", done_before=True, reverted=False)
    assert prunable_digests([old_done]) == {"a"}
    assert prunable_digests([Holder("a", "done", done_before=False, reverted=False)]) == set()  # too recent
    assert prunable_digests([Holder("a", "done", done_before=True, reverted=True)]) == set()  # once reverted
    for state in ("reverted", "failed", "backed_up", "written", "discovered", "submitted", "enhanced"):
        assert prunable_digests([Holder("a", state, done_before=True, reverted=False)]) == set(), state
    # Shared (same bytes): one image that must keep it keeps it for all, in any order.
    keeper = Holder("a", "backed_up", done_before=True, reverted=False)
    assert prunable_digests([old_done, keeper]) == set() == prunable_digests([keeper, old_done])
    assert prunable_digests([old_done, Holder("a", "done", True, False), Holder("b", "failed", True, False)]) == {"a"}


def _seed(db: Path, backups: Path) -> dict[str, str]:
    """Images in every situation the policy must tell apart; returns name -> sha256 of its original."""
    store = Store(f"sqlite:///{db}")
    files = BackupStore(backups)
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(days=60), now - timedelta(days=1)
    shas = {}
    rows = [  # name, state, last change, reverted_at, bytes (same bytes = one shared file)
        ("old_done", "done", old, None, b"A"),
        ("recent_done", "done", recent, None, b"B"),
        ("reverted_then_done", "done", old, time.time() - 50 * DAY, b"C"),
        ("reverted", "reverted", old, time.time() - 50 * DAY, b"D"),
        ("failed", "failed", old, None, b"E"),
        ("shared_done", "done", old, None, b"F"),
        ("shared_in_flight", "backed_up", old, None, b"F"),
        ("twin_one", "done", old, None, b"G"),
        ("twin_two", "done", old, None, b"G"),
        ("touched_now", "done", old, None, b"I"),
    ]
    for n, (name, state, changed, reverted_at, data) in enumerate(rows):
        sha = files.put(data * 1000)
        shas[name] = sha
        store.insert_image(
            media_id=f"gid://shopify/MediaImage/{n}",
            product_id=f"gid://shopify/Product/{n}",
            product_legacy_id=str(n),
            state=state,
            backup_sha256=sha,
            updated_at=changed,
            reverted_at=reverted_at,
        )
    shas["orphan"] = files.put(b"H" * 1000)  # a file no row refers to: not ours to judge
    store.close()
    long_ago = time.time() - 60 * DAY
    for name, sha in shas.items():
        if name != "touched_now":  # its bytes were just put again for a new image: left for the next prune
            os.utime(files.path_for(sha), (long_ago, long_ago))
    return shas


def test_prune_deletes_only_what_the_policy_lets_go(write_config, tmp_path: Path) -> None:
    config = write_config(extra='[backup]\nkeep = "30d"\n')
    db, backups = tmp_path / "retouch.db", tmp_path / "backups"
    shas = _seed(db, backups)
    files = BackupStore(backups)

    summary = cli("backups", "--json", config=config)
    assert summary.returncode == 0, summary.stderr
    report = json.loads(summary.stdout)
    assert report["count"] == 9 and report["bytes"] == 9000 and report["keep"] == "30d"
    assert report["prunable"] == 2 and report["prunable_bytes"] == 2000 and report["free_bytes"] > 0
    shown = cli("backups", config=config)
    assert (
        "9 original(s), 9000 bytes" in shown.stdout
        and "2 original(s), 2000 bytes (2.0 kB) may be pruned" in shown.stdout
    )

    dry = cli("backups", "prune", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2 original(s), 2000 bytes" in dry.stdout
    assert shas["old_done"][:12] in dry.stdout and shas["twin_one"][:12] in dry.stdout
    assert all(files.has(sha) for sha in shas.values())  # a dry run deletes nothing
    assert db_rows(db, "select count(*) from image where backup_pruned_at is not null") == [(0,)]

    done = cli("backups", "prune", config=config)
    assert done.returncode == 0, done.stderr
    assert "deleted 2 original(s), 2000 bytes" in done.stdout
    gone = {name for name, sha in shas.items() if not files.path_for(sha).exists()}
    assert gone == {"old_done", "twin_one", "twin_two"}  # the twins share one file
    pruned = {row[0] for row in db_rows(db, "select media_id from image where backup_pruned_at is not null")}
    assert pruned == {"gid://shopify/MediaImage/0", "gid://shopify/MediaImage/7", "gid://shopify/MediaImage/8"}

    again = cli("backups", "prune", config=config)
    assert "deleted 0 original(s)" in again.stdout
    status = json.loads(cli("status", "--json", config=config).stdout)
    assert status["backups"]["bytes"] == 7000 and status["backups"]["free_bytes"] > 0
    assert "backups: 7.0 kB in" in cli("status", config=config).stdout


def test_keep_forever_prunes_nothing(write_config, tmp_path: Path) -> None:
    config = write_config()
    shas = _seed(tmp_path / "retouch.db", tmp_path / "backups")
    assert "keep = forever: no original is ever pruned" in cli("backups", config=config).stdout
    done = cli("backups", "prune", config=config)
    assert done.returncode == 0 and "nothing to prune" in done.stdout
    assert all(BackupStore(tmp_path / "backups").has(sha) for sha in shas.values())


def test_a_bad_keep_is_one_line_naming_the_key(write_config) -> None:
    config = write_config(extra='[backup]\nkeep = "always"\n')
    done = cli("backups", config=config)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("config error: [backup] keep:") and "forever" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_revert_of_a_pruned_image_says_when_its_original_went(shop, provider, write_config, tmp_path: Path) -> None:
    products = shop.seed(products=1, images_per_product=1, seed=24)
    config = write_config(extra='[backup]\nkeep = "30d"\n', new_only=False)
    db = tmp_path / "retouch.db"
    legacy_id = products[0]["legacy_id"]
    done = cli("resync", "--product", legacy_id, "--yes", config=config)
    assert done.returncode == 0, done.stderr + done.stdout
    media_id, sha = db_rows(db, "select media_id, backup_sha256 from image")[0]
    assert image_states(db)[media_id] == "done"
    assert "0 original(s)" in cli("backups", "prune", config=config).stdout  # done just now: kept

    # Forty days later (the row's last change and the file's, moved back).
    then = datetime.now(timezone.utc) - timedelta(days=40)
    db_rows(db, "update image set updated_at = ?", then.strftime("%Y-%m-%d %H:%M:%S.%f"))
    path = BackupStore(tmp_path / "backups").path_for(sha)
    os.utime(path, (then.timestamp(), then.timestamp()))
    assert "deleted 1 original(s)" in cli("backups", "prune", config=config).stdout
    assert not path.exists()

    reverted = cli("revert", "--product", legacy_id, config=config)
    assert reverted.returncode == 1
    today = datetime.now(timezone.utc).date().isoformat()
    assert f"its original was pruned on {today}" in reverted.stderr
    assert shop.product(legacy_id)["title"] in reverted.stderr
    assert image_states(db)[media_id] == "done"  # nothing changed in Shopify or in the row
