"""Resources (issue 6, suite 4): a full backup disk and a locked database, with the real daemon.

The scenarios live in resources_harness.py (bench/resources.py runs them at full size)."""

from __future__ import annotations

from pathlib import Path

from resources_harness import database_locked, disk_full
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox


def test_a_full_backup_disk_never_lets_an_original_be_replaced(
    tmp_path: Path, shop: ShopifySandbox, provider: AigenSandbox
) -> None:
    report = disk_full(tmp_path, shop, provider, products=8)
    # Real ENOSPC, partway through the batch: some originals fitted, some did not.
    assert report.backed_up_before_full >= 1, report
    assert report.no_space, f"no backup met 'no space left': {report}"
    assert report.problems == [], report.problems
    assert report.states == {"done": 8}, report.states  # once space was freed, every image went through
    assert report.tracebacks == 0 and report.exit_code == 0, report


def test_a_database_locked_for_30_s_is_waited_for(tmp_path: Path, shop: ShopifySandbox, provider: AigenSandbox) -> None:
    report = database_locked(tmp_path, shop, provider, products=10, hold=30.0, watchdog=24.0)
    assert report.held_seconds >= 30.0, report
    assert report.busy_events >= 1, f"the daemon never met the lock: {report}"
    assert report.problems == [], report.problems
    assert report.states == {"done": 10}, report.states
    assert report.tracebacks == 0 and report.exit_code == 0, report


def test_the_daemons_writability_probe_sees_another_processs_lock(tmp_path: Path) -> None:
    """What the daemon asks before each step (in a thread when it may wait): False while another
    connection holds BEGIN EXCLUSIVE, True once it is released; the probe itself holds nothing."""
    import sqlite3

    from retouch.storage.store import Store

    store = Store(f"sqlite:///{tmp_path / 'retouch.db'}", busy_timeout=0.5)
    other = sqlite3.connect(tmp_path / "retouch.db", isolation_level=None, timeout=0)
    try:
        assert store.wait_writable(0)
        other.execute("BEGIN EXCLUSIVE")  # would fail at once if the probe had kept the lock
        assert not store.wait_writable(0.2)
        other.execute("COMMIT")
        assert store.wait_writable(0)
        store.set_meta("after", "probe")  # the store's own writes are not blocked by its probe
        other.execute("BEGIN EXCLUSIVE")
        other.execute("COMMIT")
    finally:
        other.close()
        store.close()
