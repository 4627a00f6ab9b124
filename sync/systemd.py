"""systemd integration without a dependency: the notify protocol and the one-daemon-per-database lock.

Notify protocol (sd_notify(3)): a datagram of `KEY=VALUE` lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading "@" names an abstract socket). Outside systemd the variable is unset
and every call is a no-op. Sending never raises: a lost notification must not stop the daemon.

Watchdog: systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID) when the unit has `WatchdogSec=`; we ping
at half that interval from a task in the daemon's event loop, so a blocked loop stops the pings
and systemd restarts the service.

Instance lock: `retouch run` holds an exclusive `flock` on `<database>.lock` for its whole life,
named after the database file's canonical path (so two spellings of one file meet one lock) and
opened without following a symlink.
The kernel drops the lock when the process dies (even by `kill -9`), so a stale lock file never
blocks a restart. Other commands only *test* the lock to learn whether a daemon is running.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import stat
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
    """`<database>.lock` beside the file SQLite opens: the canonical path, so every spelling of it
    (a symlinked folder, `..`, a URL with ?query parameters, a relative path) meets the same lock."""
    real = Path(os.path.realpath(database))
    return real.with_name(real.name + ".lock")


class LockError(Exception):
    """The lock file cannot be used (a symlink, a directory, no permission); one line, naming it."""


# O_NOFOLLOW: a symlink planted at the lock's path is refused, never followed and overwritten with
# our pid; O_NONBLOCK: a FIFO there cannot make us wait.
_LOCK_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def _open_lock(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | _LOCK_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError(f"lock file {path} is a symbolic link; retouch does not follow it: remove it") from None
        if exc.errno == errno.EISDIR:
            raise LockError(f"lock file {path} is a directory: remove it") from None
        raise LockError(f"cannot open lock file {path} ({exc.strerror or type(exc).__name__})") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_nlink > 1:  # a hard link to some other file: writing our pid would overwrite it
        problem = f"has {info.st_nlink - 1} other hard link(s)"
    elif info.st_size > 20 or not os.pread(fd, 20, 0).strip().isdigit() and info.st_size:
        problem = "holds something else than a pid"
    if problem:
        os.close(fd)
        raise LockError(f"lock file {path} {problem}; retouch does not overwrite it: remove it")
    return fd


class InstanceLock:
    """An exclusive, non-blocking flock on `<database>.lock`, holding the owner's pid as text."""

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self, patience: float = 1.0) -> bool:
        """True once the lock is ours; False when another process keeps it for `patience` seconds
        (a command probing with `is_held` holds it for microseconds, a daemon for its whole life).
        LockError when the lock file is not one (a symlink, a directory) or cannot be opened."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LockError(f"cannot create {self.path.parent} ({exc.strerror or type(exc).__name__})") from None
        fd = _open_lock(self.path, os.O_RDWR | os.O_CREAT)
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
        """The pid written in the lock file (by the retouch that holds it, or held it last)."""
        try:
            fd = _open_lock(self.path, os.O_RDONLY)
        except LockError:
            return None
        try:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        return int(text) if text.isdigit() else None

    def holder(self) -> str:
        """Who holds the lock, for the message of a daemon that cannot start: "retouch daemon (pid
        N)", or "a process that is not retouch (pid N: cmd)" when the kernel's holder did not
        write its pid in the file and does not run retouch (`flock retouch.db.lock sleep 1d`)."""
        written = self.holder_pid()
        kernel = _flock_holder(self.path)
        if kernel is None:  # no /proc/locks (not Linux), or the lock was let go meanwhile
            return f"another retouch daemon (pid {written or '?'})"
        if kernel == written or _runs_retouch(kernel):
            return f"another retouch daemon (pid {kernel})"
        return f"a process that is not retouch (pid {kernel}: {_command(kernel) or '?'})"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (removing it would race)
            self._fd = None


def _flock_holder(path: Path) -> int | None:
    """The pid the kernel lists as holding a FLOCK on `path` (/proc/locks), or None."""
    try:
        info = os.stat(path, follow_symlinks=False)
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"; a waiter's line has "->" after the number
        if "->" not in fields and len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return int(fields[4]) if fields[4].isdigit() else None
    return None


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read(4096).replace(b"\0", b" ").decode("utf-8", "replace").strip()[:120]
    except OSError:
        return ""


def _runs_retouch(pid: int) -> bool:
    """Is `pid` a retouch command (`retouch …`, `python -m retouch.sync …`)?"""
    return any(Path(arg).name == "retouch" or arg.startswith("retouch.sync") for arg in _command(pid).split())


def is_held(database: Path) -> int | None:
    """The pid of the daemon running on `database`, or None when no daemon holds its lock."""
    try:
        fd = _open_lock(lock_path(database), os.O_RDONLY)
    except LockError:
        return None  # no lock file, or one no daemon could have taken (a symlink, a directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return InstanceLock(database).holder_pid() or _flock_holder(lock_path(database)) or -1  # -1: pid unknown yet
    finally:
        os.close(fd)  # also releases the shared lock we may have taken
    return None
