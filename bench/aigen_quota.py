"""AI Gen Studio quota race (not a test): on a backlog far larger than the quota, how many images a
window the provider completes for retouch, against a naive client that follows the quickstart
literally.

    .venv/bin/python bench/aigen_quota.py [--images 500] [--windows 10] [--window 30] [--seed 1]
        [--only retouch|naive ...]

The quota is the documented one, per key: 5 job creations, 25 images, 120 status polls per window
and 1 active job (20 images at most in a job). The bound is therefore 25 images per window.

Time is scaled: the window is `--window` seconds instead of the documented hour (default 30 s:
factor 30/3600), and everything time-like with it: retouch's `[aigenstudio] limits` window is the
same window, its `tick` (shipped 2 s) and `discover_every` (shipped 300 s) are scaled, and so is
the quickstart's 5 s between polls. Jobs take a realistic share of the window: the sandbox's
`seconds_per_item` is window / 200, so a full 20-image job takes 10% of the window (an hour's
window: 18 s an image, 6 minutes a 20-image job; at the default 30 s window: 0.15 s an image, 3 s a
job). The sandbox's own work (fetching the source, enhancing a 640x640 photo: ~0.2 s an image on
a small machine, shared with the Shopify sandbox in this process) is a floor under that: at the
default window a job takes 2-4 s rather than 3, at `--window 6` (the quick version for the test
suite: `--images 40 --windows 2 --window 6`, about 30 s) a 20-image job takes 60% of the window
instead of 10%, so that version checks that everything runs, not the target. Not scaled: the
Shopify sandbox (its cost bucket refills in real time, so discovery and write-back cost what they
would for real, which weighs 120 times more against a 30 s window than against an hour), the
daemon's built-in constants (e.g. shutdown_grace), `discover_overlap` (5 s, as the other benches)
and the sandbox's Retry-After, which is whole seconds, at least 1.

Two runs, each on a fresh AI Gen Studio sandbox, Shopify sandbox and store (same seed, same images):
  (a) retouch   the real daemon (`python -m retouch.sync run -c config`), new_only = false,
                write-back "replace", [aigenstudio] limits = the sandbox's limits
  (b) naive     the quickstart, literally: for each image in turn, POST one enhancement with one
                image (its own Idempotency-Key), then GET its status every 5 s (x factor) until it
                is over; any 429 (POST or GET): sleep the Retry-After header's seconds, try again

Each run is time-boxed: `--windows` windows counted from the first job the sandbox accepted (the
500-image backlog does not drain in 10 windows: that is the point). Everything is seen from inside
the sandbox (its state methods are wrapped in this process): when each job was accepted (or
refused with a 429), each status request, each item the provider completed.

The sandbox counts in fixed windows aligned to the epoch; the measured windows start at the first
accepted job, so a client that fills its quota at once and then hits a fixed window's reset gets
two windows' worth into its first measured window (the naive client's first window shows 10).
retouch paces against a sliding window (it does not know the alignment) and cannot do that.

Figures: images the PROVIDER completed in each window (mean over the windows, and the lowest one)
and their ratio to the bound (25); the 429s the sandbox answered; the busiest quota window's status
requests and job creations (the sandbox's own fixed windows, aligned to the epoch, counting refused
requests too; the sliding-window peak is printed beside it); and, for retouch, the images `done` in
its database (written back to the store) when the time box ended.
Targets: retouch >= 95% of the bound, zero 429s, polls within their quota.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import logging
import math
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import structlog
from daemon_run import FINAL_STATES, image_states, run_daemon_until_settled
from harness import Row, command_line, emit

from retouch.plugin.providers.aigenstudio import contract
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.providers.aigenstudio.sandbox.state import ApiError
from retouch.plugin.shopify.sandbox import ShopifySandbox

SCENARIO = "AI Gen Studio quota race"
SHOP_TOKEN = "shpat_bench_shop_token_0001"
KEY = "aigen_test_bench0123456789"  # a sandbox key: free, nothing charged
DOCUMENTED_WINDOW = 3600.0  # "per hour"
JOBS = contract.JOBS_PER_WINDOW  # 5
IMAGES = contract.IMAGES_PER_WINDOW  # 25: the bound, images per window
POLLS = contract.POLLS_PER_WINDOW  # 120
ACTIVE_JOBS = contract.ACTIVE_JOBS_PER_KEY  # 1
JOB_SHARE = 0.10  # a full job (20 images) takes this share of the window
DOCUMENTED_SLEEP = 5.0  # the quickstart's "poll every 5 seconds"
TARGET = 0.95
STARTUP_ALLOWANCE = 120.0  # seconds the daemon may take to get its first job accepted


# --- helpers ----------------------------------------------------------------------------------------


def seconds_per_item(window: float) -> float:
    return JOB_SHARE * window / contract.MAX_IMAGES_PER_JOB


def config_text(shop: ShopifySandbox, sandbox: AigenSandbox, tmp: Path, *, window: float) -> str:
    """As tests/conftest.py's config_text writes it, with the bench's window and scaled schedule."""
    factor = window / DOCUMENTED_WINDOW
    return f"""
