"""Reading the files the owner points us at (the config, systemd credentials) without trusting them.

A path may name a FIFO (opening it for reading waits for a writer: `retouch check` would hang), a
device (/dev/zero never ends), a directory, a huge file, or TOML built to exhaust the parser:
`a.a.a.…= 1` with ten thousand dots costs tomllib gigabytes (its memory grows with the square of
the depth), `[[[[…]]]]` a RecursionError, a 5,000-digit integer a ValueError. Each becomes one
line naming the file; nothing here blocks or reads more than its cap.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

CONFIG_MAX_BYTES = 256 * 1024  # config.example.toml, fully commented, is under 20 KiB
CREDENTIAL_MAX_BYTES = 64 * 1024  # a token is under 1 KiB
MAX_KEY_DOTS = 16  # dots in one key or table header; the config needs 2
MAX_NESTING = 8  # tables within tables after parsing; the config needs 3


class UnreadableFile(Exception):
    """The file cannot be used; the message says why, without the path (the caller names it)."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (symlinks to one are fine).

    Stat first, so a FIFO is never opened; open with O_NONBLOCK and look again at what was opened,
    so swapping the file for a FIFO in between cannot make us wait either."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnreadableFile("file not found") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"is {_kind(info.st_mode)}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UnreadableFile(f"cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise UnreadableFile(f"is {_kind(opened.st_mode)}, not a regular file")
        if opened.st_size > limit:
            raise UnreadableFile(f"is {opened.st_size:,} bytes; at most {limit:,} are read")
        chunks, size = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # grew while we read it
                raise UnreadableFile(f"is over {limit:,} bytes; at most {limit:,} are read")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(f"cannot read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)


def parse_toml(data: bytes) -> dict[str, Any]:
    """The TOML document in `data`; UnreadableFile (with the line where it can) for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UnreadableFile(f"cannot read (UnicodeDecodeError): not UTF-8 at line {line}") from None
    if "\x00" in text:
        raise UnreadableFile("cannot read: holds a NUL byte, so it is not a text file")
    dots = _deepest_key(text)
    if dots > MAX_KEY_DOTS:
        raise UnreadableFile(f"a key or table name with {dots} dots; at most {MAX_KEY_DOTS} are accepted")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UnreadableFile(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise UnreadableFile(f"not valid TOML: nested too deeply (at most {MAX_NESTING} levels)") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise UnreadableFile(f"not valid TOML: {str(exc).split(';')[0]}") from None
    depth = _depth(document)
    if depth > MAX_NESTING:
        raise UnreadableFile(f"not valid for retouch: nested {depth} levels deep (at most {MAX_NESTING})")
    return document


def _deepest_key(text: str) -> int:
    """The most dots in one stretch of text outside strings and comments, between separators
    (= , [ ] { } and line ends): the depth of the deepest dotted key or table header. Numbers hold
    at most one dot; string values and comments are skipped, however many dots they hold."""
    deepest = dots = 0
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char in "\"'":
            quote = char * 3 if text.startswith(char * 3, i) else char
            i += len(quote)
            while i < end and not text.startswith(quote, i):
                if char == '"' and text[i] == "\\":
                    i += 1
                elif len(quote) == 1 and text[i] == "\n":
                    break  # an unterminated string: tomllib will say so
                i += 1
            i += len(quote)
            continue
        if char == "#":
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
            continue
        if char == ".":
            dots += 1
            deepest = max(deepest, dots)
        elif char in "=,[]{}\n":
            dots = 0
        i += 1
    return deepest


def _depth(value: Any) -> int:
    """How deep tables and arrays go (iterative: the value may be as deep as tomllib allowed)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in item)
    return deepest
