"""Resources at full size (not a test): a backup disk that fills up partway through a batch, and a
database locked by another process for 30 s while the daemon works and new products arrive.

    .venv/bin/python bench/resources.py [--images 60] [--lock-for 30] [--seed 5]

Same harness as tests/e2e/test_resources.py (tests/resources_harness.py), with more images. Prints one
line per scenario and one ProofRow each (suites "disk full", "database locked"). The soak has its
own script, bench/soak.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))  # resources_harness reuses test_service
sys.path.insert(0, str(Path(__file__).resolve().parent))
from proof import ProofRow, command_line, emit, problem_columns  # noqa: E402

from conftest import SHOP_TOKEN  # noqa: E402
from resources_harness import database_locked, disk_full  # noqa: E402
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox  # noqa: E402
from retouch.plugin.shopify.sandbox import ShopifySandbox  # noqa: E402

# The documented quota (25 images an hour) would make a full-size run take hours: the sandbox's
# limits are raised, and the config's limits follow them.
LIMITS = 'window = "1h", jobs = 10000, images = 10000, polls = 100000, active_jobs = 1'


def sandboxes() -> tuple[ShopifySandbox, object, AigenSandbox, object]:
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    provider = AigenSandbox(
        window_seconds=3600,
        images_per_window=10_000,
        jobs_per_window=10_000,
        polls_per_window=100_000,
        seconds_per_item=0.05,
    )
    return shop, shop.start(), provider, provider.start()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--lock-for", type=float, default=30.0, help="seconds the other process holds the lock")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    command = command_line(
        "bench/resources.py", "--images", args.images, "--lock-for", args.lock_for, "--seed", args.seed
    )
    rows = []

    shop, shop_server, provider, provider_server = sandboxes()
    try:
        full = disk_full(
            Path(tempfile.mkdtemp(prefix="retouch-diskfull-")),
            shop,
            provider,
            products=args.images,
            seed=args.seed,
            limits=LIMITS,
            timeout=600,
        )
    finally:
        provider_server.stop()
        shop_server.stop()
    problems = list(full.problems)
    if not full.no_space:
        problems.append("the disk never filled up: no backup met ENOSPC")
    line = (
        f"{len(full.no_space)} of {full.images} backups met ENOSPC, {full.backed_up_before_full} fitted; "
        f"after freeing space: {full.states}"
    )
    print(f"disk full: {line}; {'every promise held' if not problems else 'BROKEN: ' + '; '.join(problems)}")
    rows.append(
        ProofRow(
            suite="disk full",
            runs=1,
            faults=len(full.no_space),
            images=full.images,
            crashes=full.tracebacks + (full.exit_code != 0),
            detail=line,
            command=command,
            **problem_columns(problems),
        )
    )

    shop, shop_server, provider, provider_server = sandboxes()
    try:
        locked = database_locked(
            Path(tempfile.mkdtemp(prefix="retouch-dblock-")),
            shop,
            provider,
            products=args.images,
            hold=args.lock_for,
            seed=args.seed,
            limits=LIMITS,
            timeout=600,
        )
    finally:
        provider_server.stop()
        shop_server.stop()
    problems = list(locked.problems)
    if locked.busy_events == 0:
        problems.append("the daemon never met the lock")
    line = (
        f"locked {locked.held_seconds:.0f} s; daemon waited ({locked.busy_events} database_busy), longest "
        f"watchdog gap {locked.longest_watchdog_gap:.1f} s of {locked.watchdog_seconds:.0f}; {locked.states}"
    )
    print(f"database locked: {line}; {'every promise held' if not problems else 'BROKEN: ' + '; '.join(problems)}")
    rows.append(
        ProofRow(
            suite="database locked",
            runs=1,
            faults=1,
            images=locked.images,
            crashes=locked.tracebacks + (locked.exit_code != 0),
            detail=line,
            command=command,
            **problem_columns(problems),
        )
    )
    emit(rows)
    return 0 if all(row.held for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
