"""Content-addressed store of original image bytes: `<dir>/<sha[:2]>/<sha>`.

An original is written (to a temporary file, fsync'd, then renamed) before anything in Shopify
changes, so `revert` can always put back the exact bytes. Writing the same bytes twice is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BackupError(Exception):
    """An original could not be stored or read back intact."""


class BackupStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists() and self._digest(target) == digest:
            return digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise BackupError(f"cannot store original in {self.directory}: {exc.strerror or exc}") from exc
        return digest

    def get(self, sha256: str) -> bytes:
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BackupError(f"original {sha256[:12]} is missing from {self.directory}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BackupError(f"original {sha256[:12]} in {self.directory} is corrupted")
        return data

    def has(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        return path.exists() and self._digest(path) == sha256

    @staticmethod
    def _digest(path: Path) -> str:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
