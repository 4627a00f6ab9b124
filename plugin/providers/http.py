"""What every provider client's HTTP layer shares: a cookie-less, redirect-less httpx client that
owns its connections, and the first pydantic error as one line."""

from __future__ import annotations

import http.cookiejar
from types import TracebackType
from typing import Any

import httpx
import pydantic


def no_cookies() -> http.cookiejar.CookieJar:
    # The API key travels in a header and is the only credential: never store or send a cookie,
    # even if a proxy in front of the service sets some.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def api_client(
    *, base_url: str = "", timeout: float, transport: httpx.AsyncBaseTransport | None, headers: dict[str, str]
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=timeout,
        transport=transport,
        follow_redirects=False,  # a redirect would carry the key elsewhere; treat it as unexpected
        cookies=no_cookies(),
        headers=headers,
    )


def first_error(exc: pydantic.ValidationError) -> str:
    """'where: what' for the first problem pydantic found in a response body."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


class ClosingClient:
    """`async with` and `aclose()` for a client whose connections live in `self._http`."""

    _http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
