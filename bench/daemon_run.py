"""What the benchmarks share: the real daemon as a subprocess, watched through its SQLite file.

    outcome = run_daemon_until_settled(config, db, media_ids, log_path, timeout=600,
                                       on_tick=lambda states: ...)
"""

from __future__ import annotations

import os
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
    started: float          # time.monotonic() when the daemon was started
    elapsed: float          # seconds until every image was final (or the timeout)
    states: list[str | None]  # the final state of each of the media ids, in order


def run_daemon_until_settled(config: Path, db: Path, media_ids: list[str], log_path: Path, *, timeout: float,
                             on_tick: Callable[[list[str | None], float], None] = lambda states, at: None) -> Outcome:
    """`retouch run -c config` until every image is final (or `timeout`), then SIGTERM it.
    `on_tick(states, at)` is called every 50 ms with the images' states and the seconds since the
    daemon was started, for figures along the way."""
    started = time.monotonic()
    with log_path.open("w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "retouch.sync", "run", "-c", str(config)],
                                  stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        while True:
            states = [image_states(db).get(m) for m in media_ids]
            at = time.monotonic() - started
            on_tick(states, at)
            if all(s in FINAL_STATES for s in states) or at > timeout or daemon.poll() is not None:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
    return Outcome(started, elapsed, [image_states(db).get(m) for m in media_ids])
