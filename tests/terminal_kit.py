"""A real pseudo-terminal for CLI tests: the command runs as a subprocess on a pty of a known size, and
what it wrote is rendered by pyte (a VT100 terminal emulator) into the screen an owner would see."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte


class Terminal:
    """`retouch ARGS` on a pty of `columns` x `rows`; `screen()` is what the terminal shows now."""

    def __init__(
        self, *args: str, config: Path, columns: int = 160, rows: int = 40, env: dict[str, str] | None = None
    ) -> None:
        self.columns, self.rows = columns, rows
        self._screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self._screen)
        self.raw = b""
        self.status: int | None = None
        argv = [sys.executable, "-m", "retouch.sync", *args, "-c", str(config)]
        environment = {
            **os.environ,
            "COLUMNS": str(columns),
            "LINES": str(rows),
            "TERM": "xterm-256color",
            **(env or {}),
        }
        environment.pop("NO_COLOR", None)
        pid, fd = pty.fork()
        if pid == 0:  # the child: its stdin, stdout and stderr are the pty
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.execve(argv[0], argv, environment)
        self.pid, self.fd = pid, fd

    def read(self, timeout: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # the child closed the pty (it exited)
                return
            if not data:
                return
            self.raw += data
            self._stream.feed(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self._screen.display]

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait_for(self, predicate: Callable[[str], object], timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.2)
            if predicate(self.text()):
                return
        raise AssertionError(f"the terminal never showed {what or predicate}:\n{self.text()}")

    def wait_for_text(self, pattern: str, timeout: float = 60.0) -> None:
        self.wait_for(lambda text: re.search(pattern, text), timeout, repr(pattern))

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.read(0.2)
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError(f"the command did not exit:\n{self.text()}")

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)