[shop]
url = "{shop.shop_url}"
access_token = "{SHOP_TOKEN}"

[provider]
name = "aigenstudio"
api_key = "{KEY}"
base_url = "{sandbox.base_url}"
timeout = "10s"

[aigenstudio]
limits = {{ window = "{window:g}s", jobs = {JOBS}, images = {IMAGES}, polls = {POLLS}, active_jobs = {ACTIVE_JOBS} }}

[selection]
new_only = false

[writeback]
mode = "replace"
backup_dir = "{tmp / 'backups'}"

[schedule]
discover_every = "{300.0 * factor:g}s"
tick = "{2.0 * factor:g}s"
discover_overlap = "5s"

[storage]
url = "sqlite:///{tmp / 'retouch.db'}"

[log]
level = "debug"
format = "json"
"""


@dataclass
class Timeline:
    """What the sandbox did, seen from inside it, in wall-clock seconds (the sandbox's own clock):
    creations (accepted, replayed or refused), status requests (answered or refused), and each
    job's and each item's end."""

    # (at, "accepted" | "replayed" | "429" | another refusal's status, images)
    creates: list[tuple[float, str, int]] = field(default_factory=list)
    polls: list[tuple[float, bool]] = field(default_factory=list)  # (at, answered: not a 429)
    items: list[tuple[float, bool]] = field(default_factory=list)  # (at, completed: not failed)
    jobs: dict[str, list] = field(default_factory=dict)  # job id -> [accepted at, images, finished at | None]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[tuple[float, int]]:
        with self.lock:
            return [(t, n) for t, what, n in self.creates if what == "accepted"]

    def first_accepted(self) -> float | None:
        accepted = self.accepted()
        return accepted[0][0] if accepted else None


def record_events(sandbox: AigenSandbox) -> Timeline:
    """Wrap the sandbox's state (in this process) to keep the time of everything that counts. The
    429 total printed comes from sandbox.stats(); this adds *when*."""
    timeline = Timeline()
    state = sandbox._state
    create, poll, finish_item, finish = state.create, state.poll, state.finish_item, state.finish

    def recorded_create(record, idempotency_key, body, payload, base_url):
        try:
            job, replayed, headers = create(record, idempotency_key, body, payload, base_url)
        except ApiError as error:
            with timeline.lock:
                timeline.creates.append((time.time(), "429" if error.status == 429 else f"{error.status}", 0))
            raise
        now = time.time()
        with timeline.lock:
            timeline.creates.append((now, "replayed" if replayed else "accepted", len(job.items)))
            if not replayed:
                timeline.jobs[job.id] = [now, len(job.items), None]
        return job, replayed, headers

    def recorded_poll(record, enhancement_id):
        try:
            answer = poll(record, enhancement_id)
        except ApiError as error:
            with timeline.lock:
                timeline.polls.append((time.time(), error.status != 429))
            raise
        with timeline.lock:
            timeline.polls.append((time.time(), True))
        return answer

    def recorded_finish_item(job, item, *, result, error):
        answer = finish_item(job, item, result=result, error=error)
        with timeline.lock:
            timeline.items.append((time.time(), result is not None))
        return answer

    def recorded_finish(job):
        status = finish(job)
        with timeline.lock:
            if job.id in timeline.jobs:
                timeline.jobs[job.id][2] = time.time()
        return status

    state.create, state.poll, state.finish_item, state.finish = (
        recorded_create,
        recorded_poll,
        recorded_finish_item,
        recorded_finish,
    )
    return timeline


def sliding_peak(times: list[tuple[float, int]], window: float) -> int:
    """The most units in any half-open interval of `window` seconds."""
    times = sorted(times)
    best = total = start = 0
    for at, count in times:
        total += count
        while times[start][0] <= at - window:
            total -= times[start][1]
            start += 1
        best = max(best, total)
    return best


def fixed_peak(times: list[tuple[float, int]], window: float) -> int:
    """The most units in one of the sandbox's own windows (fixed, aligned to the epoch)."""
    per: Counter[int] = Counter()
    for at, count in times:
        per[math.floor(at / window)] += count
    return max(per.values(), default=0)


@dataclass
class Result:
    name: str
    per_window: list[int]  # images the provider completed in each measured window
    accepted_per_window: list[int]  # images in the jobs it accepted in each measured window
    jobs: int  # jobs accepted within the measured span
    rate_limited: int  # 429s the sandbox answered (its stats)
    polls: int  # status requests the sandbox saw (answered or refused)
    busiest_polls: int  # the busiest quota window's status requests (fixed windows; refused ones too)
    busiest_polls_sliding: int
    busiest_jobs: int  # the busiest quota window's creation attempts that reached the quota check
    busiest_images: int  # the busiest quota window's accepted images
    busiest_images_sliding: int
    written_back: int | None  # images done in the store at the end (retouch only)
    wall: float  # the run's wall time, setup included
    notes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.per_window) / len(self.per_window) if self.per_window else 0.0

    @property
    def lowest(self) -> int:
        return min(self.per_window, default=0)


