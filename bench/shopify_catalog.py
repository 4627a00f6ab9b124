"""A first run of the real daemon against a 100,000-product / 300,000-media store (not a test).

    .venv/bin/python bench/shopify_catalog.py [--products 100000] [--images 3] [--restore-rate 100]

The Shopify sandbox runs in a child process (its memory and CPU are its own), seeded with the
catalog and Shopify Standard's limits (bucket 2000, restore 100 points/s). `retouch run` starts
as a store owner starts it the first time (`new_only = true`: the whole catalog is read once and
recorded as the baseline) and is stopped once the baseline is recorded. Printed:
- wall time of the discovery, from the daemon's start;
- the daemon's peak RSS (VmHWM) — target under 200 MB, whatever the catalog's size;
- GraphQL calls and cost points by operation, from the sandbox's own count, and THROTTLED answers;
- the cost against the bulk-operation minimum, both from this run: the least a whole-catalog read
  by bulk operation can spend is one productsCount (the switch point: `[shop] bulk_threshold`),
  one bulkOperationRunQuery and one bulkOperation read that finds it COMPLETED. The rest is the
  polls before that and the daemon's own start-up read (`Shop`). Target: within 20%.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_run import Run, run_daemon_until  # noqa: E402
from harness import Row, command_line, emit  # noqa: E402

TOKEN = "shpat_bench_catalog_token"
KEY = "aigen_test_bench_catalog_key_0001"
DISCOVERY_OPERATIONS = ("ProductsCount", "BulkProductsRun", "BulkOperation", "ProductsPage", "ProductMediaPage")


def _serve(products: int, images: int, restore_rate: float, answers: mp.Queue, stop: mp.Event) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from retouch.plugin.shopify.sandbox import ShopifySandbox

    shop = ShopifySandbox(access_token=TOKEN, bucket_size=2000, restore_rate=restore_rate)
    server = shop.start()
    started = time.perf_counter()
    # One product every 2 s over the catalog's history, as a store built up over time.
    summary = shop.seed_catalog(products, images, seed=1, spread_seconds=2.0 * products)
    answers.put({"url": shop.shop_url, "seed_seconds": time.perf_counter() - started, **summary})
    stop.wait()
    server.stop()


def _config(shop_url: str, provider_url: str, tmp: Path) -> Path:
    path = tmp / "config.toml"
    path.write_text(f"""
[shop]
url = "{shop_url}"
access_token = "{TOKEN}"

[provider]
name = "aigenstudio"
api_key = "{KEY}"
base_url = "{provider_url}"

[selection]
new_only = true

[writeback]
backup_dir = "{tmp / 'backups'}"

[schedule]
discover_every = "1h"

[storage]
url = "sqlite:///{tmp / 'retouch.db'}"

[log]
level = "info"
format = "json"
""")
    return path


def _meta(db: Path, key: str) -> str | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("select value from meta where key = ?", (key,)).fetchone()
            return row[0] if row else None
    except sqlite3.OperationalError:
        return None


def _images(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from image").fetchone()[0]


def run_first_discovery(config: Path, db: Path, log_path: Path, timeout: float) -> Run:
    """The daemon's first run, stopped once the baseline is recorded."""
    run = run_daemon_until(
        config, log_path, lambda _at: _meta(db, "baseline_recorded") is not None, timeout=timeout, interval=0.2
    )
    if not run.finished:
        raise SystemExit(f"no baseline after {run.elapsed:.0f} s (daemon exit {run.returncode}); see {log_path}")
    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--restore-rate", type=float, default=100.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox

    context = mp.get_context("spawn")
    answers, stop = context.Queue(), context.Event()
    child = context.Process(
        target=_serve, args=(args.products, args.images, args.restore_rate, answers, stop), daemon=True
    )
    child.start()
    provider = AigenSandbox(window_seconds=3600)
    provider_server = provider.start()
    try:
        info = answers.get(timeout=900)
        print(f"seeded {info['products']:,} products / {info['media']:,} media in {info['seed_seconds']:.1f} s")
        tmp = Path(tempfile.mkdtemp(prefix="retouch-catalog-"))
        db = tmp / "retouch.db"
        run = run_first_discovery(_config(info["url"], provider.base_url, tmp), db, tmp / "daemon.log", args.timeout)
        took, peak_kib, code = run.elapsed, run.peak_rss_kib, run.returncode
        stats = httpx.get(f"{info['url']}/_sandbox/stats", timeout=60).json()
        recorded = _images(db)
    finally:
        stop.set()
        provider_server.stop()
        child.join(30)

    calls, points = stats["operations"], stats["points"]
    total_points = sum(points.values())
    per_poll = points.get("BulkOperation", 0) / max(1, calls.get("BulkOperation", 0))
    minimum = points.get("ProductsCount", 0) + points.get("BulkProductsRun", 0) + per_poll
    peak_mb = peak_kib / 1024 if peak_kib else float("nan")
    print(
        f"first run, {info['products']:,} products / {info['media']:,} media: baseline of {recorded:,} images "
        f"recorded in {took:.1f} s (daemon exit {code}); daemon peak RSS {peak_mb:.1f} MB"
    )
    print("GraphQL calls by operation: " + json.dumps(calls, sort_keys=True))
    print("cost points by operation:   " + json.dumps(points, sort_keys=True))
    print(
        f"THROTTLED answers {stats['throttled']}; {total_points} points in all against the bulk minimum "
        f"{minimum:g} (productsCount + bulkOperationRunQuery + one bulkOperation read): "
        f"{total_points / minimum:.2f}x"
        if minimum
        else "no bulk operation ran"
    )
    problems = []
    if recorded != info["media"]:
        problems.append(f"{recorded} image rows for {info['media']} media")
    if "BulkProductsRun" not in calls:
        problems.append("the catalog was paged, not read by bulk operation")
    for problem in problems:
        print("PROBLEM:", problem)
    command = command_line(
        "bench/shopify_catalog.py",
        "--products",
        args.products,
        "--images",
        args.images,
        "--restore-rate",
        f"{args.restore_rate:g}",
    )
    size = f"{info['products']:,} products / {info['media']:,} media"
    emit(
        [
            Row(
                "Shopify catalog (bulk, first run)",
                f"discovery wall time, {size}",
                round(took, 1),
                "s",
                command=command,
            ),
            Row(
                "Shopify catalog (bulk, first run)",
                "daemon peak RSS",
                round(peak_mb, 1),
                "MB",
                limit=200,
                limit_kind="ceiling",
                target="< 200 MB",
                met=peak_mb < 200,
                command=command,
            ),
            Row(
                "Shopify catalog (bulk, first run)",
                f"THROTTLED answers ({sum(calls.values())} GraphQL calls)",
                stats["throttled"],
                "",
                target="0",
                met=stats["throttled"] == 0,
                command=command,
            ),
            Row(
                "Shopify catalog (bulk, first run)",
                "cost points, all calls",
                total_points,
                "points",
                limit=minimum or None,
                limit_kind="ceiling",
                target="within 20% of the bulk minimum",
                met=bool(minimum) and total_points <= 1.2 * minimum,
                command=command,
            ),
        ]
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
