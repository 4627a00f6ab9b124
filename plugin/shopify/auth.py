"""Where the Admin API access token comes from: a static token, or the client credentials grant.

Contract (sources: shopify.dev "Using the client credentials grant", "About client credentials",
"Get API access tokens for Dev Dashboard apps"; ../shared/reference/shopify/NOTES.md "Getting an
access token"; reports quoted below):

- [DOC] `POST https://{shop}.myshopify.com/admin/oauth/access_token`, `Content-Type:
  application/x-www-form-urlencoded`, body `grant_type=client_credentials&client_id=…&client_secret=…`
  answers `{"access_token": "…", "scope": "read_products,write_products", "expires_in": 86399}`.
- [DOC] The token is used like any Admin token (`X-Shopify-Access-Token`) and expires after 24 hours;
  there is no refresh token: ask again with the client credentials.
- [DOC] Only for an app of the merchant's own organisation, installed on a store it owns.
- [DOC] An expired or revoked token: HTTP 401
  `{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}`.
- [DOC, user reports] Refusals seen: HTTP 400 "Oauth error app_not_installed: The application is
  not installed on this shop." (community.shopify.dev t/33287) and "Oauth error shop_not_permitted:
  Client credentials cannot be performed on this shop." (github unopim/shopify-connector#43).
- [ASSUME] The body shape of those refusals: Shopify's OAuth endpoint answers errors as
  `{"error": "<code>", "error_description": "<text>"}` (seen for `invalid_request`, e.g.
  BNMetrics/Laravel-ShopifyAPI#9); the reports above quote it rendered as "Oauth error <code>:
  <text>". Neither is documented for this grant, so `_refusal` reads both, plus `errors` (string,
  list or object) and any text, and goes by the code where it finds one.
- [ASSUME] A wrong client secret or client ID is refused with `invalid_client` (RFC 6749 §5.2;
  Shopify does not document its answer for this grant), HTTP 400 or 401.
- [ASSUME] `expires_in` may be missing or not a number: the token is then taken to live 24 hours
  (the documented lifetime), and renewed ahead of that like any other.
- [ASSUME] A 5xx, 429 or a broken connection on the token endpoint is transient (retried with
  backoff); a 4xx other than 429 is the merchant's to fix and is reported, not hammered: the next
  grant waits out the same backoff.

Behaviour: the token lives in memory only. It is renewed ahead of its expiry, `renew_margin` before
it: (1 - `renew_at`) of its life, at most `max_margin` (a 24-hour token: 5 minutes before; a
sandbox's 4-second one: at 3.6 s), so the grants of a long run are its expiries plus one, and
no call carries a token about to lapse. And at once after a 401 from GraphQL when the rejected token had worked
before or the last 401-renewal is older than `min_reactive_interval`: a store that keeps answering
401 gets one 401-renewal per interval, not a grant per call. Concurrent callers wait for one grant (an
asyncio lock). A grant that fails is not asked again before its backoff has passed (doubling up to
`max_backoff`); meanwhile callers get the same error at once, and a still-valid token keeps being
used. Every issued token is handed to `on_token` (the daemon adds it to its log redaction list).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from .errors import ShopifyTokenError, ShopifyUnavailable

log = structlog.get_logger(__name__)

DEFAULT_LIFETIME = 86399.0  # [DOC] the 24 hours Shopify documents, when `expires_in` is unusable

# Scopes retouch needs (README): reads of products, writes of products (media) and files (fileUpdate,
# staged uploads). A write scope includes its read scope.
REQUIRED_SCOPES = ("read_products", "write_products", "write_files")

_OAUTH_TEXT = re.compile(r"oauth error\s+([a-z_]+)\s*[:\-]?\s*(.*)", re.IGNORECASE | re.DOTALL)


class TokenSource(Protocol):
    """What the GraphQL client asks for its `X-Shopify-Access-Token`."""

    kind: str

    async def token(self) -> str: ...

    async def rejected(self, token: str) -> str | None:
        """The token was answered 401: a fresh one to retry with once, or None (report the 401)."""

    def accepted(self, token: str) -> None:
        """The token was accepted (any answer but 401)."""

    def known(self) -> list[str]:
        """Every token value this source handed out (to scrub from quoted text)."""


class StaticToken:
    """A token copied from the admin (apps made there before 2026): never renewed."""

    kind = "static"

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the Shopify access token is empty")
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken()"

    async def token(self) -> str:
        return self._token

    async def rejected(self, token: str) -> str | None:
        return None

    def accepted(self, token: str) -> None:
        pass

    def known(self) -> list[str]:
        return [self._token]


@dataclass(frozen=True)
class TokenState:
    """What `status`, `/healthz` and `check` may show of the token: never its value."""

    ok: bool
    detail: str
    expires_in: float | None = None  # seconds left on the current token
    lifetime: float | None = None  # what Shopify granted (expires_in)
    scopes: tuple[str, ...] = ()
    grants: int = 0
    code: str | None = None  # the refusal's code (app_not_installed, invalid_client, ...)


def missing_scopes(granted: tuple[str, ...] | list[str]) -> list[str]:
    """Which of REQUIRED_SCOPES the granted scopes lack (a write scope covers its read scope)."""
    have = set(granted)
    return [
        s
        for s in REQUIRED_SCOPES
        if s not in have and not (s.startswith("read_") and "write_" + s.removeprefix("read_") in have)
    ]


def oauth_url(shop_url: str) -> str:
    """The token endpoint on the shop's own origin (a loopback sandbox keeps its http and port)."""
    text = shop_url.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    parts = httpx.URL(text)
    return f"{parts.scheme}://{parts.netloc.decode()}/admin/oauth/access_token"