def start_sandboxes(args) -> tuple[ShopifySandbox, object, AigenSandbox, list[dict]]:
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    shop_server = shop.start()
    sandbox = AigenSandbox(
        window_seconds=args.window,
        jobs_per_window=JOBS,
        images_per_window=IMAGES,
        polls_per_window=POLLS,
        active_jobs_per_key=ACTIVE_JOBS,
        active_jobs_per_account=max(ACTIVE_JOBS, contract.ACTIVE_JOBS_PER_ACCOUNT),
        seconds_per_item=seconds_per_item(args.window),
    )
    sandbox.start()
    products = shop.seed(products=args.images, images_per_product=1, seed=args.seed)
    return shop, shop_server, sandbox, products


def measure(
    name: str, args, sandbox: AigenSandbox, timeline: Timeline, wall: float, written_back: int | None
) -> Result:
    """The figures of one run, over `--windows` windows from the first accepted job."""
    window = args.window
    t0 = timeline.first_accepted()
    if t0 is None:
        raise RuntimeError(f"{name}: the sandbox never accepted a job")
    end = t0 + args.windows * window

    def slot(at: float) -> int | None:
        k = math.floor((at - t0) / window)
        return k if 0 <= k < args.windows else None

    per_window = [0] * args.windows
    accepted_per_window = [0] * args.windows
    with timeline.lock:
        items = list(timeline.items)
        polls = list(timeline.polls)
        creates = list(timeline.creates)
    for at, completed in items:
        if completed and (k := slot(at)) is not None:
            per_window[k] += 1
    for at, what, n in creates:
        if what == "accepted" and (k := slot(at)) is not None:
            accepted_per_window[k] += n
    poll_times = [(at, 1) for at, _ in polls]
    checked_creates = [(at, 1) for at, what, _ in creates if what in ("accepted", "429")]
    image_times = [(at, n) for at, what, n in creates if what == "accepted"]
    stats = sandbox.stats()["keys"].get(KEY, {})
    result = Result(
        name,
        per_window,
        accepted_per_window,
        sum(1 for at, what, _ in creates if what == "accepted" and at < end),
        stats.get("rate_limited", 0),
        len(polls),
        fixed_peak(poll_times, window),
        sliding_peak(poll_times, window),
        fixed_peak(checked_creates, window),
        fixed_peak(image_times, window),
        sliding_peak(image_times, window),
        written_back,
        wall,
    )
    result.notes.extend(pace_notes(timeline, t0, end, window))
    return result


