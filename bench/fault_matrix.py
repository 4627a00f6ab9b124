"""Convergence under faults: each provider with every fault kind switched on at a rate, at size.

    .venv/bin/python bench/fault_matrix.py [--images 100] [--rate 0.03] [--seed 1] [--provider NAME ...]

For each provider (AI Gen Studio, Imagen AI, ProductAI): a sandbox store with `--images` products,
one new image each; every fault kind the provider's sandbox offers on every endpoint (5xx, 429 with
and without Retry-After, resets, truncated, non-JSON and wrong-shape bodies, hangs beyond the
client timeout, lost answers, failed jobs, duplicated and late webhooks) and every Shopify kind
(the same, plus THROTTLED and media that end FAILED), each kind meeting a request with chance
`--rate`, drawn from `--seed`. The real daemon runs in-process (scheduler, steps, its webhook
server) until every image has settled; the providers run side by side. Then the promises of
tests/integration/test_fault_matrix.py are checked at size and one ProofRow per provider is emitted: faults
injected (the sandboxes' own counters), images, duplicates, double charges, originals lost,
crashes (steps that raised anything but a Shopify error), and anything else broken, named.

Small (seconds): --images 6 --rate 0.05.  Full (a few minutes): --images 100 --rate 0.03.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from proof import ProofRow, command_line, emit  # noqa: E402

from fault_matrix_kit import (  # noqa: E402
    SUITE_NAMES,
    World,
    build_world,
    check_run,
    faults_served,
    image_rows,
    kinds_of,
    plan_faults,
    settle_all,
)

PROVIDERS = ("aigenstudio", "imagen", "productai")
ALWAYS = 1_000_000  # a rate-driven fault's count: never used up during a run


def plan_everything(world: World, rate: float, seed: int) -> None:
    """Every kind the provider offers, on every endpoint, and every Shopify kind, each at `rate`."""
    world.charged.faults.reseed(seed)
    world.shop.reseed_faults(seed + 1)
    for kind in kinds_of(world.service):
        plan_faults(world.charged, world.service, kind, count=ALWAYS, probability=rate)
    for kind in kinds_of("shopify"):
        plan_faults(world.shop, "shopify", kind, count=ALWAYS, probability=rate)


def row_for(world: World, events: list[dict], args: argparse.Namespace, seconds: float) -> ProofRow:
    found = check_run(
        world.shop, world.charged, world.service, world.settings, world.originals, world.original_bytes, events
    )
    served = Counter(faults_served(world.charged, world.service))
    served.update({f"shopify {kind}": n for kind, n in world.shop.faults_served().items()})
    rows = image_rows(world.settings.database_path)
    states = Counter(row["state"] for row in rows)
    outcome = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    reasons = Counter(row["error_code"] for row in rows if row["state"] != "done")
    if reasons:
        outcome += " (" + ", ".join(f"{code} {n}" for code, n in sorted(reasons.items())) + ")"
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(served.items()))
    return ProofRow(
        suite=f"faults: {SUITE_NAMES[world.service]}",
        runs=1,
        faults=sum(served.values()),
        images=found.images,
        duplicates=found.duplicates,
        double_charges=found.double_charges,
        originals_lost=found.originals_lost,
        crashes=found.crashes,
        problems=found.problems,
        detail=f"{outcome} in {seconds:.0f} s; rate {args.rate} per kind; injected: {kinds}",
        command=command_line(
            "bench/fault_matrix.py",
            "--images",
            args.images,
            "--rate",
            args.rate,
            "--seed",
            args.seed,
            *[a for p in args.provider for a in ("--provider", p)],
        ),
    )


class ShutdownTracebacks(logging.Handler):
    """Counts the tracebacks apscheduler logs for steps cancelled when a daemon stops: they come
    after every image settled, so they are reported apart from crashes (which are steps that
    raised while working)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.startswith("apscheduler"):
            self.count += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="new images per provider")
    parser.add_argument("--rate", type=float, default=0.03, help="chance of each fault kind per request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--provider", action="append", choices=PROVIDERS, help="repeatable; default: all three")
    args = parser.parse_args()
    args.provider = args.provider or list(PROVIDERS)
    # The daemons log every retry; the row says what matters.
    logging.basicConfig(level=logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.CRITICAL)  # counted below, not printed
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    shutdown_tracebacks = ShutdownTracebacks()
    logging.getLogger().addHandler(shutdown_tracebacks)

    with tempfile.TemporaryDirectory(prefix="retouch-faults-") as tmp, ExitStack() as stack:
        worlds = {}
        for service in args.provider:
            home = Path(tmp) / service
            home.mkdir()
            worlds[service] = build_world(stack, service, home, products=args.images, seed=args.seed, webhooks=True)
            plan_everything(worlds[service], args.rate, args.seed)
        started = time.monotonic()
        timeout = 120 + 6 * args.images
        events = asyncio.run(
            settle_all({s: w.settings for s, w in worlds.items()}, timeout=timeout, at_once=len(worlds))
        )
        seconds = time.monotonic() - started
        rows = [row_for(world, events[service], args, seconds) for service, world in worlds.items()]
    if shutdown_tracebacks.count:  # process-wide: which daemon's cannot be told
        print(f"note: apscheduler logged {shutdown_tracebacks.count} traceback(s) of steps cancelled at stop")
    for row in rows:
        print(
            f"{row.suite}: {row.images} images, {row.faults} faults injected, duplicates {row.duplicates}, "
            f"double charges {row.double_charges}, originals lost {row.originals_lost}, crashes {row.crashes}, "
            f"{'held' if row.held else 'BROKEN: ' + '; '.join(row.problems[:5])} — {row.detail}"
        )
    print("reproduce:", rows[0].command if rows else "")
    emit(rows)
    return 0 if all(row.held for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
