"""systemd integration without a dependency: the notify protocol and the one-daemon-per-database lock.

Notify protocol (sd_notify(3)): a datagram of `KEY=VALUE` lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading "@" names an abstract socket). Outside systemd the variable is unset
and every call is a no-op. Sending never raises: a lost notification must not stop the daemon.

Watchdog: systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID) when the unit has `WatchdogSec=`; we ping
at half that interval from a task in the daemon's event loop, so a blocked loop stops the pings
and systemd restarts the service.

Instance lock: `retouch run` holds an exclusive `flock` on `<database>.lock` for its whole life.
The kernel drops the lock when the process dies (even by `kill -9`), so a stale lock file never
blocks a restart. Other commands only *test* the lock to learn whether a daemon is running.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

log = structlog.get_logger("retouch.systemd")


class Notifier:
    """Sends sd_notify messages; a no-op without $NOTIFY_SOCKET."""

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address or None
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if environ is None else environ).get("NOTIFY_SOCKET"))

    def send(self, *lines: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop: with a reader that stopped reading, a full socket
                # buffer drops the message (BlockingIOError) instead of stalling the daemon.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            # Said once at warning level: a gone or full socket would otherwise fill the journal.
            (log.debug if self._warned else log.warning)("notify_failed", reason=exc.__class__.__name__)
            self._warned = True
            return False

    def ready(self) -> bool:
        return self.send("READY=1")

    def reloading(self) -> bool:
        # systemd >= 253 wants the monotonic time with RELOADING=1 (Type=notify-reload); older ones ignore it.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        # One line: a newline would start another KEY=VALUE assignment.
        return self.send("STATUS=" + " ".join(text.split()))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def status_line(counts: Mapping[str, int], paused_reason: str | None = None) -> str:
    """What `systemctl status` shows: the queue at a glance."""
    from retouch.storage.models import PENDING_STATES

    queued = sum(counts.get(str(state), 0) for state in PENDING_STATES)
    text = f"{queued} queued, {counts.get('done', 0)} done, {counts.get('failed', 0)} failed"
    return f"{text}; paused: {paused_reason}" if paused_reason else text


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None when no watchdog is asked for us."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000 / 2


async def watchdog_loop(notifier: Notifier, interval: float, stop: asyncio.Event) -> None:
    """WATCHDOG=1 every `interval` seconds until `stop`; runs in the event loop on purpose."""
    while not stop.is_set():
        notifier.watchdog()
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


# ----- one daemon per database --------------------------------------------------------------------


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class InstanceLock:
    """An exclusive, non-blocking flock on `<database>.lock`, holding the owner's pid as text."""

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self, patience: float = 1.0) -> bool:
        """True once the lock is ours; False when another process keeps it for `patience` seconds
        (a command probing with `is_held` holds it for microseconds, a daemon for its whole life)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder_pid(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (removing it would race)
            self._fd = None


def is_held(database: Path) -> int | None:
    """The pid of the daemon running on `database`, or None when no daemon holds its lock."""
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return InstanceLock(database).holder_pid() or -1  # -1: held, but its pid not written yet
    finally:
        os.close(fd)  # also releases the shared lock we may have taken
    return None
