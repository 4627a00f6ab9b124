"""Resources: the real daemon (a subprocess, a real config and SQLite file, the sandboxes on
loopback) when its backup disk fills up, and when another process locks its database.

Used by tests/e2e/test_resources.py (a few images) and bench/resources.py (full size, ProofRows).

- Disk full: the daemon is started inside a mount namespace of its own (`unshare --mount`, or
  `unshare --user --map-root-user --mount` when not root) where its backup directory is a small
  tmpfs, pre-filled by a filler file so that only a few originals fit: real ENOSPC, partway through
  the batch. We look into that namespace through /proc/<pid>/root, and free the space by deleting
  the filler there.
- Database locked: another process opens the same SQLite file and holds `BEGIN EXCLUSIVE` while
  the daemon works and new products keep arriving; the daemon runs with a systemd watchdog
  (NOTIFY_SOCKET, WATCHDOG_USEC) whose pings we record, as systemd would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import DaemonProcess, config_text, db_rows, image_states, wait_for
from crash_harness import FINAL, check_promises
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox
from test_service import NotifySocket

PAGE = 4096
NO_SPACE = "No space left on device"


# ----- a small tmpfs in a mount namespace of the daemon's own ---------------------------------------


def namespace_command() -> list[str]:
    """`unshare` arguments that give a new mount namespace in which `mount -t tmpfs` works: as root a
    plain mount namespace, otherwise a user namespace mapping us to root. Raises RuntimeError saying
    why when neither works here (the test then fails with that message: no silent skip)."""
    candidates = [["unshare", "--mount", "--propagation", "private"]] if os.geteuid() == 0 else []
    candidates.append(["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"])
    errors = []
    for command in candidates:
        probe = subprocess.run(
            [*command, "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k t "$d"'],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            return command
        errors.append(f"{' '.join(command)}: {probe.stderr.strip() or probe.returncode}")
    raise RuntimeError(
        "cannot mount a small tmpfs for the disk-full test (needs root, or unprivileged user "
        "namespaces): " + "; ".join(errors)
    )


def tmpfs_wrapper(mount_at: Path, size: int, filler: int) -> list[str]:
    """A command prefix: mount a tmpfs of `size` bytes on `mount_at`, write a `filler` file of
    `filler` bytes into it, then exec the rest of the command line (the daemon keeps the PID)."""
    script = (
        'mount -t tmpfs -o size="$1" retouch-backups "$2" && head -c "$3" /dev/zero > "$2/filler" '
        '&& shift 3 && exec "$@"'
    )
    return [*namespace_command(), "sh", "-c", script, "sh", str(size), str(mount_at), str(filler)]


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


@dataclass
class DiskFullReport:
    images: int
    backed_up_before_full: int = 0  # originals that fitted before the disk was full
    no_space: list[str] = field(default_factory=list)  # media ids whose backup met ENOSPC
    states: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tracebacks: int = 0
    exit_code: int | None = None


def _backup_files_problems(backups: Path) -> list[str]:
    """Temporary files left behind, or a file whose name is not the hash of its bytes."""
    problems = []
    for path in backups.rglob("*"):
        if not path.is_file() or path.name == "filler":
            continue
        if path.name.startswith(".tmp-"):
            problems.append(f"a partial backup was left behind: {path.name}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            problems.append(f"backup {path.name[:12]} does not hold the bytes its name says")
    return problems


def disk_full(
    tmp: Path,
    shop: ShopifySandbox,
    provider: AigenSandbox,
    *,
    products: int,
    share: float = 0.5,
    seed: int = 5,
    limits: str | None = None,
    timeout: float = 120,
) -> DiskFullReport:
    """`products` new images; the backup tmpfs has room for about `share` of their bytes (and at
    least the largest one). Checks what holds while it is full, frees the space, lets everything
    drain, checks the backups and every promise."""
    seeded = shop.seed(products=products, images_per_product=1, seed=seed)
    originals = {p["legacy_id"]: p["media"][0] for p in seeded}
    original_bytes = {m["id"]: shop.media_bytes(m["id"]) or b"" for m in originals.values()}
    sizes = [len(data) for data in original_bytes.values()]
    room = max(pages(max(sizes)) + PAGE, pages(int(sum(pages(x) for x in sizes) * share)))
    size = sum(pages(s) + PAGE for s in sizes) + room + 64 * PAGE  # every original fits once the filler is gone
    backups = tmp / "backups"
    backups.mkdir()
    config = tmp / "config.toml"
    config.write_text(config_text(shop, provider, tmp, new_only=False, **({"limits": limits} if limits else {})))
    db = tmp / "retouch.db"
    daemon = DaemonProcess(config, tmp, wrapper=tmpfs_wrapper(backups, size, size - room))
    report = DiskFullReport(images=products)
    try:
        inside = Path(f"/proc/{daemon.proc.pid}/root") / backups.relative_to("/")
        wait_for(
            lambda: (inside / "filler").exists() or daemon.proc.poll() is not None,
            timeout=30,
            what="the tmpfs and its filler",
        )

        def refused() -> dict[str, int]:
            """media id -> attempts, for images whose backup met ENOSPC and that are still not backed up."""
            rows = db_rows(db, "select media_id, state, attempts, error_message from image") if db.exists() else []
            return {m: a for m, s, a, msg in rows if s == "enhanced" and NO_SPACE in (msg or "")}

        def full_and_retried() -> bool:
            if daemon.proc.poll() is not None:
                raise AssertionError(
                    f"the daemon exited ({daemon.proc.returncode}) while the disk was full:\n" + daemon.output()[-3000:]
                )
            states = image_states(db)
            settled = len(states) == products and all(s not in ("discovered", "submitted") for s in states.values())
            return settled and any(a >= 2 for a in refused().values())  # refused, and retried, still refused

        wait_for(
            full_and_retried,
            timeout=timeout,
            interval=0.2,
            what="the backup disk to fill up partway through the batch (an image refused twice)",
        )
        # While full: no image whose backup failed has been touched in Shopify; no half-written backup.
        waiting = refused()
        states = image_states(db)
        report.backed_up_before_full = sum(s in ("backed_up", "written", "done") for s in states.values())
        for legacy_id, original in originals.items():
            if original["id"] not in waiting:
                continue
            media = shop.product(legacy_id)["media"]
            if [(m["id"], m["sha256"]) for m in media] != [(original["id"], original["sha256"])]:
                report.problems.append(f"{original['id']} was changed in Shopify without its backup")
        report.problems += _backup_files_problems(inside)
        if daemon.proc.poll() is not None:
            report.problems.append("the daemon stopped while the disk was full")
        (inside / "filler").unlink()  # the admin frees space

        def drained() -> bool:
            if daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({daemon.proc.returncode}):\n" + daemon.output()[-3000:])
            states = image_states(db)
            return len(states) == products and set(states.values()) <= FINAL

        wait_for(drained, timeout=timeout, interval=0.2, what="every image to finish once space was freed")
        report.problems += _backup_files_problems(inside)
        # The backups, as they are in the daemon's tmpfs, before it exits and the tmpfs goes with it.
        kept = tmp / "backups-kept"
        shutil.copytree(inside, kept, ignore=shutil.ignore_patterns("filler"))
        report.problems += check_promises(db, shop, provider, originals, "replace", backup_dir=kept)
        for original in originals.values():
            kept_file = kept / original["sha256"][:2] / original["sha256"]
            if kept_file.exists() and kept_file.read_bytes() != original_bytes[original["id"]]:
                report.problems.append(f"{original['id']}'s backup differs from the original")
    finally:
        report.exit_code = daemon.terminate(timeout=30) if daemon.proc.poll() is None else daemon.proc.returncode
    events = daemon.events()
    report.no_space = sorted(
        {e["media_id"] for e in events if e.get("event") == "writeback_retry" and NO_SPACE in e.get("reason", "")}
    )
    report.problems += _written_before_backed_up(events)
    states = image_states(db)
    report.states = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
    report.tracebacks = daemon.output().count("Traceback")
    return report


def _written_before_backed_up(events: list[dict]) -> list[str]:
    """Images the log shows written to Shopify before (or without) being backed up."""
    backed_up: set[str] = set()
    problems = []
    for event in events:
        if event.get("event") == "backed_up":
            backed_up.add(event.get("media_id"))
        elif event.get("event") == "written" and event.get("media_id") not in backed_up:
            problems.append(f"{event.get('media_id')} written before its backup")
    return problems


# ----- another process holds the database's write lock ----------------------------------------------

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
locked = time.monotonic()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", time.monotonic() - locked, flush=True)
"""


