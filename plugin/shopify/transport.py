"""The narrow seam between retouch and Shopify: one GraphQL call, paced, retried, mapped.

`GraphQLTransport.execute(operation_name, variables)` is the one method the operation modules
(catalog.py, media.py, staged.py, bulk.py, subscriptions.py, downloads.py) build on. It
- waits until the cost bucket should hold the operation's estimated cost (`pacing.CostBucket`),
- sends the document from `operations/` with the access token and a timeout,
- retries what is transient: THROTTLED (wait computed from the bucket), HTTP 429 (Retry-After),
  5xx, timeouts and connection errors (exponential backoff with full jitter),
- and maps everything else onto the exception tree in `errors` (drawn there).

Retrying a mutation is only safe when running it twice does no harm. Queries and the idempotent
mutations below are retried on anything transient. `ProductAddMedia` (productUpdate with new media)
would add the image twice, so it is retried only when Shopify certainly did not run it (THROTTLED,
429, no connection made); after a timeout or 5xx it raises `ShopifyUnavailable(ambiguous=True)` and
the caller reads the product back to find out.

The access token is sent only in the `X-Shopify-Access-Token` header of GraphQL requests to the
shop's own Admin API URL: uploads to staged targets and downloads of CDN URLs go out (through
`send` and `with_retries`, the same plumbing) without it. It never appears in logs, exception
messages or reprs. It comes from a `TokenSource` (auth.py): a static token, or the client
credentials grant; a 401 asks the source once for a fresh token and the request is sent once more.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import httpx
import structlog

from .admin_url import admin_api_url
from .auth import StaticToken, TokenSource
from .errors import (
    ShopifyAuthError,
    ShopifyResponseError,
    ShopifyUnavailable,
    ShopifyUserError,
    UserError,
)
from .operations import operation, operation_kind
from .pacing import CostBucket, actual_cost, backoff_delay, requested_cost

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_API_VERSION = "2026-07"

# Mutations that may safely run twice: same input, same end state.
# (WebhookSubscriptionCreate is not: a lost answer is followed by a fresh list, not a blind retry.)
IDEMPOTENT_MUTATIONS = frozenset(
    {
        "StagedUploadsCreate",
        "FileUpdate",
        "MetafieldsSet",
        "ProductReorderMedia",
        "FileDelete",
        "WebhookSubscriptionDelete",
        "BulkOperationCancel",
    }
)


@dataclass
class ClientStats:
    """Counters for metrics: requests sent (GraphQL and plain HTTP), THROTTLED answers,
    retries by reason, cost points Shopify charged, seconds spent pacing."""

    requests: int = 0
    throttled: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    points_spent: float = 0.0
    paced_seconds: float = 0.0


class Transient(Exception):
    """One attempt failed in a way worth retrying. Raised by `send`, caught by `with_retries`;
    never leaves the Shopify package.

    `maybe_executed` is False only when the server certainly did not run the request.
    `wait` is the server-suggested or computed wait, None to use the backoff.
    """

    def __init__(self, reason: str, *, maybe_executed: bool, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_executed = maybe_executed
        self.wait = wait


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in (float) seconds, or None when absent or not a number."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class GraphQLTransport:
    """Paced, retrying GraphQL transport to one store's Admin API. Use as an async context manager."""

    def __init__(
        self,
        shop_url: str,
        access_token: str | TokenSource,
        api_version: str = DEFAULT_API_VERSION,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        # A string is a static token (an app made in the admin); a TokenSource renews its own.
        tokens = StaticToken(access_token) if isinstance(access_token, str) else access_token
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._graphql_url = admin_api_url(shop_url, api_version)
        self._api_version = api_version
        self._tokens: TokenSource = tokens
        self._max_attempts = max_attempts
        self._clock = clock
        self._sleep = sleep
        self._random = random.Random()
        self._bucket = CostBucket()
        self._version_warned = False
        self.stats = ClientStats()
        # No default headers: the token is added to GraphQL requests only, so uploads and
        # downloads to other hosts can never carry it.
        self._http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._graphql_url!r})"

    @property
    def graphql_url(self) -> str:
        return self._graphql_url

    @property
    def tokens(self) -> TokenSource:
        """Where the access token comes from (static, or the client credentials grant)."""
        return self._tokens

    @property
    def bucket(self) -> CostBucket:
        """What the client knows of the store's cost bucket (read-only use)."""
        return self._bucket

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the GraphQL call

    async def execute(
        self, operation_name: str, variables: Mapping[str, Any] | None = None, *, raise_user_errors: bool = True
    ) -> dict[str, Any]:
        """Run operation `operation_name` (a file in `operations/`) and return its `data`.

        Raises ShopifyUserError when a mutation payload carries userErrors/mediaUserErrors, unless
        `raise_user_errors=False` (the caller reads them itself with `user_errors`).
        """
        document = operation(operation_name)
        retry_when_maybe_executed = operation_kind(operation_name) == "query" or operation_name in IDEMPOTENT_MUTATIONS
        payload = {"query": document, "variables": dict(variables or {}), "operationName": operation_name}

        async def once() -> dict[str, Any]:
            await self._pace(operation_name)
            return await self._post_graphql(operation_name, payload)

        data = await self.with_retries(operation_name, once, retry_when_maybe_executed=retry_when_maybe_executed)
        if raise_user_errors:
            self._raise_user_errors(operation_name, data)
        return data

    async def _pace(self, operation_name: str) -> None:
        estimate = self._bucket.estimate(operation_name)
        while (wait := self._bucket.delay_for(estimate, self._clock())) > 0:
            log.info("pace", operation=operation_name, wait=round(wait, 3))
            self.stats.paced_seconds += wait
            await self._sleep(wait)
        self._bucket.reserve(estimate, self._clock())

    async def _post_graphql(self, operation_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        token = await self._tokens.token()
        response = await self.send(self._graphql_request(payload, token))
        if response.status_code == 401:
            # Expired or revoked: one fresh token (concurrent callers share its grant), one retry.
            fresh = await self._tokens.rejected(token)
            if fresh is not None:
                log.info("access_token_renewed", reason="401", operation=operation_name)
                token = fresh
                response = await self.send(self._graphql_request(payload, token))
        seen_at = self._clock()
        status = response.status_code
        if status != 401:
            self._tokens.accepted(token)
        if status in (401, 403):
            problem = "the access token was rejected" if status == 401 else "the app lacks an access scope"
            raise ShopifyAuthError(
                f"{operation_name}: {problem} (HTTP {status}): {self._error_text(response)}", status=status
            )
        if status != 200:
            hint = " (check the shop URL and the API version)" if status == 404 else ""
            raise ShopifyResponseError(
                f"unexpected HTTP status {status}{hint}", operation=operation_name, status=status
            )
        self._check_api_version(response)
        body = self._json_object(response, operation_name)

        extensions = body.get("extensions")
        cost = extensions.get("cost") if isinstance(extensions, dict) else None
        self._bucket.update(cost, seen_at, operation=operation_name)
        self.stats.points_spent += actual_cost(cost) or 0.0

        errors = body.get("errors")
        if errors:
            self._raise_graphql_errors(operation_name, errors, cost, seen_at)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ShopifyResponseError("response has no data object", operation=operation_name)
        return data

    def _graphql_request(self, payload: dict[str, Any], token: str) -> httpx.Request:
        headers = {"X-Shopify-Access-Token": token, "Accept": "application/json"}
        return self._http.build_request("POST", self._graphql_url, json=payload, headers=headers)

    def _raise_graphql_errors(self, operation_name: str, errors: Any, cost: Any, seen_at: float) -> None:
        entries = errors if isinstance(errors, list) else [{"message": errors}]
        codes = {
            entry["extensions"].get("code")
            for entry in entries
            # (only text: a list or object as a code is unhashable, and is no code we act on)
            if isinstance(entry, dict)
            and isinstance(entry.get("extensions"), dict)
            and isinstance(entry["extensions"].get("code"), str)
        }
        messages = [self.redact(str(entry.get("message") if isinstance(entry, dict) else entry)) for entry in entries]
        if "THROTTLED" in codes:
            # Nothing ran. Wait exactly until the bucket holds what the query asked for.
            self.stats.throttled += 1
            needed = requested_cost(cost) or self._bucket.estimate(operation_name)
            wait = self._bucket.delay_for(needed, seen_at)
            raise Transient("throttled", maybe_executed=False, wait=wait if wait > 0 else None)
        if "ACCESS_DENIED" in codes:
            raise ShopifyAuthError(f"{operation_name}: access denied: {'; '.join(messages)}")
        raise ShopifyResponseError(
            f"GraphQL errors: {'; '.join(messages)}", operation=operation_name, messages=messages
        )

    def _raise_user_errors(self, operation_name: str, data: Mapping[str, Any]) -> None:
        found = self.user_errors(operation_name, data)
        if found:
            raise ShopifyUserError(operation_name, found)

    def user_errors(self, operation_name: str, data: Mapping[str, Any]) -> list[UserError]:
        """Every userError / mediaUserError of a mutation's answer (messages scrubbed)."""
        found: list[UserError] = []
        for payload in data.values():
            if not isinstance(payload, dict):
                continue
            for key in ("userErrors", "mediaUserErrors"):
                entries = payload.get(key) or []
                if not isinstance(entries, list):
                    raise ShopifyResponseError(f"{key} is not a list", operation=operation_name)
                for entry in entries:
                    if not isinstance(entry, dict):
                        raise ShopifyResponseError(f"an entry of {key} is not an object", operation=operation_name)
                    field_path = entry.get("field")
                    code = entry.get("code")
                    found.append(
                        UserError(
                            code=code if isinstance(code, str) else None,
                            field=[str(part) for part in field_path]
                            if isinstance(field_path, list) and field_path
                            else None,
                            message=self.redact(str(entry.get("message", ""))),
                        )
                    )
        return found

    def _check_api_version(self, response: httpx.Response) -> None:
        # Shopify answers an unsupported version with the oldest supported one, silently.
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self._api_version and not self._version_warned:
            self._version_warned = True
            log.warning("api_version_mismatch", requested=self._api_version, served=served)

    # ------------------------------------------------------------------ HTTP plumbing

    async def send(
        self, request: httpx.Request, *, stream: bool = False, follow_redirects: bool = False
    ) -> httpx.Response:
        """Send one request; map httpx failures, 429 and 5xx to `Transient`. Other statuses return."""
        self.stats.requests += 1
        try:
            response = await self._http.send(request, stream=stream, follow_redirects=follow_redirects)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the server never saw the request.
            raise Transient(f"connect_error ({type(exc).__name__})", maybe_executed=False) from None
        except httpx.TimeoutException as exc:
            raise Transient(f"timeout ({type(exc).__name__})", maybe_executed=True) from None
        except httpx.UnsupportedProtocol:
            raise ShopifyResponseError(f"unsupported URL scheme in {request.url.scheme}://{request.url.host}") from None
        except httpx.InvalidURL:
            # httpx reads a redirect's Location even when it does not follow it; a garbled one raises this.
            raise ShopifyResponseError(f"{request.url.host} answered a redirect to an unusable URL") from None
        except httpx.TransportError as exc:
            raise Transient(f"connection_error ({type(exc).__name__})", maybe_executed=True) from None
        except httpx.RequestError as exc:  # too many redirects, undecodable body: retrying will not help
            raise ShopifyResponseError(f"request to {request.url.host} failed: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            wait = _retry_after(response)
            if stream:
                await response.aclose()
            # A 429 is refused before anything runs; a 5xx may come after the work was done.
            raise Transient(f"http_{status}", maybe_executed=status != 429, wait=wait)
        return response

    async def with_retries(self, label: str, once: Callable[[], Awaitable[T]], *, retry_when_maybe_executed: bool) -> T:
        failure: Transient | None = None
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await once()
            except Transient as exc:
                failure = exc
            if failure.maybe_executed and not retry_when_maybe_executed:
                raise ShopifyUnavailable(failure.reason, ambiguous=True, operation=label)
            if attempt == self._max_attempts:
                break
            wait = failure.wait if failure.wait is not None else backoff_delay(attempt, self._random.random())
            kind = failure.reason.split(" ", 1)[0]
            self.stats.retries[kind] += 1
            log.warning("retry", operation=label, attempt=attempt, wait=round(wait, 3), reason=failure.reason)
            await self._sleep(wait)
        assert failure is not None
        raise ShopifyUnavailable(
            f"{failure.reason} (gave up after {self._max_attempts} attempts)", ambiguous=False, operation=label
        )

    def _json_object(self, response: httpx.Response, operation_name: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (ValueError, RecursionError):  # also nested deeper than the parser goes
            raise ShopifyResponseError("response body is not JSON", operation=operation_name) from None
        if not isinstance(body, dict):
            raise ShopifyResponseError("response body is not a JSON object", operation=operation_name)
        return body

    def _error_text(self, response: httpx.Response) -> str:
        """Shopify's short explanation from an error body (scrubbed), for auth errors."""
        try:
            body = response.json()
            text = body.get("errors") if isinstance(body, dict) else None
        except (ValueError, RecursionError):
            text = None
        return self.redact(str(text or response.reason_phrase))[:300]

    def redact(self, text: str) -> str:
        # Servers do not normally echo credentials, but a message we quote must never carry one.
        for value in self._tokens.known():
            text = text.replace(value, "[redacted]")
        return text

    def now(self) -> float:
        """The transport's monotonic clock (operation modules time their own waits with it)."""
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        """Wait on the transport's sleep (replaced by tests to run waits on a fake clock)."""
        await self._sleep(seconds)

    def build_request(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        """A request on this transport's connections, without the token (uploads, downloads)."""
        return self._http.build_request(method, url, **kwargs)


__all__ = [
    "DEFAULT_API_VERSION",
    "IDEMPOTENT_MUTATIONS",
    "ClientStats",
    "GraphQLTransport",
    "Transient",
    "admin_api_url",
]
