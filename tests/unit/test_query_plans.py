"""The daemon's own queries stay indexed: no hot path reads a whole table.

Each hot store method is called once on a small database; every SQL statement it sends is caught
and run again under EXPLAIN QUERY PLAN. A plain `SCAN <table>` (no index) fails the test; scanning
a covering index (`counts_by_state`'s GROUP BY) is accepted. bench/db_hot_paths.py gives the
figures at 1,000,000 rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event

from retouch.storage.models import ImageState, JobState
from retouch.storage.store import Store

FULL_SCAN = re.compile(r"^SCAN (\w+)$")


@pytest.fixture
def store(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    for n in range(30):
        store.insert_image(
            media_id=f"gid://shopify/MediaImage/{n}",
            product_id=f"gid://shopify/Product/{n % 7}",
            product_legacy_id=str(n % 7),
            state=ImageState.DISCOVERED,
        )
    job = store.create_job("aigenstudio", "key-0000000001", [1, 2, 3])
    store.update_job(job.id, state=JobState.SUBMITTED)
    store.add_output("gid://shopify/MediaImage/99", "gid://shopify/Product/1", None)
    store.add_quota_event("aigenstudio", "image", 1000.0, 3)
    yield store
    store.close()


def plans_of(store: Store, call: Callable[[], object]) -> list[tuple[str, list[str]]]:
    statements: list[tuple[str, object]] = []

    def catch(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", catch)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", catch)
    plans = []
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            plans.append((statement, [row[-1] for row in rows]))
    return plans


HOT_PATHS: dict[str, Callable[[Store], object]] = {
    "image_by_media": lambda s: s.image_by_media("gid://shopify/MediaImage/3"),
    "images_by_media": lambda s: s.images_by_media([f"gid://shopify/MediaImage/{n}" for n in range(5)]),
    "images_of_product": lambda s: s.images_of_product("gid://shopify/Product/2"),
    "output_media_of_product": lambda s: s.output_media_of_product("gid://shopify/Product/1"),
    "is_output": lambda s: s.is_output("gid://shopify/MediaImage/99"),
    "images_in_state_due": lambda s: s.images_in_state(
        ImageState.ENHANCED, ImageState.BACKED_UP, ImageState.WRITTEN, due_by=2000.0
    ),
    "images_in_state_queue": lambda s: s.images_in_state(
        ImageState.DISCOVERED, due_by=2000.0, limit=20, has_source=True
    ),
    "images_in_state_unready": lambda s: s.images_in_state(ImageState.DISCOVERED, has_source=False, limit=50),
    "next_attempt_due": lambda s: s.next_attempt_due(ImageState.ENHANCED, ImageState.BACKED_UP, ImageState.WRITTEN),
    "counts_by_state": lambda s: s.counts_by_state(),
    "recent_failures": lambda s: s.recent_failures(),
    "jobs_in_state": lambda s: s.jobs_in_state(JobState.PENDING, JobState.SUBMITTED),
    "job_images": lambda s: s.job_images(1),
    "update_image": lambda s: s.update_image(4, attempts=1),
    "quota_events": lambda s: s.quota_events("aigenstudio", since=500.0),
    "prune_quota_events": lambda s: s.prune_quota_events(before=10.0),
    "meta": lambda s: s.get_meta("discovery_cursor"),
    "forget_events": lambda s: s.forget_events(before=10.0),
}


@pytest.mark.parametrize("name", sorted(HOT_PATHS))
def test_hot_path_reads_no_whole_table(store: Store, name: str) -> None:
    plans = plans_of(store, lambda: HOT_PATHS[name](store))
    assert plans, f"{name} sent no statement"
    for statement, details in plans:
        scans = [d for d in details if FULL_SCAN.match(d)]
        assert not scans, f"{name}: {scans} in {details} for {statement}"


def test_the_check_would_catch_a_full_scan(store: Store) -> None:
    plans = plans_of(
        store, lambda: store.engine.connect().exec_driver_sql("SELECT * FROM image WHERE alt = 'x'").fetchall()
    )
    assert any(FULL_SCAN.match(d) for _, details in plans for d in details)
