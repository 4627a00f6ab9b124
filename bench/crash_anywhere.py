"""Crash anywhere at full size (not a test): 200 images, at least 25 `kill -9` at seeded random
moments, restarting each time, until the queue drains; then every promise is checked.

    .venv/bin/python bench/crash_anywhere.py [--images 200] [--kills 25] [--seed 1] [--mode replace]

Same harness as tests/e2e/test_crash.py. Prints one line per run; any broken promise is named.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from proof import ProofRow, command_line, emit, problem_columns  # noqa: E402

from conftest import SHOP_TOKEN  # noqa: E402
from crash_harness import crash_anywhere  # noqa: E402
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox  # noqa: E402
from retouch.plugin.shopify.sandbox import ShopifySandbox  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["replace", "append"], default="replace")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    shop_server = shop.start()
    # The documented quota (25 images an hour) would make 200 images take 8 hours: the sandbox's
    # window is shortened, and the config's limits follow it (see conftest.config_text).
    provider = AigenSandbox(
        window_seconds=3600,
        images_per_window=10_000,
        jobs_per_window=10_000,
        polls_per_window=100_000,
        seconds_per_item=0.05,
    )
    provider.start()
    try:
        report = crash_anywhere(
            Path(tempfile.mkdtemp(prefix="retouch-crash-")),
            shop,
            provider,
            products=args.images,
            kills=args.kills,
            seed=args.seed,
            mode=args.mode,
            limits='window = "1h", jobs = 10000, images = 10000, polls = 100000, active_jobs = 1',
            discover_every="15s",
            drain_timeout=1200,
        )
    finally:
        provider.close()
        shop_server.stop()
    print(f"crash anywhere ({args.mode}, seed {args.seed}): {report.line()}")
    emit(
        [
            ProofRow(
                suite=f"crash anywhere ({args.mode})",
                runs=args.kills + 1,
                faults=0,
                images=args.images,
                kills=args.kills,
                crashes=report.tracebacks,
                **problem_columns(report.problems),
                detail=f"drained in {report.seconds:.0f} s; states {report.states}",
                command=command_line(
                    "bench/crash_anywhere.py",
                    "--images",
                    args.images,
                    "--kills",
                    args.kills,
                    "--seed",
                    args.seed,
                    "--mode",
                    args.mode,
                ),
            )
        ]
    )
    return 1 if report.problems or report.tracebacks else 0


if __name__ == "__main__":
    raise SystemExit(main())