def pace_notes(timeline: Timeline, t0: float, end: float, window: float) -> list[str]:
    """Where the time went: job sizes, how busy the provider was, and the gaps between jobs."""
    with timeline.lock:
        jobs = sorted(list(j) for j in timeline.jobs.values())
    jobs = [j for j in jobs if j[0] < end]
    if not jobs:
        return []
    notes = []
    sizes = Counter(n for _, n, _ in jobs)
    notes.append(
        "jobs accepted in the span: "
        + ", ".join(f"{c} x {n} image{'s' if n > 1 else ''}" for n, c in sorted(sizes.items(), reverse=True))
    )
    durations = [f - a for a, _, f in jobs if f is not None]
    busy = sum(min(f if f is not None else end, end) - a for a, _, f in jobs)
    notes.append(
        f"provider busy {busy / (end - t0):.0%} of the span; jobs ran {min(durations):.2f}-{max(durations):.2f} s"
        if durations
        else f"provider busy {busy / (end - t0):.0%} of the span"
    )
    with timeline.lock:
        polls = sorted(t for t, _ in timeline.polls)
    # How long each finished job waited for the status request that could see it finished, and how
    # long after its end the next job was created.
    lags = [polls[i] - f for _, _, f in jobs if f is not None and (i := bisect.bisect_left(polls, f)) < len(polls)]
    if lags:
        notes.append(
            f"job end at the provider -> next status request: mean {sum(lags) / len(lags):.2f} s, max {max(lags):.2f} s"
        )
    gaps = [b[0] - a[2] for a, b in itertools.pairwise(jobs) if a[2] is not None]
    if gaps:
        notes.append(
            f"job end -> next creation: mean {sum(gaps) / len(gaps):.2f} s, min {min(gaps):.2f} s, "
            f"max {max(gaps):.2f} s"
        )
    if len(jobs) <= 30:  # one line per job: window, images, accepted at, ran, end -> seen, end -> next
        for index, (a, n, f) in enumerate(jobs):
            seen = next((p - f for p in polls if f is not None and p >= f), None)
            following = jobs[index + 1][0] - f if f is not None and index + 1 < len(jobs) else None
            notes.append(
                f"  job {index + 1:2d}: window {int((a - t0) // window)}, {n:2d} images, accepted at "
                f"{a - t0:6.2f} s, ran {'-' if f is None else f'{f - a:5.2f}'} s, end -> next poll "
                f"{'-' if seen is None else f'{seen:5.2f}'} s, end -> next job "
                f"{'-' if following is None else f'{following:5.2f}'} s"
            )
    notes.append(idle_note(jobs, t0, end, window))
    return notes


def idle_note(jobs: list[list], t0: float, end: float, window: float) -> str:
    """How long the provider sat idle (no job active) while the quota would have taken another job:
    as the sandbox counts (its fixed window had a job and an image left) and as a sliding-window
    pacer counts (the last `window` seconds held fewer than 5 jobs and 25 images). Sampled."""
    accepted = [(a, n) for a, n, _ in jobs]
    step = window / 1000
    idle = idle_fixed = idle_sliding = 0.0
    per_window_sliding = [0.0] * max(1, round((end - t0) / window))
    t = t0
    while t < end:
        if not any(a <= t < (f if f is not None else math.inf) for a, _, f in jobs):
            idle += step
            start = math.floor(t / window) * window
            fixed = [n for a, n in accepted if start <= a <= t]
            sliding = [n for a, n in accepted if t - window < a <= t]
            if len(fixed) < JOBS and sum(fixed) < IMAGES:
                idle_fixed += step
            if len(sliding) < JOBS and sum(sliding) < IMAGES:
                idle_sliding += step
                per_window_sliding[min(len(per_window_sliding) - 1, int((t - t0) / window))] += step
        t += step
    return (
        f"provider idle {idle:.1f} s of {end - t0:.0f} s; of it, with quota left for another job: "
        f"{idle_fixed:.1f} s by the sandbox's fixed windows, {idle_sliding:.1f} s by a sliding window "
        f"(per window: {', '.join(f'{s:.1f}' for s in per_window_sliding)} s)"
    )