def longest_watchdog_gap(notify: NotifySocket, until: float) -> float:
    """The longest time (s) without a WATCHDOG=1, from the first ping to `until` (time.time())."""
    marks = [at for at, line in notify.received if line == "WATCHDOG=1"] + [until]
    return max((b - a for a, b in zip(marks, marks[1:])), default=float("inf"))


@dataclass
class LockReport:
    images: int
    held_seconds: float = 0.0
    busy_events: int = 0  # the daemon's "database_busy": it met the lock
    longest_watchdog_gap: float = 0.0
    watchdog_seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tracebacks: int = 0
    exit_code: int | None = None


def database_locked(
    tmp: Path,
    shop: ShopifySandbox,
    provider: AigenSandbox,
    *,
    products: int,
    hold: float = 30.0,
    watchdog: float = 24.0,
    seed: int = 9,
    limits: str | None = None,
    timeout: float = 180,
) -> LockReport:
    """Half the products at start; once the daemon is working, another process locks the database
    for `hold` s while the other half arrive; then everything must drain, none failed."""
    first = shop.seed(products=products // 2, images_per_product=1, seed=seed)
    config = tmp / "config.toml"
    config.write_text(config_text(shop, provider, tmp, new_only=False, **({"limits": limits} if limits else {})))
    db = tmp / "retouch.db"
    listener = NotifySocket()
    env = {"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": str(int(watchdog * 1_000_000))}
    daemon = DaemonProcess(config, tmp, env=env)
    report = LockReport(images=products, watchdog_seconds=watchdog)
    try:
        wait_for(
            lambda: any(s != "discovered" for s in image_states(db).values()),
            timeout=60,
            what="the daemon to start working",
        )
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(hold)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked", "the holder could not lock the database"
        second = shop.seed(products=products - products // 2, images_per_product=1, seed=seed + 1)
        released, held = holder.stdout.readline().split()
        assert released == "released" and holder.wait(10) == 0
        # Measured by the holder, from BEGIN EXCLUSIVE to COMMIT: reading its lines late (a stalled
        # CI machine) cannot shorten it, as it did when this side timed it.
        report.held_seconds = float(held)
        if daemon.proc.poll() is not None:
            report.problems.append(f"the daemon exited ({daemon.proc.returncode}) while the database was locked")
        originals = {p["legacy_id"]: p["media"][0] for p in first + second}

        def drained() -> bool:
            if daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({daemon.proc.returncode}):\n" + daemon.output()[-3000:])
            states = image_states(db)
            return len(states) == products and set(states.values()) <= FINAL

        wait_for(drained, timeout=timeout, interval=0.2, what="every image to finish after the lock")
        report.longest_watchdog_gap = longest_watchdog_gap(listener, time.time())
        report.problems += check_promises(db, shop, provider, originals, "replace")
    finally:
        report.exit_code = daemon.terminate(timeout=30) if daemon.proc.poll() is None else daemon.proc.returncode
        listener.close()
    states = image_states(db)
    report.states = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
    failed = db_rows(db, "select media_id, error_code, error_message from image where state != 'done'")
    report.problems += [f"{m} ended {code}: {message}" for m, code, message in failed]
    if report.longest_watchdog_gap >= watchdog:
        report.problems.append(
            f"no watchdog ping for {report.longest_watchdog_gap:.0f} s (WatchdogSec "
            f"{watchdog:.0f} s): systemd would have killed the daemon"
        )
    events = daemon.events()
    report.busy_events = sum(e.get("event") == "database_busy" for e in events)
    report.tracebacks = daemon.output().count("Traceback")
    return report
