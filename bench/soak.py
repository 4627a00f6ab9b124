"""Soak (not a test): a day of work compressed into minutes, with faults on, watching the daemon's
memory, file descriptors, threads and asyncio tasks.

    .venv/bin/python bench/soak.py --minutes 10            # full size: thousands of images
    .venv/bin/python bench/soak.py --seconds 30 --batch 10 # small: what tests/e2e/test_soak.py runs

The real daemon (`retouch run`, a subprocess with a real config and SQLite file) against the Shopify
and AI Gen Studio sandboxes on loopback:
- new products arrive all the time: `--batch` products of one image every `--arrive-every` s
  for the whole duration, so discovery keeps finding work (then arrivals stop and the queue drains);
- AI Gen Studio's quota window is short (`--window` s, the daemon's [aigenstudio] limits say the
  same), so the daemon paces through many windows; its enhancement is canned (bench/overhead.py's
  `make_instant`): real full-size PNG results, unique per item, without the sandbox's Pillow work
  competing for the CPU;
- faults, set over HTTP the way tests set them: on the provider a rate (`--fault-rate` of creates
  and status polls answer 503, a few a 502 HTML page, and the 2nd create a 500 at any rate); on
  Shopify, every `--sample-every` s, one 5xx (500/502/503 in turn), a THROTTLED answer every 10th
  time and a media that fails processing every 5th (it may hit a merchant's new image, which the
  daemon then skips, or one of its own results).

Every `--sample-every` s: VmRSS (/proc/<pid>/status), open fds (/proc/<pid>/fd), threads
(/proc/<pid>/task) and asyncio tasks (`retouch_asyncio_tasks` on the daemon's /metrics). Figures
after warm-up (the first `--warmup` of the run): start = the first tenth of the samples (at least
3), end = the last tenth while work still arrives — RSS their median, counts their floor (at any
instant they include the work in flight; a leak raises the floor) — and the max over the run.
Flat: end RSS within 10% of start, fds and tasks not grown by more than `FD_SLACK`/`TASK_SLACK`. A daemon exit is a crash: it is counted and the
daemon restarted (as systemd would). At the end every promise is checked (tests/crash_harness.py)
and the backups are re-hashed. One ProofRow (suite "soak") and one `SOAK-FIGURES {json}` line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_run import free_port  # noqa: E402
from overhead import canned_results, make_instant  # noqa: E402
from proof import ProofRow, command_line, emit, problem_columns  # noqa: E402

from conftest import SHOP_TOKEN, config_text, image_states  # noqa: E402
from crash_harness import FINAL, check_promises  # noqa: E402
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox  # noqa: E402
from retouch.plugin.shopify.sandbox import ShopifySandbox  # noqa: E402

RSS_TOLERANCE = 0.10
FD_SLACK = 3  # an HTTP connection more or less in the pool at the moment of a sample
TASK_SLACK = 5  # a step's per-product tasks alive at the moment of a sample
FIGURES = "SOAK-FIGURES "


@dataclass
class Sample:
    at: float  # seconds since the daemon started
    rss_kib: int
    fds: int
    threads: int
    tasks: int | None  # None when the metrics endpoint did not answer
    processed: int  # images final so far


@dataclass
class Figures:
    seconds: float
    images: int
    faults: dict[str, int]
    samples: list[Sample] = field(default_factory=list)
    warm_samples: int = 0  # how many samples are warm-up (not in start/end)
    crashes: int = 0
    tracebacks: int = 0
    states: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def _window(self, which: str) -> list[Sample]:
        """The first or last tenth of the samples after warm-up (at least 3)."""
        loaded = self.samples[self.warm_samples :]
        size = max(3, len(loaded) // 10)
        return loaded[:size] if which == "start" else loaded[-size:]

    def figure(self, name: str, which: str) -> float:
        """RSS: the window's median. Counts (fds, threads, tasks): the window's floor — at any instant
        they include the work in flight (a step's per-product tasks, a pooled connection), while a
        leak raises the floor."""
        values = [getattr(s, name) for s in self._window(which) if getattr(s, name) is not None]
        if not values:
            return float("nan")
        return statistics.median(values) if name == "rss_kib" else min(values)

    def peak(self, name: str) -> float:
        return max((getattr(s, name) for s in self.samples if getattr(s, name) is not None), default=float("nan"))

    def flatness_problems(self) -> list[str]:
        if len(self.samples) - self.warm_samples < 4:
            return [f"only {len(self.samples) - self.warm_samples} samples after warm-up: too short to judge"]
        problems = []
        rss = (self.figure("rss_kib", "start"), self.figure("rss_kib", "end"))
        if rss[1] > rss[0] * (1 + RSS_TOLERANCE):
            problems.append(f"RSS grew {rss[0] / 1024:.1f} -> {rss[1] / 1024:.1f} MB (> {RSS_TOLERANCE:.0%})")
        for name, slack in (("fds", FD_SLACK), ("threads", FD_SLACK), ("tasks", TASK_SLACK)):
            start, end = self.figure(name, "start"), self.figure(name, "end")
            if end != end or start != start:
                problems.append(f"no {name} figures (metrics endpoint silent)")
            elif end - start > slack:
                problems.append(f"{name} grew {start:.0f} -> {end:.0f} with images processed")
        return problems

    def detail(self) -> str:
        def f(name: str, scale: float = 1, unit: str = "") -> str:
            return (
                f"{name.split('_')[0]} {self.figure(name, 'start') / scale:.1f}{unit} -> "
                f"{self.figure(name, 'end') / scale:.1f}{unit} (max {self.peak(name) / scale:.1f}{unit})"
            )

        return (
            f"{self.seconds / 60:.1f} min; {f('rss_kib', 1024, ' MB')}; {f('fds')}; {f('threads')}; "
            f"{f('tasks')}; faults {self.faults}"
        )


def proc_figures(pid: int) -> tuple[int, int, int] | None:
    """(VmRSS KiB, open fds, threads) of a live process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))
    except (OSError, StopIteration, ValueError):
        return None