def writeback_count(db: Path, media_ids: list[str]) -> int:
    states = image_states(db)
    return sum(1 for m in media_ids if states.get(m) == "done")


# --- (a): the real daemon ----------------------------------------------------------------------------


class TimeBox(Exception):
    """The measured span is over: stop the daemon (run_daemon_until_settled's finally does)."""


def run_retouch(args) -> Result:
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="retouch-bench-aigen-"))
    shop, shop_server, sandbox, products = start_sandboxes(args)
    timeline = record_events(sandbox)
    media_ids = [m["id"] for p in products for m in p["media"]]
    span = args.windows * args.window
    try:
        config = tmp / "config.toml"
        config.write_text(config_text(shop, sandbox, tmp, window=args.window))
        db = tmp / "retouch.db"
        log_path = tmp / "daemon.log"
        marks: dict[str, float] = {}

        def time_box(states: list, at: float) -> None:
            first = timeline.first_accepted()
            if first is not None:
                marks.setdefault("first_job", at - (time.time() - first))
                if time.time() >= first + span:
                    raise TimeBox

        drained = None
        try:
            outcome = run_daemon_until_settled(
                config, db, media_ids, log_path, timeout=STARTUP_ALLOWANCE + span, on_tick=time_box
            )
        except TimeBox:
            pass
        else:
            # Not the time box: the backlog drained, the daemon exited, or no job came in time.
            if all(s in FINAL_STATES for s in outcome.states):
                drained = outcome.elapsed
            elif timeline.first_accepted() is not None:
                raise RuntimeError(
                    f"the daemon exited after {outcome.elapsed:.1f} s, before the time box ended; see {log_path}"
                )
        done = writeback_count(db, media_ids)
        result = measure("retouch", args, sandbox, timeline, time.monotonic() - t_start, done)
        if drained is not None:
            result.notes.insert(
                0,
                f"the backlog DRAINED {drained:.1f} s after the daemon started, before the "
                f"time box ended: the windows after that count what was left (use more --images)",
            )
        if "first_job" in marks:
            result.notes.insert(0, f"first job accepted {marks['first_job']:.1f} s after the daemon started")
        result.notes.extend(daemon_log_notes(log_path))
        result.notes.extend(store_notes(db))
        result.notes.append(f"daemon log: {log_path}")
        return result
    finally:
        sandbox.close()
        shop_server.stop()


def daemon_log_notes(path: Path) -> list[str]:
    """Counts of what the daemon said about the quota and its jobs (JSON log)."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line).get("event")
        except ValueError:
            continue
        if event in (
            "rate_limited",
            "poll_retry",
            "submit_retry",
            "job_created",
            "submitted",
            "job_finished",
            "item_failed",
            "enhancement_lost",
            "writeback_retry",
            "step_failed",
            "step_crashed",
        ):
            counts[event] += 1
    return [f"daemon log: {', '.join(f'{k} x{v}' for k, v in sorted(counts.items()))}"] if counts else []


def store_notes(db: Path) -> list[str]:
    """How long retouch took to see each job done, and how many polls it spent on each."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "select submitted_at, finished_at, polls from job where finished_at is not null order by id"
            ).fetchall()
    except sqlite3.OperationalError:
        return []
    if not rows:
        return []
    seen = [(datetime.fromisoformat(f) - datetime.fromisoformat(s)).total_seconds() for s, f, _ in rows]
    polls = [p for *_, p in rows]
    return [
        (
            f"jobs seen done {sum(seen) / len(seen):.2f} s after submission on average (max {max(seen):.2f}); "
            f"{sum(polls) / len(polls):.1f} polls per job (max {max(polls)})"
        )
    ]