class ClientCredentials:
    """Tokens from the client credentials grant, renewed ahead of expiry and after a 401."""

    kind = "client_credentials"

    def __init__(
        self,
        shop_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 30.0,
        renew_at: float = 0.9,
        max_margin: float = 300.0,
        min_reactive_interval: float = 60.0,
        first_backoff: float = 1.0,
        max_backoff: float = 300.0,
        on_token: Callable[[str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are both needed")
        if not 0 < renew_at < 1:
            raise ValueError("renew_at must be a fraction of the token's life, between 0 and 1")
        self._url = oauth_url(shop_url)
        self._client_id = client_id
        self._secret = client_secret
        self._timeout = timeout
        self._renew_at = renew_at
        self._max_margin = max_margin
        self._min_reactive = min_reactive_interval
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._on_token = on_token
        self._transport = transport
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._issued: list[str] = []
        self._expires_at = 0.0
        self._renew_due = 0.0
        self._lifetime: float | None = None
        self._scopes: tuple[str, ...] = ()
        self._worked = False  # the current token had an answer other than 401
        self._reactive_at: float | None = None  # the last renewal a 401 caused
        self._failure: Exception | None = None
        self._retry_at = 0.0
        self._backoff = first_backoff
        self.grants = 0  # successful grants
        self.requests = 0  # grant requests sent

    def __repr__(self) -> str:  # never the secret nor a token
        return f"ClientCredentials({self._url!r}, client_id={self._client_id!r})"

    @property
    def url(self) -> str:
        return self._url

    def known(self) -> list[str]:
        return [self._secret, *self._issued]

    # ------------------------------------------------------------------ the token

    async def token(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._renew_due:
            return self._token
        async with self._lock:
            now = self._clock()
            if self._token is not None and now < self._renew_due:
                return self._token  # another caller renewed it while this one waited
            usable = self._token is not None and now < self._expires_at
            try:
                return await self._grant()
            except (ShopifyTokenError, ShopifyUnavailable):
                if usable:
                    assert self._token is not None
                    return self._token  # renewing early failed; the current token still has time
                self._token = None
                raise

    async def rejected(self, token: str) -> str | None:
        async with self._lock:
            if self._token is not None and token != self._token:
                return self._token  # renewed already by a concurrent caller
            now = self._clock()
            recent = self._reactive_at is not None and now - self._reactive_at < self._min_reactive
            if recent and not self._worked:
                # A token that never worked, refused soon after the last 401-renewal: asking again
                # would be refused too, and a store that keeps answering 401 must not get a grant
                # per call. (A token that had worked was revoked: renewed at once.)
                return None
            self._token = None
            self._renew_due = self._expires_at = 0.0
            self._reactive_at = now
            try:
                return await self._grant()
            except (ShopifyTokenError, ShopifyUnavailable):
                return None

    def accepted(self, token: str) -> None:
        if token == self._token:
            self._worked = True

    def state(self) -> TokenState:
        now = self._clock()
        if self._failure is not None and (self._token is None or now >= self._expires_at):
            return TokenState(False, str(self._failure), grants=self.grants, code=getattr(self._failure, "code", None))
        if self._token is None:
            return TokenState(True, "no token asked for yet", grants=self.grants)
        left = max(0.0, self._expires_at - now)
        detail = f"client credentials; the token expires in {_duration(left)}, renewed ahead of that"
        if self._failure is not None:
            detail += f" (the last renewal failed: {self._failure})"
        return TokenState(
            True, detail, expires_in=left, lifetime=self._lifetime, scopes=self._scopes, grants=self.grants
        )

    # ------------------------------------------------------------------ the grant

    async def _grant(self) -> str:
        """One grant request (the lock is held), unless the last one failed and its backoff runs."""
        now = self._clock()
        if self._failure is not None and now < self._retry_at:
            raise self._failure
        self.requests += 1
        try:
            token, lifetime, scopes = await self._request()
        except (ShopifyTokenError, ShopifyUnavailable) as exc:
            self._failure = exc
            self._retry_at = self._clock() + self._backoff
            log.warning(
                "access_token_not_granted",
                reason=str(exc),
                code=getattr(exc, "code", None),
                retry_in=round(self._backoff, 1),
            )
            self._backoff = min(self._backoff * 2, self._max_backoff)
            raise
        now = self._clock()
        self.grants += 1
        self._failure = None
        self._backoff = self._first_backoff
        self._issued.append(token)
        if self._on_token is not None:
            self._on_token(token)
        self._token, self._lifetime, self._scopes, self._worked = token, lifetime, scopes, False
        log.info("access_token_granted", expires_in=lifetime, scopes=",".join(scopes), grants=self.grants)
        self._expires_at = now + lifetime
        self._renew_due = now + lifetime - min(lifetime * (1 - self._renew_at), self._max_margin)
        return token

    async def _request(self) -> tuple[str, float, tuple[str, ...]]:
        form = {"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._secret}
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=httpx.Timeout(self._timeout), follow_redirects=False
            ) as http:
                response = await http.post(self._url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ShopifyUnavailable(
                f"cannot reach {self._url} for a token ({type(exc).__name__})", operation="access_token"
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise ShopifyUnavailable(f"the token endpoint answered HTTP {status}", operation="access_token")
        if status != 200:
            code, text = _refusal(response)
            raise ShopifyTokenError(code, self._scrub(text), status=status)
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ShopifyUnavailable("the token endpoint answered without an access_token", operation="access_token")
        return token, _lifetime(body.get("expires_in")), _scopes(body.get("scope"))

    def _scrub(self, text: str) -> str:
        for value in self.known():
            if len(value) >= 6:  # as the log redactor: a short value would garble the text, not protect it
                text = text.replace(value, "[redacted]")
        return text[:300]


def _lifetime(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return seconds if math.isfinite(seconds) and seconds > 0 else DEFAULT_LIFETIME


def _scopes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    if isinstance(value, list):
        return tuple(str(s).strip() for s in value if str(s).strip())
    return ()


def _refusal(response: httpx.Response) -> tuple[str | None, str]:
    """(code, text) of a refused grant, read tolerantly (see the module's [ASSUME])."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        text = body.get("error_description") if isinstance(body.get("error_description"), str) else None
        errors = body.get("errors")
        if text is None and errors is not None:
            text = (
                errors
                if isinstance(errors, str)
                else "; ".join(map(str, errors))
                if isinstance(errors, list)
                else str(errors)
            )
        if code is None and text:
            code = _code_in(text)
        return code, text or code or f"HTTP {response.status_code}"
    text = response.text.strip()
    return _code_in(text), text or f"HTTP {response.status_code}"


def _code_in(text: str) -> str | None:
    match = _OAUTH_TEXT.search(text)
    if match:
        return match.group(1).lower()
    for code in ("app_not_installed", "shop_not_permitted", "invalid_client"):
        if code in text:
            return code
    return None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
