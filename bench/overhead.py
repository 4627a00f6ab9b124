"""Overhead per image (not a test): the daemon's own CPU and memory per image it processes, with
providers that answer at once, so that what is left is retouch's work.

    .venv/bin/python bench/overhead.py [--sizes 500 5000] [--images-per-product 5] [--seed 1]
        [--tick 0.1] [--idle 2 6] [--floor-samples 200] [--timeout 1800] [--keep] [--profile PREFIX]

Targets (the issue): CPU seconds of the daemon process (user + sys) divided by the images it
processed, over 5,000 images: < 5 ms per image. Peak RSS < 150 MB, and the same (±10%) at 500 and
at 5,000 images. The 5 ms is below the library floor (below), so the daemon is held to at most
2.5x that floor, measured in the same run (FLOOR_RATIO_TARGET says why); the 5 ms rows stay.

Beside it, from the same run: the library floor (bench/floor.py), the CPU that Pillow's check and
conversion and httpx's three transfers of each image cost with nothing around them, measured on
the run's own images against the same sandbox; and the daemon's CPU per image as a multiple of it.

Each size is one run on fresh sandboxes and a fresh database: a Shopify sandbox seeded with
ceil(size / images-per-product) products of generated photos (JPEG, PNG, WebP as the sandbox
draws them), an AI Gen Studio sandbox, and the real daemon (`python -m retouch.sync run -c
config`, through bench/daemon_run.py) with new_only = false, so every image is discovered, backed
up, sent, polled, downloaded, converted back to the original's format where needed, and written
back with mode "replace". The run ends when every image is final in the daemon's database; the
daemon then gets SIGTERM and is reaped with os.wait4: its CPU (ru_utime + ru_stime) is that of
that one process; the sandboxes run as threads of this process and are not counted. Its peak RSS
is its VmHWM (/proc/<pid>/status), read every 50 ms until it exits, not wait4's ru_maxrss: on
Linux a child's ru_maxrss includes the RSS of the process it was forked from at exec, here this
process with its sandboxes full of images (~0.27 MB per image), which is not the daemon's.

What makes the providers "instant", and what that leaves out:
- AI Gen Studio: seconds_per_item = 0 and every limit (jobs, images, polls per window, active jobs
  per key and per account) far above the load; the daemon's [aigenstudio] limits are the same, so
  its pacing never waits. Its default batch_size (20) is used. The sandbox's stand-in enhancement
  (real Pillow work, ~0.16 s of CPU per image in *this* process, serialised by the GIL) would
  make the provider the bottleneck and stretch the run, and the daemon's idle ticks with it; so
  by default each item's result is a real enhancement result computed once at start (one of a
  few, PNG, ~160 KB), made unique per item by a PNG text chunk, and the provider does not fetch
  the source. The daemon's side of the protocol is unchanged: it downloads full-size results and
  converts them as for real. `--real-enhance` keeps the sandbox's own processing.
- Shopify: processing_seconds = 0 and a cost bucket (`--bucket`, restore `--restore` points/s)
  far above what the daemon spends, so Shopify's cost pacing is not what is measured here (its
  pacer is benchmarked by bench/shopify_pacer.py).
- Schedule: tick `--tick` s (shipped: 2 s; small here so a run does not wait on it: the daemon's
  idle CPU per tick is then counted more often than in production), discover_every 1 h (one
  discovery per run; repeated scans are not what is measured), log level info (the shipped
  default), JSON to a file.

Honest about what the per-image figure includes: the daemon's start-up (interpreter, imports,
database creation, connecting) and shutdown are in its CPU. Two ways to see past them: the
marginal cost (cpu at the largest size - cpu at the smallest) / (difference in images), and two
idle runs (`--idle 2 6`: the daemon on an empty store for 2 s and for 6 s) which give its
start-up CPU and its idle CPU per second (`--idle` with no values skips them).

Figures go to bench/harness.py's table through `emit` (scenario "Overhead per image"). The exit
code is 0 unless something broke (a run that timed out or images that did not end `done`); a
missed target shows as "NOT met" in the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import floor as library_floor
import structlog
from daemon_run import ThreadCPU, run_daemon_until_settled
from harness import Row, command_line, emit

from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

SHOP_TOKEN = "shpat_bench_shop_token_0001"
KEY = "aigen_test_BENCHoverhead0001"  # an AI Gen Studio sandbox (test) key: free, like tests' PROVIDER_KEY
SCENARIO = "Overhead per image"
WINDOW = "1h"
WINDOW_SECONDS = 3600
ACTIVE_JOBS = 100  # jobs in flight at once, per key and per account: far above what 5,000 images need
CPU_TARGET_MS = 5.0  # the figure: below the library floor itself, see FLOOR_RATIO_TARGET
# What the daemon is held to instead. The "< 5 ms per image" is less than the library floor
# alone (5.4-6.4 ms on the bench machine: Pillow's check and conversion, httpx's three transfers),
# so no pipeline built on these libraries can meet it; its rows stay in the table, marked. What
# retouch answers for is its own CPU around that floor, taken within one run so that machine noise
# cancels (the rule for ratios): at most 1.5 times the floor again, 2.5x in all. That own
# CPU also pays for what the floor leaves out but no safe daemon skips: every original's backup
# (hash, write, fsync), the fsync'd intents in SQLite, the GraphQL and provider calls, the log.
FLOOR_RATIO_TARGET = 2.5
RSS_TARGET_MB = 150.0
RSS_SPREAD = 0.10  # "the same (±10%)"
DEFAULT_SIZES = [500, 5000]
DEFAULT_IDLE = [2.0, 6.0]


# --- the runs -----------------------------------------------------------------------------------------


def limits_for(images: int) -> dict[str, int]:
    """Per window, far above the load: every image could be sent ten times over, each job polled 100 times."""
    much = 10 * images + 1000
    return {"jobs": much, "images": much, "polls": 100 * much, "active_jobs": ACTIVE_JOBS}


def config_text(shop: ShopifySandbox, provider: AigenSandbox, tmp: Path, limits: dict[str, int], *, tick: float) -> str:
    """As tests/conftest.py's config_text writes it, with the bench's limits and schedule."""
    return f"""