# --- (b): the quickstart, literally -------------------------------------------------------------------


def run_naive(args) -> Result:
    t_start = time.monotonic()
    factor = args.window / DOCUMENTED_WINDOW
    pause = DOCUMENTED_SLEEP * factor
    _shop, shop_server, sandbox, products = start_sandboxes(args)
    timeline = record_events(sandbox)
    span = args.windows * args.window
    images = [(p["legacy_id"], m["id"].rsplit("/", 1)[-1], m["url"]) for p in products for m in p["media"]]
    slept_429 = 0.0

    def over() -> bool:
        first = timeline.first_accepted()
        return first is not None and time.time() >= first + span

    def nap(seconds: float) -> None:
        first = timeline.first_accepted()
        if first is not None:
            seconds = min(seconds, max(0.0, first + span - time.time()))
        time.sleep(seconds)

    def retry_after(answer: httpx.Response) -> float:
        try:
            return float(answer.headers.get("Retry-After", "1"))
        except ValueError:
            return 1.0

    try:
        with httpx.Client(
            base_url=sandbox.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, trust_env=False
        ) as http:
            for product_id, media_id, url in images:
                if over():
                    break
                body = {"preset": contract.DEFAULT_PRESET, "images": [{"external_id": product_id, "source_url": url}]}
                enhancement_id = None
                while not over():  # POST; on a 429 sleep Retry-After and try again
                    answer = http.post(
                        contract.ENHANCEMENTS_PATH,
                        json=body,
                        headers={contract.IDEMPOTENCY_HEADER: f"naive-{media_id}"},
                    )
                    if answer.status_code == 429:
                        wait = retry_after(answer)
                        slept_429 += wait
                        nap(wait)
                        continue
                    answer.raise_for_status()
                    enhancement_id = answer.json()["enhancement"]["id"]
                    break
                while enhancement_id is not None and not over():  # every 5 s: GET, over?
                    nap(pause)
                    answer = http.get(f"{contract.ENHANCEMENTS_PATH}/{enhancement_id}")
                    if answer.status_code == 429:
                        wait = retry_after(answer)
                        slept_429 += wait
                        nap(wait)
                        continue
                    answer.raise_for_status()
                    if answer.json()["enhancement"]["status"] in contract.TERMINAL_STATUSES:
                        break
            drained = not over()
        result = measure("naive (quickstart)", args, sandbox, timeline, time.monotonic() - t_start, None)
        if drained:
            result.notes.append("the backlog DRAINED before the time box ended (use more --images)")
        result.notes.append(f"Retry-After headers asked it to wait {slept_429:.1f} s in all")
        return result
    finally:
        sandbox.close()
        shop_server.stop()


