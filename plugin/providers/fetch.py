"""Downloads of provider results: their own small seam, with their own errors.

A provider answers a finished job with a URL (a lasting one, or a presigned link that expires);
the bytes come from wherever it points: the provider's storage, a CDN, S3. `ResultFetcher.fetch`
is the one call for that: a GET without any credential of ours (neither the Shopify token nor the
provider's key), redirects followed, a size cap, retries of what is transient, and every failure
mapped where it enters onto this tree:

    ProviderError                  (errors.py: the pipeline records it on the image and tries later)
     └── FetchError                a result could not be downloaded (`host`, `status` when one came)
          ├── LinkGone             HTTP 404/410: the link leads nowhere (any more)
          ├── FetchRefused         another 4xx (403: an S3 signature refused), or not an http(s) URL
          ├── FetchTooLarge        the body is over `max_bytes` (declared, or counted while reading)
          ├── FetchTimeout         no complete answer in time, after the retries
          └── FetchUnavailable     connection failures, 429 and 5xx, after the retries

Whether a refusal means "this link expired, ask for a new one" is each provider's own rule
(`Provider.result_link_expired`, see base.py): the seam says what happened, the provider what it means.
A link's query string may be its credential (a presigned signature): messages name the host only.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .errors import ProviderError
from .http import no_cookies

DEFAULT_MAX_BYTES = 50 * 2**20  # a result image far larger than any Shopify accepts (20 MB) is not one
DEFAULT_ATTEMPTS = 4  # one try and three retries, over about 0.5 + 1 + 2 seconds
GONE_STATUSES = frozenset({404, 410})
MAX_RETRY_WAIT = 30.0  # a Retry-After longer than this is not waited for here: the image tries later


class FetchError(ProviderError):
    """A provider's result could not be downloaded. `host` is where it was asked for."""

    def __init__(self, code: str, message: str, *, host: str, status: int | None = None) -> None:
        super().__init__(code, message, status=status)
        self.host = host


class LinkGone(FetchError):
    """404/410: nothing is (any longer) at the link."""


class FetchRefused(FetchError):
    """Another 4xx answer (an expired S3 signature answers 403), or a URL that is not http(s)."""


class FetchTooLarge(FetchError):
    """The result is larger than the fetcher accepts."""


class FetchTimeout(FetchError):
    """No complete answer in time (after the retries)."""


class FetchUnavailable(FetchError):
    """The host could not be reached, or answered 429/5xx (after the retries)."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    media_type: str  # the Content-Type without parameters ("image/jpeg")


class _Retry(Exception):
    """One attempt failed in a way worth another: the error to raise if none is left, and the wait."""

    def __init__(self, error: FetchError, wait: float | None = None) -> None:
        super().__init__(error.message)
        self.error, self.wait = error, wait


class ResultFetcher:
    """GETs provider results. Its connections open on the first fetch; `aclose()` closes them."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_base: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if timeout <= 0 or max_bytes < 1 or attempts < 1 or retry_base < 0:
            raise ValueError("timeout and max_bytes must be positive, attempts at least 1, retry_base >= 0")
        self.timeout, self.max_bytes, self.attempts, self.retry_base = timeout, max_bytes, attempts, retry_base
        self._transport = transport
        self._sleep = sleep
        self._random = random.Random()
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"ResultFetcher(timeout={self.timeout}, max_bytes={self.max_bytes}, attempts={self.attempts})"

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> ResultFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def fetch(self, url: str) -> Fetched:
        """The result at `url`. Raises a FetchError (the tree above); never an httpx exception."""
        host = urlsplit(url).hostname or "?"
        if urlsplit(url).scheme not in ("http", "https") or host == "?":
            raise FetchRefused("bad_url", f"a result link must be an http(s) URL (host {host})", host=host)
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(url, host)
            except _Retry as retry:
                if attempt == self.attempts:
                    raise retry.error from None
                wait = retry.wait if retry.wait is not None else self._backoff(attempt)
                await self._sleep(wait)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        # Full jitter, like the Shopify transport: retries of many images do not arrive in step.
        return self._random.random() * self.retry_base * 2 ** (attempt - 1)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # No default headers, no cookies: nothing of ours travels with a result request.
            self._http = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=True,
                cookies=no_cookies(),
            )
        return self._http

    async def _once(self, url: str, host: str) -> Fetched:
        try:
            async with self._client().stream("GET", url) as response:
                self._check_status(response, host)
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(host)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(host)
                    chunks.append(chunk)
                content_type = response.headers.get("Content-Type", "application/octet-stream")
                return Fetched(b"".join(chunks), content_type.split(";", 1)[0].strip())
        except httpx.TimeoutException as exc:
            raise _Retry(
                FetchTimeout(
                    "timeout",
                    f"the result from {host} did not arrive in {self.timeout:g} s ({type(exc).__name__})",
                    host=host,
                )
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects) as exc:
            raise FetchRefused(
                "bad_url", f"the result link to {host} cannot be followed ({type(exc).__name__})", host=host
            ) from None
        except httpx.TransportError as exc:
            raise _Retry(
                FetchUnavailable(
                    "connection_error", f"the result from {host} could not be read ({type(exc).__name__})", host=host
                )
            ) from None
        except httpx.RequestError as exc:  # an undecodable body: another try will not help
            raise FetchUnavailable(
                "bad_body", f"the result from {host} could not be read ({type(exc).__name__})", host=host
            ) from None

    def _too_large(self, host: str) -> FetchTooLarge:
        return FetchTooLarge("too_large", f"the result from {host} is larger than {self.max_bytes} bytes", host=host)

    @staticmethod
    def _check_status(response: httpx.Response, host: str) -> None:
        status = response.status_code
        if response.is_success:
            return
        message = f"the result from {host} was refused: HTTP {status}"
        if status in GONE_STATUSES:
            raise LinkGone("gone", message, host=host, status=status)
        if status == 429 or status >= 500:
            raise _Retry(
                FetchUnavailable(f"http_{status}", message, host=host, status=status), wait=_retry_after(response)
            )
        raise FetchRefused(f"http_{status}", message, host=host, status=status)


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (capped), or None when absent or not a number."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(seconds, MAX_RETRY_WAIT) if math.isfinite(seconds) and seconds >= 0 else None


__all__ = [
    "DEFAULT_MAX_BYTES",
    "FetchError",
    "FetchRefused",
    "FetchTimeout",
    "FetchTooLarge",
    "FetchUnavailable",
    "Fetched",
    "LinkGone",
    "ResultFetcher",
]
