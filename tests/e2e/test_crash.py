"""Crash anywhere, small: the real daemon killed with SIGKILL at seeded random moments and
restarted, on a sandbox store; afterwards every image is final, no product has a duplicate or a
missing media, no image was charged twice, and every original is kept. The full-size run (200
images, 25+ kills) is bench/crash_anywhere.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import db_rows
from crash_harness import check_promises, check_review_promises, crash_anywhere, crash_with_review, two_installations


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
    assert problems == [
        f"product {legacy_id} has {2 if mode == 'replace' else 3} media, expected {1 if mode == 'replace' else 2}"
    ]


def test_two_installations_on_one_store_keep_every_promise(shop, provider, tmp_path: Path) -> None:
    """Issue 19: a second installation (its own folder and database) started again and again beside a
    daemon that is itself killed and restarted, then taking over after the lease once it died."""
    report = two_installations(tmp_path, shop, provider, products=6, rival_starts=3, kills=2, seed=3, lease=6.0)
    print(report.line())
    assert report.problems == [] and report.tracebacks == 0
    assert report.refused == report.rival_starts == 4


def test_kill_9_with_review_on_never_writes_an_unapproved_result(shop, provider, tmp_path: Path) -> None:
    """Issue 22: with [review] mode = "all", across kill -9s at seeded moments (while results wait, as the
    owner approves, while an approved one is written), no Shopify write ever carries a result that was not
    approved at the time; the rejected originals are untouched; every other promise holds."""
    report = crash_with_review(tmp_path, shop, provider, products=6, kills=6, seed=11)
    print(report.line(), f"{report.writes_among_kills} write(s) made between the kills")
    assert report.problems == [] and report.tracebacks == 0
    assert report.states == {"done": 3, "rejected": 3}

    # The check is not blind: a write of a rejected result, or of an approved one before its approval, is named.
    rows = db_rows(tmp_path / "retouch.db", "select media_id, result_sha256, approved_at, state from image")
    rejected = next(r for r in rows if r[3] == "rejected")
    approved = next(r for r in rows if r[3] == "done")
    fake = [
        {
            "operation": "fileUpdate",
            "media_id": int(rejected[0].rsplit("/", 1)[-1]),
            "sha256": rejected[1],
            "at": time.time(),
        },
        {
            "operation": "fileUpdate",
            "media_id": int(approved[0].rsplit("/", 1)[-1]),
            "sha256": approved[1],
            "at": approved[2] - 1,
        },
    ]
    problems = check_review_promises(tmp_path / "retouch.db", shop, report.originals, shop.writes() + fake)
    assert problems == [
        f"{rejected[0]}: a fileUpdate wrote a result not approved at the time",
        f"{approved[0]}: a fileUpdate wrote a result not approved at the time",
    ]
