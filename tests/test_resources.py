"""Resources (issue 6, suite 4): a full backup disk and a locked database, with the real daemon.

The scenarios live in resources_harness.py (bench/resources.py runs them at full size)."""

from __future__ import annotations

from pathlib import Path

from resources_harness import database_locked, disk_full

from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox


def test_a_full_backup_disk_never_lets_an_original_be_replaced(tmp_path: Path, shop: ShopifySandbox,
                                                               provider: AigenSandbox) -> None:
    report = disk_full(tmp_path, shop, provider, products=8)
    # Real ENOSPC, partway through the batch: some originals fitted, some did not.
    assert report.backed_up_before_full >= 1, report
    assert report.no_space, f"no backup met 'no space left': {report}"
    assert report.problems == [], report.problems
    assert report.states == {"done": 8}, report.states  # once space was freed, every image went through
    assert report.tracebacks == 0 and report.exit_code == 0, report


def test_a_database_locked_for_30_s_is_waited_for(tmp_path: Path, shop: ShopifySandbox,
                                                  provider: AigenSandbox) -> None:
    report = database_locked(tmp_path, shop, provider, products=10, hold=30.0, watchdog=24.0)
    assert report.held_seconds >= 30.0, report
    assert report.busy_events >= 1, f"the daemon never met the lock: {report}"
    assert report.problems == [], report.problems
    assert report.states == {"done": 10}, report.states
    assert report.tracebacks == 0 and report.exit_code == 0, report