[shop]
url = "{shop.shop_url}"
access_token = "{SHOP_TOKEN}"

[provider]
name = "aigenstudio"
api_key = "{KEY}"
base_url = "{provider.base_url}"
timeout = "10s"

[aigenstudio]
limits = {{ window = "{WINDOW}", jobs = {limits['jobs']}, images = {limits['images']}, \
polls = {limits['polls']}, active_jobs = {limits['active_jobs']} }}

[selection]
new_only = false

[writeback]
mode = "replace"
backup_dir = "{tmp / 'backups'}"

[schedule]
discover_every = "1h"
tick = "{tick:g}s"
discover_overlap = "5s"

[storage]
url = "sqlite:///{tmp / 'retouch.db'}"

[log]
level = "info"
format = "json"
"""


def with_text_chunk(png: bytes, text: str) -> bytes:
    """The same PNG with a tEXt chunk before IEND: other bytes, the same picture."""
    assert png[-12:-8] == b"\x00\x00\x00\x00" and png[-8:-4] == b"IEND"
    body = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:-12] + chunk + png[-12:]


def canned_results(seed: int, count: int = 4) -> list[tuple[bytes, bytes]]:
    """A few real enhancement results (full size, thumbnail) of generated product photos."""
    from retouch.plugin.providers.aigenstudio.sandbox import enhance
    from retouch.plugin.shopify.sandbox.photos import product_photo

    results = []
    for i in range(count):
        image = enhance.enhance(product_photo(seed * 1000 + i, "JPEG" if i % 2 else "PNG"))
        results.append((enhance.to_png(image), enhance.to_png(enhance.thumbnail(image))))
    return results


def make_instant(provider: AigenSandbox, results: list[tuple[bytes, bytes]]) -> None:
    """Replace the sandbox's per-item work (fetch the source, enhance with Pillow) by a canned result."""
    processor = provider._processor
    counter = iter(range(10**12))

    def work(http, job, item):
        n = next(counter)
        full, thumb = results[n % len(results)]
        return (with_text_chunk(full, f"{job.id}/{item.id}"), with_text_chunk(thumb, f"{job.id}/{item.id}")), None

    processor._work = work


