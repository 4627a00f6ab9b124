"""The resync progress bar on a real terminal, and Ctrl-C (issue 23): log lines go above the bar, never into
it; the bar says what it waits for and until when; Ctrl-C says what is still queued and leaves it for the
daemon or takes it back out of the queue. `retouch resync --all` runs as a subprocess against the sandboxes,
on a pseudo-terminal whose output pyte renders into the screen an owner would see."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, config_text, image_states, wait_for
from terminal_kit import Terminal

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

LIVE_KEY = "aigen_live_resync_terminal_key"
TWO_AN_HOUR = 'window = "1h", jobs = 5, images = 2, polls = 120, active_jobs = 1'
PLENTY = 'window = "1h", jobs = 50, images = 100, polls = 500'
PRICE = '[budget]\nprice_per_credit = 0.1\ncurrency = "EUR"\n'
QUEUED_WORDS = "3 image(s) still queued (3 image(s), 15 credits (1.50 EUR)"


def write_configs(shop, provider, tmp_path: Path) -> tuple[Path, Path]:
    """The resync's config (two images an hour: two go, three wait for the quota, so the bar stays live),
    and a daemon's on the same database with a quota that lets everything go at once."""
    shop.seed(products=5, images_per_product=1, seed=51)
    provider.add_live_key(LIVE_KEY, purchased=500, available=500)
    resync = tmp_path / "config.toml"
    resync.write_text(
        config_text(
            shop, provider, tmp_path, new_only=False, api_key=LIVE_KEY, limits=TWO_AN_HOUR, extra=PRICE
        ).replace('level = "debug"\nformat = "json"', 'level = "info"\nformat = "console"')
    )
    daemon = tmp_path / "daemon.toml"
    daemon.write_text(
        config_text(shop, provider, tmp_path, new_only=False, api_key=LIVE_KEY, limits=PLENTY, extra=PRICE)
    )
    return resync, daemon


def images_charged(provider) -> int:
    return provider.stats()["keys"][LIVE_KEY]["credits"]["used"] // 5


def run_daemon_until(daemon, config: Path, until, what: str) -> None:
    """The daemon on the same database, with room in its quota, until `until(process)` holds."""
    process = daemon(config)
    try:
        wait_for(lambda: until(process), timeout=60, what=what)
        assert process.proc.poll() is None, process.output()
    finally:
        process.terminate()


def a_while_after_discovery(process, seconds: float = 3.0) -> bool:
    """The daemon discovered the catalog and then had `seconds` of work cycles (fifteen 0.2 s ticks): time
    to send anything queued (the leave test's daemon sends its three in that first cycle)."""
    if not any(event.get("event") == "discovered" for event in process.events()):
        return False
    process.seen = getattr(process, "seen", None) or time.monotonic()
    return time.monotonic() - process.seen > seconds


def test_bar_keeps_log_lines_above_it_and_ctrl_c_takes_the_queue_back(shop, provider, tmp_path: Path, daemon) -> None:
    resync, daemon_config = write_configs(shop, provider, tmp_path)
    terminal = Terminal("resync", "--all", "--yes", config=resync)
    try:
        terminal.wait_for_text(r"waiting for the quota until \d\d:\d\d", timeout=90)
        lines = [line for line in terminal.lines() if line]
        bars = [n for n, line in enumerate(lines) if re.search(r"resync .*━.* 2/5 ", line)]
        assert len(bars) == 1, terminal.text()
        bar = lines[bars[0]]
        # The bar row is intact and last; the log lines are rows of their own above it.
        assert re.fullmatch(r"resync [━╺╸ ]+ 2/5 \d:\d\d:\d\d waiting for the quota until \d\d:\d\d", bar.strip()), bar
        assert bars[0] == len(lines) - 1, terminal.text()
        logged = [line for line in lines[:-1] if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[info", line)]
        assert any("submitted" in line for line in logged), terminal.text()
        assert not any(re.search(r"\[(info|warning|error)", line) and "━" in line for line in lines), terminal.text()

        terminal.type(b"\x03")  # Ctrl-C, through the terminal: SIGINT to the foreground process
        terminal.wait_for_text(r"take them back out of the queue\? \(leave, take-back\) \[leave\]:")
        assert QUEUED_WORDS in terminal.text(), terminal.text()
        terminal.type(b"take-back\r")
        assert terminal.exit_code() == 130, terminal.text()
        assert "took 3 image(s) back out of the queue" in terminal.text(), terminal.text()
    finally:
        terminal.close()

    report = json.loads(cli("status", "--json", config=resync).stdout)
    assert report["counts"]["discovered"] == 0 and report["counts"]["skipped"] == 3, report["counts"]
    assert report["pending"] == 0 and report["waiting"] == [], report
    assert images_charged(provider) == 2
    db = tmp_path / "retouch.db"
    # A daemon with room in its quota sends nothing of what was taken back (the leave test shows it would).
    run_daemon_until(daemon, daemon_config, a_while_after_discovery, "the daemon's discovery and 3 s of its ticks")
    assert images_charged(provider) == 2
    assert sorted(image_states(db).values()) == ["done", "done", "skipped", "skipped", "skipped"]


def interrupted_resync(resync: Path, db: Path, *flags: str) -> tuple[int, str, str]:
    """`retouch resync --all` without a terminal, stopped by SIGINT once two images are done and three wait."""
    process = subprocess.Popen(
        [sys.executable, "-m", "retouch.sync", "resync", "--all", "--yes", *flags, "-c", str(resync)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        wait_for(
            lambda: sorted(image_states(db).values()) == ["discovered"] * 3 + ["done"] * 2,
            timeout=90,
            what="two images done, three waiting for the quota",
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


def test_ctrl_c_without_a_terminal_leaves_the_queue_for_the_daemon(shop, provider, tmp_path: Path, daemon) -> None:
    resync, daemon_config = write_configs(shop, provider, tmp_path)
    db = tmp_path / "retouch.db"
    code, out, err = interrupted_resync(resync, db)
    assert code == 130, (out, err)
    assert QUEUED_WORDS in out, out
    assert "no terminal to ask on: left queued (--on-interrupt take-back takes them out)" in out
    assert "left 3 image(s) queued: the daemon (`retouch run`) sends them" in out
    assert images_charged(provider) == 2
    run_daemon_until(
        daemon,
        daemon_config,
        lambda _: sorted(image_states(db).values()) == ["done"] * 5,
        "the daemon sending the three left queued",
    )
    assert sorted(image_states(db).values()) == ["done"] * 5
    assert images_charged(provider) == 5


def test_a_script_takes_the_queue_back_with_a_flag(shop, provider, tmp_path: Path) -> None:
    resync, _ = write_configs(shop, provider, tmp_path)
    db = tmp_path / "retouch.db"
    code, out, err = interrupted_resync(resync, db, "--on-interrupt", "take-back")
    assert code == 130, (out, err)
    assert QUEUED_WORDS in out and "took 3 image(s) back out of the queue" in out, out
    assert "no terminal to ask on" not in out
    status = cli("status", config=resync).stdout
    assert "skipped" in status and "waiting:" not in status, status
    assert sorted(image_states(db).values()) == ["done", "done", "skipped", "skipped", "skipped"]
