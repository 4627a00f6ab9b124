"""Fetching a media `originalSource`, as Shopify does when media is created or replaced.

Shopify accepts any http(s) URL and downloads it in the background; an unreachable URL or a
non-2xx answer ends as IMAGE_DOWNLOAD_FAILURE once processing finishes, not as an error of the
mutation. URLs served by this sandbox (staged uploads, its CDN) are read straight from the store
by the caller; this module only downloads the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import structlog

from .imaging import MAX_IMAGE_BYTES

log = structlog.get_logger(__name__)

DOWNLOAD_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


@dataclass(frozen=True)
class Fetched:
    """The bytes of a source, or why they could not be had (`error`)."""

    data: bytes | None = field(default=None, repr=False)
    error: str | None = None


def is_valid_source_url(url: str) -> bool:
    """Shopify's "Image URL is invalid" check: an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def download(url: str) -> Fetched:
    """GET `url` with a short timeout; at most 20 MB + 1 byte are read (enough to reject more)."""
    try:
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as client:
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    log.info("source_refused", url=url, status=response.status_code)
                    return Fetched(error=f"HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_IMAGE_BYTES:
                        break
                return Fetched(data=b"".join(chunks))
    except httpx.HTTPError as exc:
        log.info("source_unreachable", url=url, error=type(exc).__name__)
        return Fetched(error=type(exc).__name__)
