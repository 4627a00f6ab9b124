"""Content-addressed store of original image bytes: `<dir>/<sha[:2]>/<sha>`.

An original is written (to a temporary file, fsync'd, then renamed) before anything in Shopify
changes, so `revert` can always put back the exact bytes. Writing the same bytes twice is a no-op.

`[backup] keep` lets the originals of images done long ago go (`retouch backups prune`): the policy
is decided by `prunable_digests` (pure), the rows that hold each original are read and marked by the
Store, and a revert of a pruned image says when its original went.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
            os.utime(target)  # in use again: a prune running now leaves it (RECENT_GRACE)
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


# ----- the keep policy ([backup] keep): which originals may go -------------------------------------------------------

# A file touched this recently may be on its way to a row (`put` found it, the row is not written yet): never pruned.
RECENT_GRACE = 3600.0


@dataclass(frozen=True)
class Holder:
    """One image row that refers to a backed-up original."""

    sha256: str
    state: str
    done_before: bool  # done, and last changed before the cutoff
    reverted: bool  # reverted at least once (reverted_at set), whatever its state now
    product_id: str = ""
    media_id: str = ""


def prunable_digests(holders: Iterable[Holder]) -> set[str]:
    """The originals every one of whose images is done before the cutoff and was never reverted.

    Content-addressed: two images with the same original bytes share one file, so one image that
    must keep it (queued, failed, recent, reverted) keeps it for all."""
    keep: set[str] = set()
    candidates: set[str] = set()
    for holder in holders:
        if holder.state == "done" and holder.done_before and not holder.reverted:
            candidates.add(holder.sha256)
        else:
            keep.add(holder.sha256)
    return candidates - keep


@dataclass(frozen=True)
class Inventory:
    files: dict[str, int]  # sha256 -> size in bytes, of every original on disk
    prunable: dict[str, int]  # those the policy lets go (a subset)
    media: dict[str, list[str]] = field(default_factory=dict)  # prunable sha256 -> "product media" of its images

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def size(self) -> int:
        return sum(self.files.values())

    @property
    def prunable_size(self) -> int:
        return sum(self.prunable.values())


def files_on_disk(directory: Path) -> dict[str, os.stat_result]:
    """sha256 -> stat of each original stored under `directory` (temporary files left out)."""
    found: dict[str, os.stat_result] = {}
    if not directory.is_dir():
        return found
    for prefix in os.scandir(directory):
        if not prefix.is_dir() or len(prefix.name) != 2:
            continue
        for entry in os.scandir(prefix.path):
            if entry.is_file() and len(entry.name) == 64 and entry.name.startswith(prefix.name):
                found[entry.name] = entry.stat()
    return found


def disk_usage(directory: Path) -> tuple[int, int]:
    """(bytes used by the originals, bytes free on their filesystem)."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("/"))
    return sum(st.st_size for st in files_on_disk(directory).values()), shutil.disk_usage(existing).free


def inventory(store: Any, directory: Path, keep: float | None, now: float) -> Inventory:
    """What is on disk and what `keep` (seconds; None = forever) lets go."""
    stats = files_on_disk(directory)
    files = {sha: st.st_size for sha, st in stats.items()}
    if keep is None:
        return Inventory(files, {})
    holders = store.backup_holders(before=now - keep)
    shas = prunable_digests(holders)
    media: dict[str, list[str]] = {}
    for holder in holders:
        if holder.sha256 in shas:
            media.setdefault(holder.sha256, []).append(f"{holder.product_id} {holder.media_id}")
    # A file touched in the last hour may be on its way to a new row (`put` found it there): left for later.
    settled = {sha for sha, st in stats.items() if now - st.st_mtime >= RECENT_GRACE}
    return Inventory(files, {sha: size for sha, size in files.items() if sha in shas and sha in settled}, media)


def prune(store: Any, backups: BackupStore, keep: float, now: float) -> tuple[int, int, list[str]]:
    """Delete the originals the policy lets go; returns (count, bytes, digests deleted).

    Each original is first marked pruned on its rows by one statement that re-checks the policy
    (so an image queued again meanwhile keeps it), then deleted; a file touched in the last hour
    (a `put` of the same bytes for a new image) is left for the next prune, checked again just
    before it is marked."""
    deleted: list[str] = []
    size = 0
    for sha, bytes_ in inventory(store, backups.directory, keep, now).prunable.items():
        path = backups.path_for(sha)
        try:
            if now - path.stat().st_mtime < RECENT_GRACE:
                continue
        except FileNotFoundError:
            continue
        if not store.mark_backup_pruned(sha, before=now - keep, at=now):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        deleted.append(sha)
        size += bytes_
    return len(deleted), size, deleted
