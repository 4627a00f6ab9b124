"""What the benchmarks share: the real daemon as a subprocess, watched through its SQLite file.

    outcome = run_daemon_until_settled(config, db, media_ids, log_path, timeout=600,
                                       on_tick=lambda states: ...)

The daemon is reaped with os.wait4, so `outcome.rusage` is its own resource usage (CPU user/sys),
the benchmark process's threads (the sandboxes) not included. Its peak RSS is `outcome.peak_rss_kib`
(VmHWM from /proc, sampled until it exits), not rusage's ru_maxrss: on Linux a child's ru_maxrss
includes the RSS of the process it was forked from (the benchmark, with its sandboxes) at exec.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FINAL_STATES = ("done", "failed", "skipped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image_states(db: Path) -> dict[str, str]:
    """media id -> state, read from another process (SQLite's own locking keeps it safe)."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db) as conn:
            return dict(conn.execute("select media_id, state from image").fetchall())
    except sqlite3.OperationalError:
        return {}


@dataclass
class Outcome:
    started: float  # time.monotonic() when the daemon was started
    elapsed: float  # seconds until every image was final (or the timeout)
    states: list[str | None]  # the final state of each of the media ids, in order
    # The daemon's own resource usage from os.wait4 when it was reaped (ru_utime + ru_stime: its
    # CPU seconds, start-up and shutdown included). Not its ru_maxrss: see the module docstring.
    rusage: resource.struct_rusage | None = None
    # The daemon's peak RSS in KiB: /proc/<pid>/status VmHWM, the high-water mark of its own memory
    # since exec, last read just before it exited (None where /proc is not there).
    peak_rss_kib: int | None = None
    # Its CPU seconds by thread when it was asked to stop (`ThreadCPU`; None where /proc is not there).
    threads: ThreadCPU | None = None


@dataclass
class ThreadCPU:
    """The daemon's CPU seconds (user+sys) by thread, read from /proc/<pid>/task just before it
    was asked to stop (its shutdown not included): the thread running the event loop (the main
    thread), and the others (the worker threads `asyncio.to_thread` hands Pillow, hashing and
    fsyncs to)."""

    event_loop: float
    workers: float


@dataclass
class Run:
    """One `retouch run` from start to stop."""

    elapsed: float  # seconds from its start until `finished` said so (or the timeout)
    finished: bool  # whether `finished` said so before the timeout (or the daemon's exit)
    rusage: resource.struct_rusage | None
    peak_rss_kib: int | None
    returncode: int | None
    threads: ThreadCPU | None = None


def run_daemon_until(
    config: Path,
    log_path: Path,
    finished: Callable[[float], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    profile: Path | None = None,
) -> Run:
    """`retouch run -c config` until `finished(seconds since start)` is true (asked every
    `interval`), the timeout, or its own exit; then SIGTERM, and reap it with os.wait4.

    `profile`: attach py-spy (a sampling profiler, installed by hand: not a dependency) to the
    daemon, writing its collapsed stacks there; it samples without stopping the daemon
    (--nonblocking), only the thread holding the GIL (--gil: CPU spent in Python, not waits for a
    socket or an fsync; C code that releases the GIL, such as Pillow's codecs, is not seen), and
    its own CPU is not in the rusage."""
    started = time.monotonic()
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "retouch.sync", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--nonblocking",
                "--gil",
                "--format",
                "raw",
                "--rate",
                "250",
                "-o",
                str(profile),
                "--pid",
                str(daemon.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    usage: list[resource.struct_rusage] = []
    peak: list[int] = []
    try:
        while True:
            _note_peak(daemon.pid, peak)
            at = time.monotonic() - started
            done = finished(at)
            if done or at > timeout or _reaped(daemon, usage, 0, peak):
                break
            time.sleep(interval)
        elapsed = time.monotonic() - started
        threads = _thread_cpu(daemon.pid) if daemon.returncode is None else None
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
            if not _reaped(daemon, usage, 30, peak):
                daemon.kill()
                _reaped(daemon, usage, 10, peak)
        if spy is not None:
            spy.wait(60)  # it writes its file once the daemon has exited
    return Run(elapsed, done, usage[0] if usage else None, max(peak) if peak else None, daemon.returncode, threads)


def run_daemon_until_settled(
    config: Path,
    db: Path,
    media_ids: list[str],
    log_path: Path,
    *,
    timeout: float,
    on_tick: Callable[[list[str | None], float], None] = lambda states, at: None,
    profile: Path | None = None,
) -> Outcome:
    """`retouch run -c config` until every image is final (or `timeout`), then SIGTERM it.
    `on_tick(states, at)` is called every 50 ms with the images' states and the seconds since the
    daemon was started, for figures along the way; `profile` as for `run_daemon_until`."""
    started = time.monotonic()

    def settled(at: float) -> bool:
        states = [image_states(db).get(m) for m in media_ids]
        on_tick(states, at)
        return all(s in FINAL_STATES for s in states)

    run = run_daemon_until(config, log_path, settled, timeout=timeout, profile=profile)
    return Outcome(
        started, run.elapsed, [image_states(db).get(m) for m in media_ids], run.rusage, run.peak_rss_kib, run.threads
    )


def _thread_cpu(pid: int) -> ThreadCPU | None:
    """The process's CPU seconds by thread (`ThreadCPU`), from /proc; None where it is not there."""
    ticks = os.sysconf("SC_CLK_TCK")
    event_loop = workers = 0.0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                # After the command name (in parentheses, maybe with spaces): utime and stime are
                # fields 14 and 15 of stat(5), the 12th and 13th after it.
                fields = stat.read().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / ticks
            if int(task) == pid:
                event_loop = seconds
            else:
                workers += seconds
    except (OSError, ValueError, IndexError):
        return None
    return ThreadCPU(event_loop, workers)


def _note_peak(pid: int, peak: list[int]) -> None:
    """Keep in `peak` the largest VmHWM (KiB) of the process seen, if /proc has it (not once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak[:] = [max([*peak, int(line.split()[1])])]
                    return
    except (OSError, ValueError, IndexError):
        pass


def _reaped(daemon: subprocess.Popen, usage: list[resource.struct_rusage], timeout: float, peak: list[int]) -> bool:
    """Whether the daemon has exited, waiting up to `timeout` s; reaps it with os.wait4 (instead of
    Popen.wait, which drops the rusage) and appends its rusage to `usage`; until then its VmHWM to
    `peak`."""
    if daemon.returncode is not None:
        return True
    deadline = time.monotonic() + timeout
    while True:
        _note_peak(daemon.pid, peak)
        try:
            pid, status, rusage = os.wait4(daemon.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: its exit code and usage are lost
            daemon.returncode = -1
            return True
        if pid == daemon.pid:
            daemon.returncode = os.waitstatus_to_exitcode(status)
            usage.append(rusage)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
