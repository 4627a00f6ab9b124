"""Fetching a job's `image_url` over HTTP, with the documented checks (below 10 MB, PNG/JPG/WebP).

Any problem raises SourceError with a readable reason; the job then ends in ERROR and the
sandbox keeps the reason for inspection (the public job answer has no field for it).
"""

from __future__ import annotations

import io
import time

import httpx
from PIL import Image, UnidentifiedImageError

from . import contract


class SourceError(Exception):
    """The source cannot be used; the message says why."""


def source_client() -> httpx.Client:
    return httpx.Client(
        follow_redirects=True,
        max_redirects=contract.MAX_SOURCE_REDIRECTS,
        timeout=contract.SOURCE_TIMEOUT_SECONDS,
        trust_env=False,  # fetched directly: an environment proxy must not sit between us and loopback
    )


def fetch_source(http: httpx.Client, url: str) -> bytes:
    """The image's bytes, or SourceError."""
    deadline = time.monotonic() + contract.SOURCE_TIMEOUT_SECONDS
    chunks: list[bytes] = []
    try:
        with http.stream("GET", url) as response:
            if not response.is_success:
                raise SourceError(f"The image URL answered HTTP {response.status_code}.")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) >= contract.MAX_SOURCE_BYTES:
                raise SourceError("The image is not below 10 MB.")
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size >= contract.MAX_SOURCE_BYTES:
                    raise SourceError("The image is not below 10 MB.")
                if time.monotonic() > deadline:  # a trickling server must not hold the job forever
                    raise SourceError("Downloading the image timed out.")
                chunks.append(chunk)
    except httpx.TooManyRedirects:
        raise SourceError("The image URL redirected too many times.") from None
    except httpx.TimeoutException:
        raise SourceError("Downloading the image timed out.") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceError(f"The image could not be downloaded ({type(exc).__name__}).") from None
    data = b"".join(chunks)
    try:
        image_format = Image.open(io.BytesIO(data)).format
    except (UnidentifiedImageError, OSError, ValueError):
        image_format = None
    if image_format not in contract.SOURCE_FORMATS:
        raise SourceError("The image is not a PNG, JPG or WebP file.")
    return data