@dataclass
class Run:
    label: str
    images: int  # images seeded (0: an idle run)
    seconds: float  # wall time, daemon start -> every image final (idle: how long it ran)
    done: int
    other_states: dict[str, int]
    cpu_user: float
    cpu_sys: float
    peak_rss_kib: int
    timed_out: bool
    notes: list[str] = field(default_factory=list)
    floor: library_floor.Floor | None = None  # the library floor, measured on this run's images
    threads: ThreadCPU | None = None  # its CPU by thread when every image was final (shutdown not in it)

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def rss_mb(self) -> float:
        return self.peak_rss_kib / 1024

    @property
    def ms_per_image(self) -> float:
        return 1000 * self.cpu / self.done if self.done else math.nan


def run_once(args, images: int, *, idle_seconds: float = 0.0, results: list[tuple[bytes, bytes]] | None) -> Run:
    label = f"{images} images" if images else f"idle {idle_seconds:g} s"
    tmp = Path(tempfile.mkdtemp(prefix="retouch-bench-overhead-"))
    limits = limits_for(images)
    shop = ShopifySandbox(
        access_token=SHOP_TOKEN, processing_seconds=0, bucket_size=args.bucket, restore_rate=args.restore
    )
    shop_server = shop.start()
    provider = AigenSandbox(
        window_seconds=WINDOW_SECONDS,
        jobs_per_window=limits["jobs"],
        images_per_window=limits["images"],
        polls_per_window=limits["polls"],
        active_jobs_per_key=limits["active_jobs"],
        active_jobs_per_account=limits["active_jobs"],
        seconds_per_item=0,
    )
    provider.start()
    if results is not None:
        make_instant(provider, results)
    try:
        t0 = time.monotonic()
        count = math.ceil(images / args.images_per_product)
        products = (
            shop.seed(products=count, images_per_product=args.images_per_product, seed=args.seed) if images else []
        )
        media_ids = [m["id"] for p in products for m in p["media"]]
        if images:
            print(
                f"... {label}: seeded {len(products)} products, {len(media_ids)} images in "
                f"{time.monotonic() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        config = tmp / "config.toml"
        config.write_text(config_text(shop, provider, tmp, limits, tick=args.tick))
        log_path = tmp / "daemon.log"
        # An idle run watches a media id that never exists: it ends at its "timeout", the idle time.
        outcome = run_daemon_until_settled(
            config,
            tmp / "retouch.db",
            media_ids or ["gid://none"],
            log_path,
            timeout=args.timeout if images else idle_seconds,
            profile=Path(f"{args.profile}-{images}.txt") if args.profile else None,
        )
        states = outcome.states if images else []
        usage = outcome.rusage
        counts: dict[str, int] = {}
        for state in states:
            counts[str(state)] = counts.get(str(state), 0) + 1
        done = counts.pop("done", 0)
        run = Run(
            label,
            len(media_ids),
            outcome.elapsed,
            done,
            counts,
            usage.ru_utime if usage else math.nan,
            usage.ru_stime if usage else math.nan,
            outcome.peak_rss_kib or 0,
            images > 0 and outcome.elapsed > args.timeout,
            threads=outcome.threads,
        )
        if usage is None:
            run.notes.append("the daemon's rusage was not available")
        if not outcome.peak_rss_kib:
            run.notes.append("the daemon's peak RSS was not available (no /proc?)")
        if images:
            run.notes.extend(sandbox_notes(shop, provider))
        run.notes.extend(log_notes(log_path))
        if images and args.floor_samples:
            print(
                f"... {label}: the library floor, over {min(args.floor_samples, len(media_ids))} of its images",
                file=sys.stderr,
                flush=True,
            )
            run.floor = library_floor.measure(
                shop,
                SHOP_TOKEN,
                [m for p in products for m in p["media"]],
                [full for full, _ in results or canned_results(args.seed)],
                samples=args.floor_samples,
            )
        if args.keep:
            run.notes.append(f"kept: {tmp}")
        return run
    finally:
        provider.close()
        shop_server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def sandbox_notes(shop: ShopifySandbox, provider: AigenSandbox) -> list[str]:
    stats = shop.stats()
    ops = ", ".join(f"{k} x{v}" for k, v in sorted(stats["operations"].items()))
    key = provider.stats()["keys"].get(KEY, {})
    return [
        f"Shopify: {stats['graphql_requests']} GraphQL requests, {stats['throttled']} throttled ({ops})",
        (
            f"AI Gen Studio: {key.get('creations', 0)} jobs, {key.get('replays', 0)} replays, "
            f"{key.get('polls', 0)} polls, {key.get('images_charged', 0)} images, "
            f"{key.get('rate_limited', 0)} rate limited"
        ),
    ]


def log_notes(path: Path) -> list[str]:
    """The daemon log's size and its warnings/errors by event."""
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    problems: dict[str, int] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            problems["(not JSON)"] = problems.get("(not JSON)", 0) + 1
            continue
        if event.get("level") in ("warning", "error", "critical"):
            name = f"{event.get('level')}:{event.get('event')}"
            problems[name] = problems.get(name, 0) + 1
    note = f"daemon log: {len(lines)} lines"
    if problems:
        note += "; " + ", ".join(f"{k} x{v}" for k, v in sorted(problems.items()))
    return [note]


# --- report -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=DEFAULT_SIZES,
        help="images per run, one fresh run each (default: 500 5000)",
    )
    parser.add_argument("--images-per-product", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.1, help="the daemon's [schedule] tick in seconds")
    parser.add_argument(
        "--idle",
        type=float,
        nargs="*",
        default=DEFAULT_IDLE,
        help="seconds of the idle runs (an empty store) for start-up and idle CPU; none: skip",
    )
    parser.add_argument("--bucket", type=float, default=1_000_000, help="Shopify sandbox cost bucket size")
    parser.add_argument("--restore", type=float, default=100_000, help="Shopify sandbox restore rate, points/s")
    parser.add_argument(
        "--real-enhance",
        action="store_true",
        help="let the AI Gen Studio sandbox enhance each image with Pillow (slow, in this process)",
    )
    parser.add_argument(
        "--floor-samples",
        type=int,
        default=200,
        help="images of each run the library floor is measured over (bench/floor.py); 0: skip it",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (config, database, log)")
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="attach py-spy (pip install py-spy) to the daemon, collapsed stacks to PREFIX-<images>.txt; "
        "for finding hot spots: its rows are not emitted for the table",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sizes = sorted(set(args.sizes))
    if any(s <= 0 for s in sizes):
        parser.error("--sizes must be positive")

    results = None if args.real_enhance else canned_results(args.seed)
    runs: list[Run] = []
    for seconds in sorted(args.idle or []):
        print(f"... idle {seconds:g} s", file=sys.stderr, flush=True)
        runs.append(run_once(args, 0, idle_seconds=seconds, results=results))
    for size in sizes:
        t0 = time.monotonic()
        print(f"... {size} images", file=sys.stderr, flush=True)
        runs.append(run_once(args, size, results=results))
        print(f"... {size} images took {time.monotonic() - t0:.0f} s in all", file=sys.stderr, flush=True)
    idle = [r for r in runs if not r.images]
    sized = [r for r in runs if r.images]

    print(
        f"\nOverhead per image: the daemon's own CPU (user+sys, os.wait4) and peak RSS (VmHWM); instant providers "
        f"({'sandbox enhancement' if args.real_enhance else 'canned results'}), tick {args.tick:g} s, "
        f"{args.images_per_product} images per product, seed {args.seed}"
    )
    header = (
        f"{'run':<14} {'images':>6} {'done':>6} {'wall s':>7} {'img/s':>7} {'user s':>7} {'sys s':>7} "
        f"{'CPU s':>7} {'ms/img':>7} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        rate = r.done / r.seconds if r.done and r.seconds else math.nan
        print(
            f"{r.label:<14} {r.images:6d} {r.done:6d} {r.seconds:7.1f} {rate:7.1f} {r.cpu_user:7.2f} {r.cpu_sys:7.2f} "
            f"{r.cpu:7.2f} {r.ms_per_image:7.2f} {r.rss_mb:7.1f}"
        )
    print()
    for r in runs:
        if r.other_states:
            print(f"  {r.label}: not done: {json.dumps(r.other_states, sort_keys=True)}")
        if r.timed_out:
            print(f"  {r.label}: TIMED OUT after {args.timeout:g} s")
        for note in r.notes:
            print(f"  {r.label}: {note}")

    startup = idle_rate = None
    if len(idle) >= 2 and idle[-1].seconds > idle[0].seconds:
        idle_rate = (idle[-1].cpu - idle[0].cpu) / (idle[-1].seconds - idle[0].seconds)
        startup = idle[0].cpu - idle_rate * idle[0].seconds
        print(
            f"\n  start-up + shutdown (idle runs, extrapolated to 0 s): {startup:.2f} CPU s; idle: "
            f"{1000 * idle_rate:.1f} CPU ms per second ({1000 * idle_rate * args.tick:.2f} ms per {args.tick:g} s tick)"
        )
    elif idle:
        print(f"\n  start-up + {idle[0].seconds:.1f} s idle: {idle[0].cpu:.2f} CPU s")
        startup = idle[0].cpu
    marginal = None
    small, large = (sized[0], sized[-1]) if len(sized) >= 2 else (None, None)
    if small is not None and large.done > small.done:
        marginal = 1000 * (large.cpu - small.cpu) / (large.done - small.done)
        print(f"  marginal CPU per image ({small.done} -> {large.done} images): {marginal:.2f} ms")
    if startup is not None:
        for r in sized:
            if r.done:
                print(
                    f"  {r.label}: CPU per image without start-up ({startup:.2f} s): "
                    f"{1000 * (r.cpu - startup) / r.done:.2f} ms"
                )
    for r in sized:
        if r.floor is not None and r.done:
            print(
                f"  {r.label}: library floor per image (bench/floor.py, {r.floor.samples} images): {r.floor.ms:.2f} ms "
                f"(Pillow check + convert {r.floor.pillow_ms:.2f}, three httpx transfers {r.floor.transfers_ms:.2f}); "
                f"the daemon spends {r.ms_per_image / r.floor.ms:.2f}x that, {r.ms_per_image - r.floor.ms:.2f} ms "
                "of its own per image"
            )
    for r in sized:
        if r.threads is not None and r.done:
            print(
                f"  {r.label}: CPU by thread when every image was final (start-up in it, shutdown not): event loop "
                f"{r.threads.event_loop:.2f} s ({1000 * r.threads.event_loop / r.done:.2f} ms per image), worker "
                f"threads (Pillow, hashing, fsyncs) {r.threads.workers:.2f} s "
                f"({1000 * r.threads.workers / r.done:.2f} ms per image)"
            )
    ratio = large.rss_mb / small.rss_mb if small is not None and small.rss_mb else None
    if ratio is not None:
        print(f"  peak RSS {large.images} vs {small.images} images: {ratio:.3f}x")

    command = ["--sizes", *sizes]
    if args.images_per_product != 5:
        command += ["--images-per-product", args.images_per_product]
    if args.seed != 1:
        command += ["--seed", args.seed]
    if args.tick != 0.1:
        command += ["--tick", f"{args.tick:g}"]
    if sorted(args.idle or []) != DEFAULT_IDLE:
        command += ["--idle", *(f"{s:g}" for s in sorted(args.idle or []))]
    if args.real_enhance:
        command.append("--real-enhance")
    if args.floor_samples != 200:
        command += ["--floor-samples", args.floor_samples]
    cmd = command_line("bench/overhead.py", *command)
    print(f"command: {cmd}")

    rows: list[Row] = []
    if sized:
        top = sized[-1]
        rows.append(
            Row(
                SCENARIO,
                f"daemon CPU per image at {top.images:,} images",
                top.ms_per_image,
                "ms",
                limit=CPU_TARGET_MS,
                limit_kind="ceiling",
                target=f"< {CPU_TARGET_MS:g} ms",
                met=bool(top.ms_per_image < CPU_TARGET_MS),
                command=cmd,
            )
        )
        if marginal is not None:
            rows.append(
                Row(
                    SCENARIO,
                    f"daemon CPU per extra image, {small.images:,} -> {top.images:,}",
                    marginal,
                    "ms",
                    limit=CPU_TARGET_MS,
                    limit_kind="ceiling",
                    target=f"< {CPU_TARGET_MS:g} ms",
                    met=bool(marginal < CPU_TARGET_MS),
                    command=cmd,
                )
            )
        if top.floor is not None:
            rows.append(
                Row(
                    SCENARIO,
                    "library floor per image: Pillow check + convert, three httpx transfers",
                    top.floor.ms,
                    "ms",
                    command=cmd,
                )
            )
            over_floor = top.ms_per_image / top.floor.ms
            rows.append(
                Row(
                    SCENARIO,
                    f"daemon CPU per image at {top.images:,} images, over the library floor",
                    over_floor,
                    "x",
                    limit=FLOOR_RATIO_TARGET,
                    limit_kind="ceiling",
                    target=f"<= {FLOOR_RATIO_TARGET:g}x",
                    met=bool(over_floor <= FLOOR_RATIO_TARGET),
                    command=cmd,
                )
            )
        if top.threads is not None and top.done:
            rows.append(
                Row(
                    SCENARIO,
                    f"of the daemon's CPU per image at {top.images:,} images: in worker threads "
                    "(Pillow, hashing, fsyncs)",
                    1000 * top.threads.workers / top.done,
                    "ms",
                    command=cmd,
                )
            )
            rows.append(
                Row(
                    SCENARIO,
                    f"of the daemon's CPU per image at {top.images:,} images: in the event-loop "
                    "thread (HTTP, GraphQL, SQLite, scheduling; start-up in it)",
                    1000 * top.threads.event_loop / top.done,
                    "ms",
                    command=cmd,
                )
            )
        for r in reversed(sized):
            rows.append(
                Row(
                    SCENARIO,
                    f"peak RSS at {r.images:,} images",
                    r.rss_mb,
                    "MB",
                    limit=RSS_TARGET_MB,
                    limit_kind="ceiling",
                    target=f"< {RSS_TARGET_MB:g} MB",
                    met=bool(r.rss_mb < RSS_TARGET_MB),
                    command=cmd,
                )
            )
    if ratio is not None:
        rows.append(
            Row(
                SCENARIO,
                f"peak RSS, {large.images:,} vs {small.images:,} images",
                ratio,
                "x",
                limit=1 + RSS_SPREAD,
                limit_kind="ceiling",
                target="within ±10%",
                met=bool(1 - RSS_SPREAD <= ratio <= 1 + RSS_SPREAD),
                command=cmd,
            )
        )
    if startup is not None:
        rows.append(Row(SCENARIO, "daemon start-up + shutdown CPU", startup, "s", command=cmd))
    if not args.profile:  # a profiled run shares the machine with py-spy: not a figure for the table
        emit(rows)

    broken = [r.label for r in sized if r.timed_out or r.done != r.images]
    broken += [r.label for r in runs if math.isnan(r.cpu) or not r.peak_rss_kib]
    if broken:
        print(f"  BROKEN: {', '.join(broken)} (timed out, images not done, or no rusage)", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
