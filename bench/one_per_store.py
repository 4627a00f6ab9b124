"""One retouch per store (issue 19), at full size (not a test): two installations (two folders, two
databases) on one sandbox store. A rival is started again and again at seeded random moments beside
a daemon that is itself killed with kill -9 and restarted; then the daemon dies while idle and the
rival takes over once the lease has run out. Every promise is checked afterwards.

    .venv/bin/python bench/one_per_store.py [--images 60] [--rival-starts 20] [--kills 10] [--seed 1] [--mode replace]

Same harness as tests/e2e/test_crash.py (`two_installations`).
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
from crash_harness import two_installations  # noqa: E402
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox  # noqa: E402
from retouch.plugin.shopify.sandbox import ShopifySandbox  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rival-starts", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["replace", "append"], default="replace")
    parser.add_argument(
        "--lease", type=float, default=6.0, help="[claim] lease, seconds (the default 120 s made short)"
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    shop_server = shop.start()
    provider = AigenSandbox(
        window_seconds=3600,
        images_per_window=10_000,
        jobs_per_window=10_000,
        polls_per_window=100_000,
        seconds_per_item=0.05,
    )
    provider.start()
    try:
        report = two_installations(
            Path(tempfile.mkdtemp(prefix="retouch-rivals-")),
            shop,
            provider,
            products=args.images,
            rival_starts=args.rival_starts,
            kills=args.kills,
            seed=args.seed,
            mode=args.mode,
            lease=args.lease,
            drain_timeout=1200,
            limits='window = "1h", jobs = 10000, images = 10000, polls = 100000, active_jobs = 1',
        )
    finally:
        provider.close()
        shop_server.stop()
    print(f"one retouch per store ({args.mode}, seed {args.seed}): {report.line()}")
    problems = list(report.problems)
    if report.refused != report.rival_starts:
        problems.append(f"only {report.refused} of {report.rival_starts} rival starts were refused")
    emit(
        [
            ProofRow(
                suite=f"two installations, one store ({args.mode})",
                runs=report.rival_starts + report.kills + 2,
                faults=0,
                images=report.images,
                kills=report.kills,
                crashes=report.tracebacks,
                **problem_columns(problems),
                detail=f"{report.refused} of {report.rival_starts} rival starts refused, take-over after a "
                f"{args.lease:g} s lease; {report.seconds:.0f} s",
                command=command_line(
                    "bench/one_per_store.py",
                    "--images",
                    args.images,
                    "--rival-starts",
                    args.rival_starts,
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
    return 1 if problems or report.tracebacks else 0


if __name__ == "__main__":
    raise SystemExit(main())
