"""Crash anywhere, small: the real daemon killed with SIGKILL at seeded random moments and
restarted, on a sandbox store; afterwards every image is final, no product has a duplicate or a
missing media, no image was charged twice, and every original is kept. The full-size run (200
images, 25+ kills) is bench/crash_anywhere.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from crash_harness import check_promises, crash_anywhere, two_installations


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_kill_9_anywhere_keeps_every_promise(shop, provider, tmp_path: Path, mode: str) -> None:
    report = crash_anywhere(tmp_path, shop, provider, products=12, kills=6, seed=7, mode=mode)
    print(report.line())
    assert report.problems == [] and report.tracebacks == 0
    assert report.states == {"done": 12}

    # The check is not blind: a duplicate on one product is reported.
    legacy_id = next(iter(report.originals))
    shop.add_image(legacy_id, filename="stray.jpg", alt="stray")
    problems = check_promises(tmp_path / "retouch.db", shop, provider, report.originals, mode)
    assert problems == [f"product {legacy_id} has {2 if mode == 'replace' else 3} media, "
                        f"expected {1 if mode == 'replace' else 2}"]


def test_two_installations_on_one_store_keep_every_promise(shop, provider, tmp_path: Path) -> None:
    """Issue 19: a second installation (its own folder and database) started again and again beside a
    daemon that is itself killed and restarted, then taking over after the lease once it died."""
    report = two_installations(tmp_path, shop, provider, products=6, rival_starts=3, kills=2, seed=3, lease=6.0)
    print(report.line())
    assert report.problems == [] and report.tracebacks == 0
    assert report.refused == report.rival_starts == 4
