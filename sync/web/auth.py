"""Who may use the review page: the owner's password (only its Argon2 hash is kept, in the database's
meta table), the key that signs the session cookie (a 0600 file beside the database, never in it),
CSRF tokens, and the login rate limit. Pure decisions and small file/DB reads; no HTTP here."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_META = "ui_password_hash"  # the meta row holding the Argon2 hash (never the password)
MIN_PASSWORD = 10  # characters; a page that can change the store deserves more than a PIN
LOGIN_ATTEMPTS = 5  # per client and LOGIN_WINDOW, then 429 with Retry-After
LOGIN_WINDOW = 60.0  # seconds
MAX_CLIENTS = 10_000  # clients remembered by the rate limiter (oldest forgotten first)

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_problem(password: str) -> str | None:
    """Why this password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"use at least {MIN_PASSWORD} characters"
    if password.strip() != password:
        return "it starts or ends with a space"
    return None


def generated_password() -> str:
    """A one-time password `retouch password --generate` prints: 128 bits, easy to paste."""
    return secrets.token_urlsafe(16)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Does `password` match the stored hash? No hash set: nobody gets in."""
    if not stored_hash:
        # Spend the same work as a real check, so timing does not tell whether a password is set.
        try:
            _HASHER.verify(_DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _HASHER.hash("retouch: no password is set")


def password_version(stored_hash: str) -> str:
    """A short fingerprint of the hash kept in the session: a new password ends every old session."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


def session_key(database: Path) -> str:
    """The key that signs session cookies: kept 0600 beside the database (so sessions survive a
    restart), created on first use. Never stored in the database, logged or shown."""
    path = database.with_name(database.name + ".ui-key")
    try:
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
    except OSError:
        pass  # none yet, or unreadable: a new key below (sessions signed with an old one end)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, key.encode())
        finally:
            os.close(fd)
        os.chmod(path, 0o600)
    except OSError:
        pass  # a folder the daemon may not write: the key lives as long as the process (sign in again after a restart)
    return key


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


@dataclass
class LoginLimiter:
    """At most `attempts` login tries per client in any `window` seconds; the answer to one more is
    how long to wait (Retry-After). Counts every try, right or wrong: a guesser gains nothing from
    a success counting less."""

    attempts: int = LOGIN_ATTEMPTS
    window: float = LOGIN_WINDOW
    tries: dict[str, deque[float]] = field(default_factory=dict)

    def wait(self, client: str, now: float) -> float:
        """0 when this try may go ahead (and it is counted); else the seconds before the next may."""
        recent = self.tries.get(client)
        if recent is None:
            if len(self.tries) >= MAX_CLIENTS:
                self.tries.pop(next(iter(self.tries)))
            recent = self.tries[client] = deque()
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.attempts:
            return recent[0] + self.window - now
        recent.append(now)
        return 0.0
