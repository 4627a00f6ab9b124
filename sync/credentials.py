"""Secrets from systemd credentials (`$CREDENTIALS_DIRECTORY/<name>`), read without trusting them.

The directory may be unreadable or not a directory, the file a directory, a FIFO, empty, not
UTF-8, or a token with a line break or a non-ASCII character in it (which would only fail at the
first HTTP request, as a header that cannot be encoded, or worse, a header split in two). Each is
one line naming the credential; never the value.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .config_file import CREDENTIAL_MAX_BYTES, UnreadableFile, read_regular_file

MAX_TOKEN_CHARS = 4096  # Shopify's tokens are ~40 characters, the providers' keys under 100


def read_credential(directory: str | None, name: str, key: str) -> str | None:
    """The credential's text (stripped), None when there is no such credential; UnreadableFile
    with the reason, naming `key` and the credential, when there is one that cannot be used."""
    if not directory:
        return None
    where = f"$CREDENTIALS_DIRECTORY ({directory})"
    try:
        info = os.stat(directory)
    except OSError as exc:
        raise UnreadableFile(f"{key}: cannot look in {where}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnreadableFile(f"{key}: {where} is not a directory")
    path = Path(directory) / name
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise UnreadableFile(
            f"{key}: cannot read systemd credential {name} in {where}: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        data = read_regular_file(path, CREDENTIAL_MAX_BYTES)
    except UnreadableFile as exc:
        raise UnreadableFile(f"{key}: systemd credential {name} {exc}") from None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UnreadableFile(f"{key}: systemd credential {name} is not UTF-8 text") from None
    if not text:
        raise UnreadableFile(f"{key}: systemd credential {name} is empty")
    return text


def secret_problem(value: str) -> str | None:
    """What makes `value` unusable as a token in an HTTP header, or None. Never quotes it."""
    if not value:
        return "is empty"
    if len(value) > MAX_TOKEN_CHARS:  # a header that long is refused by every server (431)
        return f"is {len(value):,} characters long (at most {MAX_TOKEN_CHARS:,})"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "holds a line break or another control character"
    if not value.isascii():
        return "holds a non-ASCII character"
    if " " in value:
        return "holds a space"
    return None