def asyncio_tasks(http: httpx.Client, metrics_url: str) -> int | None:
    try:
        text = http.get(metrics_url, timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("retouch_asyncio_tasks "):
            return int(float(line.split()[1]))
    return None


def provider_faults(http: httpx.Client, provider: AigenSandbox, rate: float, budget: int) -> int:
    """Faults at a rate on the provider's creates and polls (over HTTP, as tests set them); returns
    how many were asked for."""
    plans = [
        {"endpoint": "create", "status": 500, "count": 1, "skip": 1},  # the 2nd create, whatever the rate
        {"endpoint": "create", "status": 503, "count": budget, "probability": rate},
        {"endpoint": "status", "status": 503, "count": budget, "probability": rate},
        {"endpoint": "status", "mode": "html", "count": budget // 4 or 1, "probability": rate / 4},
    ]
    for plan in plans:
        http.post(f"{provider.server_url}/_sandbox/faults", json=plan).raise_for_status()
    return sum(p["count"] for p in plans)


def shopify_fault(http: httpx.Client, shop: ShopifySandbox, n: int) -> dict[str, int]:
    """The n-th round of Shopify faults; returns what was added, by kind."""
    added = {"http": 1}
    http.post(
        f"{shop.shop_url}/_sandbox/faults", json={"status": (500, 502, 503)[n % 3], "count": 1}
    ).raise_for_status()
    if n % 10 == 9:  # a THROTTLED empties the bucket: the client waits for it to refill
        http.post(f"{shop.shop_url}/_sandbox/faults", json={"throttle": True}).raise_for_status()
        added["throttle"] = 1
    if n % 5 == 4:
        http.post(f"{shop.shop_url}/_sandbox/faults", json={"fail_media_processing": 1}).raise_for_status()
        added["media_failed"] = 1
    return added


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "retouch.sync", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("a"),
        env={**os.environ, "NO_COLOR": "1"},
    )


def soak(
    tmp: Path,
    *,
    seconds: float,
    batch: int,
    arrive_every: float,
    window: float,
    fault_rate: float,
    sample_every: float,
    warmup: float,
    seed: int,
    drain_timeout: float,
) -> Figures:
    # Shopify's cost bucket is raised (as bench/overhead.py does): at the standard restore rate the
    # bucket, not the daemon, would set the pace, and far fewer images would go through.
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.05, bucket_size=20_000, restore_rate=2_000)
    shop_server = shop.start()
    # Per window: room for a few batches' images, so the quota (not the sandbox) sets the pace.
    per_window = max(20, int(batch / arrive_every * window * 1.5))
    provider = AigenSandbox(
        window_seconds=window,
        jobs_per_window=per_window,
        images_per_window=per_window,
        polls_per_window=per_window * 10,
        active_jobs_per_key=2,
        active_jobs_per_account=2,
        seconds_per_item=0.01,
    )
    provider_server = provider.start()
    make_instant(provider, canned_results(seed))
    port = free_port()
    limits = (
        f'window = "{window:g}s", jobs = {per_window}, images = {per_window}, polls = {per_window * 10}, '
        f'active_jobs = 2'
    )
    config = tmp / "config.toml"
    config.write_text(
        config_text(
            shop, provider, tmp, new_only=False, limits=limits, extra=f'\n[server]\nlisten = "127.0.0.1:{port}"\n'
        ).replace('level = "debug"', 'level = "info"')
    )
    db, log = tmp / "retouch.db", tmp / "daemon.log"
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    originals: dict[str, dict] = {}
    shop_added: dict[str, int] = {}
    figures = Figures(seconds=0, images=0, faults={})
    # No kept-alive connections: the bench speaks to the sandboxes every few seconds, about as often
    # as uvicorn closes an idle one (5 s), and a request sent on a connection the server is closing
    # at that moment gets no answer (a run of 10 minutes died on it).
    http = httpx.Client(trust_env=False, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
    try:
        asked = provider_faults(http, provider, fault_rate, budget=100_000)
        daemon = start_daemon(config, log)
        started = time.monotonic()
        next_arrival = next_sample = started
        batches = rounds = 0
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            if now >= next_arrival:
                for product in shop.seed(products=batch, images_per_product=1, seed=seed * 100_000 + batches):
                    originals[product["legacy_id"]] = product["media"][0]
                batches += 1
                next_arrival += arrive_every
            if now >= next_sample:
                if daemon.poll() is not None:  # a crash: counted, and restarted as systemd would
                    figures.crashes += 1
                    daemon = start_daemon(config, log)
                for kind, count in shopify_fault(http, shop, rounds).items():
                    shop_added[kind] = shop_added.get(kind, 0) + count
                rounds += 1
                found = proc_figures(daemon.pid)
                if found is not None:
                    figures.samples.append(
                        Sample(
                            now - started,
                            *found,
                            asyncio_tasks(http, metrics_url),
                            sum(s in FINAL for s in image_states(db).values()),
                        )
                    )
                next_sample += sample_every
            time.sleep(max(0.05, min(next_arrival, next_sample) - time.monotonic()))
        figures.warm_samples = sum(s.at < seconds * warmup for s in figures.samples)
        # Arrivals stop, faults are cleared: the queue drains.
        provider_fired = asked - provider.faults.pending()
        http.delete(f"{provider.server_url}/_sandbox/faults").raise_for_status()
        pending_shop = shop.faults()
        http.delete(f"{shop.shop_url}/_sandbox/faults").raise_for_status()
        deadline = time.monotonic() + drain_timeout
        while True:
            states = image_states(db)
            if len(states) >= len(originals) and set(states.values()) <= FINAL:
                break
            if daemon.poll() is not None:
                figures.crashes += 1
                daemon = start_daemon(config, log)
            if time.monotonic() > deadline:
                figures.problems.append(
                    f"not drained in {drain_timeout:.0f} s: "
                    f"{ {s: list(states.values()).count(s) for s in set(states.values())} }"
                )
                break
            time.sleep(0.5)
        figures.seconds = time.monotonic() - started
        daemon.terminate()
        if daemon.wait(30) != 0:
            figures.crashes += 1
            figures.problems.append(f"the daemon exited {daemon.returncode} on SIGTERM")
        states = image_states(db)
        figures.states = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
        figures.images = sum(s in FINAL for s in states.values())
        served = shop.stats()
        media_failed = shop_added.get("media_failed", 0) - len(pending_shop["fail_media_processing"])
        figures.faults = {
            "provider": provider_fired,
            "shopify_http": served["faults_served"],
            "shopify_throttled": served["throttled"],
            "shopify_media_failed": media_failed,
        }
        figures.problems += check_promises(db, shop, provider, originals, "replace")
        figures.problems += rehash_backups(db, tmp / "backups")
        if figures.states.get("failed", 0) > media_failed:
            figures.problems.append(
                f"{figures.states['failed']} images failed, more than the {media_failed} processing failures injected"
            )
        figures.tracebacks = log.read_text(errors="replace").count("Traceback")
    finally:
        http.close()
        provider_server.stop()
        shop_server.stop()
    return figures


def rehash_backups(db: Path, backups: Path) -> list[str]:
    """Every done image's backup holds exactly the bytes its hash names (the original's)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        shas = [row[0] for row in conn.execute("select backup_sha256 from image where state = 'done'")]
    return [
        f"backup {sha[:12]} is not byte-identical"
        for sha in shas
        if hashlib.sha256((backups / sha[:2] / sha).read_bytes()).hexdigest() != sha
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--minutes", type=float, default=None)
    size.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--batch", type=int, default=25, help="products (one image each) per arrival")
    parser.add_argument("--arrive-every", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0, help="AI Gen Studio quota window, seconds")
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run left out of start/end")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=300)
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = soak(
        Path(tempfile.mkdtemp(prefix="retouch-soak-")),
        seconds=seconds,
        batch=args.batch,
        arrive_every=args.arrive_every,
        window=args.window,
        fault_rate=args.fault_rate,
        sample_every=args.sample_every,
        warmup=args.warmup,
        seed=args.seed,
        drain_timeout=args.drain_timeout,
    )
    flat = figures.flatness_problems()
    print(f"soak: {figures.images} images in {figures.seconds:.0f} s, states {figures.states}; {figures.detail()}")
    for sample in figures.samples:
        print(
            f"  {sample.at:7.1f} s  RSS {sample.rss_kib / 1024:6.1f} MB  fds {sample.fds:3d}  threads "
            f"{sample.threads:3d}  tasks {sample.tasks}  processed {sample.processed}"
        )
    print(FIGURES + json.dumps({**asdict(figures), "flatness": flat}), flush=True)
    columns = problem_columns(figures.problems)
    columns["problems"] += flat
    size_args = ["--seconds", args.seconds] if args.seconds is not None else ["--minutes", seconds / 60]
    emit(
        [
            ProofRow(
                suite="soak",
                runs=1,
                faults=sum(figures.faults.values()),
                images=figures.images,
                crashes=figures.crashes + figures.tracebacks,
                **columns,
                detail=figures.detail(),
                command=command_line(
                    "bench/soak.py",
                    *size_args,
                    "--batch",
                    args.batch,
                    "--arrive-every",
                    args.arrive_every,
                    "--window",
                    args.window,
                    "--fault-rate",
                    args.fault_rate,
                    "--seed",
                    args.seed,
                ),
            )
        ]
    )
    return 1 if figures.problems or flat or figures.crashes or figures.tracebacks else 0


if __name__ == "__main__":
    raise SystemExit(main())
