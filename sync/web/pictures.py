"""The pictures the review page shows: the original's backup and the kept result, read from this
machine's disk by image id (never fetched from Shopify with the store's token), and served only when
the bytes are a picture of a type a browser shows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from retouch.storage.backups import BackupStore

if TYPE_CHECKING:
    from retouch.storage.models import Image

    from ..config import Settings

# The first bytes of each format served; anything else is refused (a file that is not a picture).
SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and the length
)


def picture_type(data: bytes) -> str | None:
    """The content type the bytes really are, or None when they are no picture a page may show."""
    for signature, offset, mime in SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            if mime == "image/webp" and data[:4] != b"RIFF":
                continue
            return mime
    return None


def picture_sha(image: Image, which: str) -> str | None:
    """The digest of the image's `before` (the original's backup) or `after` (the kept result)."""
    if which == "before":
        return image.backup_sha256
    if which == "after":
        return getattr(image, "result_sha256", None)
    return None


def picture_file(settings: Settings, sha256: str) -> Path | None:
    """Where the bytes of `sha256` are: the review module knows where kept results live; backups are
    in [writeback] backup_dir."""
    try:
        from ..review import picture_path
    except ImportError:  # the review step is not part of this build
        pass
    else:
        kept = picture_path(settings, sha256)
        if kept is not None:
            return kept
    path = BackupStore(settings.backup_dir).path_for(sha256)
    return path if path.is_file() else None


def read_picture(settings: Settings, sha256: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of a kept picture, or None when it is gone or not a picture."""
    if not sha256 or len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        return None
    path = picture_file(settings, sha256)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mime = picture_type(data)
    return (data, mime) if mime else None