# --- report -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500, help="the backlog")
    parser.add_argument("--windows", type=int, default=10, help="windows measured (the time box)")
    parser.add_argument("--window", type=float, default=30.0, help="the quota's window in seconds (documented: 3600)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", choices=["retouch", "naive"], action="append", help="run only these (repeatable); default: both"
    )
    args = parser.parse_args()
    if args.images < 1 or args.windows < 1 or not args.window > 0:
        parser.error("--images and --windows must be at least 1, --window positive")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    factor = args.window / DOCUMENTED_WINDOW
    runs = args.only or ["retouch", "naive"]

    results: dict[str, Result] = {}
    for run in dict.fromkeys(runs):
        t0 = time.monotonic()
        print(f"... {run}", file=sys.stderr, flush=True)
        results[run] = run_retouch(args) if run == "retouch" else run_naive(args)
        print(f"... {run} took {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

    print(
        f"\n{SCENARIO}: {args.images} images, {args.windows} windows of {args.window:g} s "
        f"(time x{factor:.3g}), seed {args.seed}; per window {JOBS} jobs, {IMAGES} images, {POLLS} polls, "
        f"{ACTIVE_JOBS} active job; {seconds_per_item(args.window):.3g} s an image "
        f"(a 20-image job {JOB_SHARE:.0%} of the window); bound {IMAGES} images/window"
    )
    header = (
        f"{'run':<19} {'wall s':>6} {'img/win':>7} {'of bound':>8} {'lowest':>6} {'jobs':>5} {'429s':>5} "
        f"{'polls':>5} {'busiest polls':>13} {'jobs':>4} {'images':>6} {'written back':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results.values():
        back = "-" if r.written_back is None else str(r.written_back)
        print(
            f"{r.name:<19} {r.wall:6.0f} {r.mean:7.1f} {r.mean / IMAGES:8.0%} {r.lowest:6d} {r.jobs:5d} "
            f"{r.rate_limited:5d} {r.polls:5d} {r.busiest_polls:>6d}/{POLLS:<3d} ({r.busiest_polls_sliding:>3d}) "
            f"{r.busiest_jobs:2d}/{JOBS} {r.busiest_images:3d}/{IMAGES} {back:>12}"
        )
    print()
    for r in results.values():
        print(f"  {r.name}: completed per window {r.per_window}; accepted per window {r.accepted_per_window}")
        for note in r.notes:
            print(f"  {r.name}: {note}")
    print()
    print(
        "  (busiest: the sandbox's own fixed windows, aligned to the epoch, counting refused requests too; "
        "in brackets the sliding-window peak of polls; images: accepted; sliding peak of images: "
        + ", ".join(f"{r.name} {r.busiest_images_sliding}" for r in results.values())
        + ")"
    )

    args_used = [
        "--images",
        args.images,
        "--windows",
        args.windows,
        "--window",
        f"{args.window:g}",
        "--seed",
        args.seed,
    ]
    args_used += [a for run in (args.only or []) for a in ("--only", run)]
    command = command_line("bench/aigen_quota.py", *args_used)
    ours, naive = results.get("retouch"), results.get("naive")
    if ours is not None:
        ratio = ours.mean / IMAGES
        print(
            f"  target retouch >= {TARGET:.0%} of the bound: {ratio:.0%} -> {'met' if ratio >= TARGET else 'NOT met'}"
        )
        print(f"  target zero 429s: {ours.rate_limited} -> {'met' if ours.rate_limited == 0 else 'NOT met'}")
        print(
            f"  target polls within quota: {ours.busiest_polls}/{POLLS} -> "
            f"{'met' if ours.busiest_polls <= POLLS else 'NOT met'}"
        )
        print(f"command: {command}")
        emit(
            [
                Row(
                    SCENARIO,
                    f"images completed per window (mean of {args.windows})",
                    ours.mean,
                    "images",
                    limit=IMAGES,
                    target=f">= {TARGET:.0%} of the bound",
                    met=ratio >= TARGET,
                    naive=f"{naive.mean:.1f} ({naive.mean / IMAGES:.0%})" if naive else "",
                    command=command,
                ),
                Row(
                    SCENARIO,
                    "images completed in the lowest window",
                    ours.lowest,
                    "images",
                    limit=IMAGES,
                    naive=f"{naive.lowest} ({naive.lowest / IMAGES:.0%})" if naive else "",
                    command=command,
                ),
                Row(
                    SCENARIO,
                    "429s provoked",
                    ours.rate_limited,
                    "",
                    target="0",
                    met=ours.rate_limited == 0,
                    naive=str(naive.rate_limited) if naive else "",
                    command=command,
                ),
                Row(
                    SCENARIO,
                    "polls in the busiest window",
                    ours.busiest_polls,
                    "polls",
                    limit=POLLS,
                    limit_kind="ceiling",
                    target="<= quota",
                    met=ours.busiest_polls <= POLLS,
                    naive=str(naive.busiest_polls) if naive else "",
                    command=command,
                ),
                Row(
                    SCENARIO,
                    "jobs in the busiest window",
                    ours.busiest_jobs,
                    "jobs",
                    limit=JOBS,
                    limit_kind="ceiling",
                    target="<= quota",
                    met=ours.busiest_jobs <= JOBS,
                    naive=str(naive.busiest_jobs) if naive else "",
                    command=command,
                ),
            ]
        )
    else:
        print(f"command: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
