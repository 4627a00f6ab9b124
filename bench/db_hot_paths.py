"""The database at catalog scale (not a test): 1,000,000 image rows in SQLite (WAL).

    .venv/bin/python bench/db_hot_paths.py [--rows 1000000]

Prints: the plan of every hot query (no full table scan), state transitions per second through
`Store.update_image` (one fsync'd transaction each, as the daemon does), and the DB time of a
discovery cycle with nothing new (the real `discover` step; Shopify replaced by an in-memory
answer of products already known, so only database time is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from harness import Row, command_line, emit  # noqa: E402

from retouch.plugin.shopify.models import Media, Product  # noqa: E402
from retouch.storage.models import ImageState  # noqa: E402
from retouch.storage.store import Store  # noqa: E402
from retouch.sync.pipeline import discover  # noqa: E402
from retouch.sync.pipeline.context import BASELINE_RECORDED, CURSOR, Context  # noqa: E402
from test_query_plans import FULL_SCAN, HOT_PATHS, plans_of  # noqa: E402

MEDIA_PER_PRODUCT = 5


def fill(db: Path, rows: int) -> None:
    """Rows as the daemon writes them, inserted in bulk (setup only, not measured)."""
    Store(f"sqlite:///{db}").close()  # schema and indexes
    states = [ImageState.DONE] * 90 + [ImageState.BASELINE] * 8 + [ImageState.FAILED, ImageState.DISCOVERED]
    now = datetime.now(timezone.utc).isoformat(sep=" ")
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO image (media_id, product_id, product_legacy_id, state, position, attempts, retries, paid_attempts,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0, 0, 0, ?, ?)",
            (
                (
                    f"gid://shopify/MediaImage/{n}",
                    f"gid://shopify/Product/{n // MEDIA_PER_PRODUCT}",
                    str(n // MEDIA_PER_PRODUCT),
                    str(states[n % len(states)]),
                    now,
                    now,
                )
                for n in range(rows)
            ),
        )


class KnownProducts:
    """Stands in for the Shopify client: a page of products whose media are all already tracked."""

    def __init__(self, first: int, count: int) -> None:
        self.products = [self._product(p) for p in range(first, first + count)]

    @staticmethod
    def _product(p: int) -> Product:
        media = tuple(
            Media(
                id=f"gid://shopify/MediaImage/{p * MEDIA_PER_PRODUCT + k}",
                content_type="IMAGE",
                status="READY",
                alt=None,
                mime_type="image/jpeg",
                url=f"https://cdn.example/p{p}-{k}.jpg",
                original_url=None,
                width=1,
                height=1,
                errors=(),
                updated_at=None,
            )
            for k in range(MEDIA_PER_PRODUCT)
        )
        return Product(
            id=f"gid://shopify/Product/{p}",
            legacy_id=p,
            title="p",
            tags=(),
            updated_at=datetime.now(timezone.utc),
            media=media,
            marker_media_ids=frozenset(),
            marker_digest=None,
        )

    async def iter_products(self, updated_since=None):
        for product in self.products:
            yield product


def main() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # figures only
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp(prefix="retouch-db-")) / "retouch.db"
    started = time.perf_counter()
    fill(db, args.rows)
    print(
        f"rows: {args.rows:,} image rows in {time.perf_counter() - started:.1f} s (bulk setup); "
        f"file {db.stat().st_size / 2**20:.0f} MiB"
    )
    store = Store(f"sqlite:///{db}")
    store.set_meta(BASELINE_RECORDED, "2026-01-01T00:00:00+00:00")
    store.set_meta(CURSOR, "2026-01-01T00:00:00+00:00")

    command = command_line("bench/db_hot_paths.py", "--rows", args.rows)
    rows: list[Row] = []
    full_scans = 0
    slowest = (0.0, "")
    print("query plans of the hot paths:")
    for name, call in sorted(HOT_PATHS.items()):
        started = time.perf_counter()
        plans = plans_of(store, lambda: call(store))
        took = (time.perf_counter() - started) * 1000
        details = sorted({d for _, ds in plans for d in ds})
        scans = [d for d in details if FULL_SCAN.match(d)]
        full_scans += bool(scans)
        if name != "counts_by_state":  # an index scan of every row by design; shown apart
            slowest = max(slowest, (took, name))
        else:
            counts_ms = took
        print(f"  {name:26s} {took:8.2f} ms  {'FULL SCAN ' + str(scans) if scans else '; '.join(details)}")

    transitions = 2000
    ids = range(1, transitions + 1)
    started = time.perf_counter()
    for image_id in ids:
        store.update_image(image_id, attempts=1)
    took = time.perf_counter() - started
    rows.append(
        Row(
            "Database",
            f"hot queries with a full table scan (of {len(HOT_PATHS)}), {args.rows:,} images",
            full_scans,
            "",
            target="0",
            met=full_scans == 0,
            command=command,
        )
    )
    rows.append(
        Row("Database", f"slowest hot query ({slowest[1]}), {args.rows:,} images", slowest[0], "ms", command=command)
    )
    rows.append(
        Row("Database", f"counts_by_state (index scan, every {5:g} s for STATUS=)", counts_ms, "ms", command=command)
    )
    rows.append(
        Row(
            "Database", "state transitions (one fsync'd transaction each)", transitions / took, "per s", command=command
        )
    )
    print(
        f"state transitions: {transitions / took:,.0f} per second ({took / transitions * 1000:.2f} ms each, "
        f"one fsync'd transaction each)"
    )

    settings = SimpleNamespace(
        selection=SimpleNamespace(new_only=True, exclude_tags=[]),
        schedule=SimpleNamespace(discover_overlap=120.0),
        rules=(),
    )
    for count in (0, 1, 50):
        ctx = Context(
            settings=settings,
            store=store,
            backups=None,
            shopify=KnownProducts(first=1234, count=count),
            provider=SimpleNamespace(name="aigenstudio"),  # discovery names the provider (for [[rules]])
        )
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            asyncio.run(discover(ctx))
            timings.append((time.perf_counter() - started) * 1000)
        median = sorted(timings)[2]
        if count == 0:
            rows.append(
                Row(
                    "Database",
                    f"discovery cycle with nothing new, {args.rows:,} images",
                    median,
                    "ms",
                    limit=50,
                    limit_kind="ceiling",
                    target="< 50 ms",
                    met=median < 50,
                    command=command,
                )
            )
        print(
            f"discovery cycle with nothing new, {count} updated product(s) ({count * MEDIA_PER_PRODUCT} media, "
            f"all known): median {sorted(timings)[2]:.1f} ms of DB time "
            f"(runs: {', '.join(f'{t:.1f}' for t in timings)})"
        )
    store.close()
    emit(rows)


if __name__ == "__main__":
    main()
