"""Async client for the Shopify Admin GraphQL API: paced, retried, typed.

One `ShopifyClient` talks to one store. Every GraphQL call goes through `execute`, which
- waits until the cost bucket should hold the operation's estimated cost (`pacing.CostBucket`),
- sends the document from `operations/` with the access token and a timeout,
- retries what is transient: THROTTLED (wait computed from the bucket), HTTP 429 (Retry-After),
  5xx, timeouts and connection errors (exponential backoff with full jitter),
- and maps everything else onto the exception tree in `errors`.

Retrying a mutation is only safe when running it twice does no harm. Queries and the idempotent
mutations below are retried on anything transient. `ProductAddMedia` (productUpdate with new media)
would add the image twice, so it is retried only when Shopify certainly did not run it (THROTTLED,
429, no connection made); after a timeout or 5xx it raises `ShopifyUnavailable(ambiguous=True)` and
the caller reads the product back to find out.

The access token is sent only in the `X-Shopify-Access-Token` header of GraphQL requests to the
shop's own Admin API URL: uploads to staged targets and downloads of CDN/result URLs go out
without it. It never appears in logs, exception messages or reprs. It comes from a `TokenSource`
(auth.py): a static token, or the client credentials grant; a 401 asks the source once for a fresh
token and the request is sent once more with it.

ShopifyAPI (`import shopify`) supplies the Admin API conventions: version validation
(`shopify.ApiVersion`), the `/admin/api/<version>` path and the shop URL normalisation
(`shopify.Session`). Its GraphQL transport (blocking urllib, no timeout, prints bodies) is not used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit

import httpx
import shopify
import structlog

from .auth import StaticToken, TokenSource
from .errors import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyResponseError,
    ShopifyUnavailable,
    ShopifyUserError,
    UserError,
)
from .models import (
    MARKER_KEY,
    BulkOperation,
    MARKER_NAMESPACE,
    MARKER_TYPE,
    Media,
    Product,
    ShopInfo,
    WebhookSubscription,
    marker_value,
    parse_bulk_operation,
    parse_datetime,
    parse_media,
    parse_product,
)
from .windows import PAGINATION_CAP, CapExceeded, next_window
from .file_update import FileRow, alt_for_shopify, file_rows
from .operations import bulk_products_query, operation, operation_kind
from .pacing import CostBucket, actual_cost, backoff_delay, requested_cost

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_API_VERSION = "2026-07"

# Mutations that may safely run twice: same input, same end state.
# (WebhookSubscriptionCreate is not: a lost answer is followed by a fresh list, not a blind retry.)
IDEMPOTENT_MUTATIONS = frozenset(
    {"StagedUploadsCreate", "FileUpdate", "MetafieldsSet", "ProductReorderMedia", "FileDelete",
     "WebhookSubscriptionDelete", "BulkOperationCancel"}
)

# Shopify caps a product at 250 media and a connection page at 250 nodes.
_MAX_PAGE = 250

_LOOPBACK_NAMES = {"localhost"}


@dataclass
class ClientStats:
    """Counters for metrics: requests sent (GraphQL and plain HTTP), THROTTLED answers,
    retries by reason, cost points Shopify charged, seconds spent pacing."""

    requests: int = 0
    throttled: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    points_spent: float = 0.0
    paced_seconds: float = 0.0


class _Transient(Exception):
    """One attempt failed in a way worth retrying. Internal to this module.

    `maybe_executed` is False only when the server certainly did not run the request.
    `wait` is the server-suggested or computed wait, None to use the backoff.
    """

    def __init__(self, reason: str, *, maybe_executed: bool, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_executed = maybe_executed
        self.wait = wait


def admin_api_url(shop_url: str, api_version: str) -> str:
    """`{shop}/admin/api/{version}/graphql.json` for a store or a loopback sandbox.

    Raises ValueError for a version that is not `YYYY-MM`/`unstable` or an unusable shop URL.
    """
    try:
        version = shopify.ApiVersion.coerce_to_version(api_version)
    except (shopify.VersionNotFoundError, shopify.InvalidVersionError):
        raise ValueError(f"Shopify API version {api_version!r} is not of the form YYYY-MM") from None
    parts = urlsplit(shop_url.strip() if "://" in shop_url else f"https://{shop_url.strip()}")
    if _is_loopback(parts.hostname):
        # ShopifyAPI's Session forces https and rewrites every host to "<first label>.myshopify.com"
        # (127.0.0.1:8080 would become 127.myshopify.com). A sandbox on loopback speaks plain http on
        # its own port, so keep its origin as given and borrow only the version's path convention.
        return version.api_path(f"{parts.scheme}://{parts.netloc}") + "/graphql.json"
    host = parts.hostname or ""
    if "." in host and not host.endswith(".myshopify.com"):
        # Session would keep only the first label ("www.example.com" -> "www.myshopify.com"):
        # a custom storefront domain must not silently turn into some other shop's address.
        raise ValueError(
            f"shop URL {shop_url!r} is not a myshopify.com address; use the store's admin address, "
            "e.g. https://my-store.myshopify.com (not its custom domain)"
        )
    session = shopify.Session(shop_url, version.name)
    if session.url is None:
        raise ValueError(f"shop URL {shop_url!r} has no host; expected e.g. https://my-store.myshopify.com")
    return session.site + "/graphql.json"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def products_search_query(updated_since: datetime | None, search: str | None) -> str | None:
    """Shopify search syntax for ProductsPage: `updated_at:>='<iso>'`, `AND (<search>)` when both.

    A naive datetime is taken as UTC (SQLite hands back naive datetimes for UTC values).
    Sub-second precision is dropped: Shopify's timestamps are whole seconds and `>=` keeps the
    boundary second, so nothing is missed (a product may be seen twice, which discovery tolerates).
    """
    clauses = []
    if updated_since is not None:
        moment = updated_since if updated_since.tzinfo else updated_since.replace(tzinfo=timezone.utc)
        iso = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        clauses.append(f"updated_at:>='{iso}'")
    if search:
        clauses.append(f"({search})" if clauses else search)
    return " AND ".join(clauses) or None


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in (float) seconds, or None when absent or not a number."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class ShopifyClient:
    """Paced, retrying client of one store's Admin GraphQL API. Use as an async context manager."""

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
        return f"ShopifyClient({self._graphql_url!r})"

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

    async def __aenter__(self) -> "ShopifyClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the GraphQL call

    async def execute(self, operation_name: str, variables: Mapping[str, Any] | None = None, *,
                      raise_user_errors: bool = True) -> dict[str, Any]:
        """Run operation `operation_name` (a file in `operations/`) and return its `data`.

        Raises ShopifyUserError when a mutation payload carries userErrors/mediaUserErrors, unless
        `raise_user_errors=False` (the caller reads them itself with `user_errors`).
        """
        document = operation(operation_name)
        retry_when_maybe_executed = (
            operation_kind(operation_name) == "query" or operation_name in IDEMPOTENT_MUTATIONS
        )
        payload = {"query": document, "variables": dict(variables or {}), "operationName": operation_name}

        async def once() -> dict[str, Any]:
            await self._pace(operation_name)
            return await self._post_graphql(operation_name, payload)

        data = await self._with_retries(operation_name, once, retry_when_maybe_executed=retry_when_maybe_executed)
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
        response = await self._send(self._graphql_request(payload, token))
        if response.status_code == 401:
            # Expired or revoked: one fresh token (concurrent callers share its grant), one retry.
            fresh = await self._tokens.rejected(token)
            if fresh is not None:
                log.info("access_token_renewed", reason="401", operation=operation_name)
                token = fresh
                response = await self._send(self._graphql_request(payload, token))
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
            raise ShopifyResponseError(f"unexpected HTTP status {status}{hint}", operation=operation_name, status=status)
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
            if isinstance(entry, dict) and isinstance(entry.get("extensions"), dict)
            and isinstance(entry["extensions"].get("code"), str)
        }
        messages = [
            self._redact(str(entry.get("message") if isinstance(entry, dict) else entry)) for entry in entries
        ]
        if "THROTTLED" in codes:
            # Nothing ran. Wait exactly until the bucket holds what the query asked for.
            self.stats.throttled += 1
            needed = requested_cost(cost) or self._bucket.estimate(operation_name)
            wait = self._bucket.delay_for(needed, seen_at)
            raise _Transient("throttled", maybe_executed=False, wait=wait if wait > 0 else None)
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
                            field=[str(part) for part in field_path] if isinstance(field_path, list) and field_path
                            else None,
                            message=self._redact(str(entry.get("message", ""))),
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

    async def _send(self, request: httpx.Request, *, stream: bool = False, follow_redirects: bool = False) -> httpx.Response:
        """Send one request; map httpx failures, 429 and 5xx to `_Transient`. Other statuses return."""
        self.stats.requests += 1
        try:
            response = await self._http.send(request, stream=stream, follow_redirects=follow_redirects)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the server never saw the request.
            raise _Transient(f"connect_error ({type(exc).__name__})", maybe_executed=False) from None
        except httpx.TimeoutException as exc:
            raise _Transient(f"timeout ({type(exc).__name__})", maybe_executed=True) from None
        except httpx.UnsupportedProtocol:
            raise ShopifyResponseError(f"unsupported URL scheme in {request.url.scheme}://{request.url.host}") from None
        except httpx.InvalidURL:
            # httpx reads a redirect's Location even when it does not follow it; a garbled one raises this.
            raise ShopifyResponseError(f"{request.url.host} answered a redirect to an unusable URL") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection_error ({type(exc).__name__})", maybe_executed=True) from None
        except httpx.RequestError as exc:  # too many redirects, undecodable body: retrying will not help
            raise ShopifyResponseError(f"request to {request.url.host} failed: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            wait = _retry_after(response)
            if stream:
                await response.aclose()
            # A 429 is refused before anything runs; a 5xx may come after the work was done.
            raise _Transient(f"http_{status}", maybe_executed=status != 429, wait=wait)
        return response

    async def _with_retries(
        self, label: str, once: Callable[[], Awaitable[T]], *, retry_when_maybe_executed: bool
    ) -> T:
        failure: _Transient | None = None
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await once()
            except _Transient as exc:
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
        return self._redact(str(text or response.reason_phrase))[:300]

    def _redact(self, text: str) -> str:
        # Servers do not normally echo credentials, but a message we quote must never carry one.
        for value in self._tokens.known():
            text = text.replace(value, "[redacted]")
        return text

    # ------------------------------------------------------------------ reads

    async def shop(self) -> ShopInfo:
        data = await self.execute("Shop")
        shop = self._field(data, "shop", "Shop")
        return self._parse("Shop", lambda: ShopInfo(name=shop["name"], domain=shop["myshopifyDomain"]))

    async def iter_products(
        self,
        *,
        updated_since: datetime | None = None,
        search: str | None = None,
        page_size: int = 16,
        media_page_size: int = 10,
        pagination_cap: int = PAGINATION_CAP,
    ) -> AsyncIterator[Product]:
        """Every product matching, oldest update first, each with all its media pages.

        A single query may cost at most 1000 points, and ProductsPage requests about
        2 + page_size * (16 + 4 * media_page_size) (connections cost 2 + first * node cost; the
        first ten collections 12 of the 16): the defaults (16, 10) request about 898. 50 and 50
        would request about 10,800 and be refused with MAX_COST_EXCEEDED. Media beyond the first
        page come from ProductMediaPage calls, collections beyond the first ten from ProductCollectionsPage.

        Shopify pages a connection through at most `pagination_cap` objects: before a page would
        cross it, the rest of the `updated_at` range is paged as a new query (`windows`).
        """
        if not (1 <= page_size <= _MAX_PAGE and 1 <= media_page_size <= _MAX_PAGE):
            raise ValueError(f"page sizes must be between 1 and {_MAX_PAGE}")
        if pagination_cap < page_size:
            raise ValueError("pagination_cap must hold at least one page")
        since = updated_since
        query = products_search_query(since, search)
        after: str | None = None
        read = 0
        while True:
            data = await self.execute(
                "ProductsPage",
                {"first": page_size, "after": after, "query": query, "mediaFirst": media_page_size},
            )
            connection = self._field(data, "products", "ProductsPage")
            nodes = self._parse("ProductsPage", lambda: list(connection["nodes"]))
            last_updated: datetime | None = None
            for node in nodes:
                read += 1
                product = await self._complete_product(node, media_page_size)
                if product is not None:
                    last_updated = product.updated_at
                    yield product
                else:
                    last_updated = self._parse("ProductsPage", lambda: parse_datetime(node["updatedAt"]))
            after = self._next_cursor(connection, after, "ProductsPage")
            if after is None:
                return
            if last_updated is None:
                continue
            try:
                restart = next_window(since=since, read=read, page_size=page_size, cap=pagination_cap,
                                      last_updated=last_updated)
            except CapExceeded as exc:
                raise ShopifyResponseError(f"cannot page past the pagination cap: {exc}",
                                           operation="ProductsPage") from None
            if restart is not None:
                log.info("products_window", since=restart.since.isoformat(), read=read)
                since, after, read = restart.since, None, 0
                query = products_search_query(since, search)

    async def get_product(self, product_id: str, *, media_page_size: int = 50) -> Product | None:
        """The product with all its media, or None when it no longer exists."""
        data = await self.execute("Product", {"id": product_id, "mediaFirst": media_page_size})
        node = data.get("product")
        return None if node is None else await self._complete_product(node, media_page_size)

    async def get_media(self, media_id: str) -> Media | None:
        """The media's current state, or None when it is gone or the id is not a media."""
        data = await self.execute("Media", {"id": media_id})
        return self._parse("Media", lambda: parse_media(data.get("node")))

    async def get_media_many(self, media_ids: Iterable[str]) -> dict[str, Media | None]:
        """Each media's current state by id (None where it is gone), one request per 250 ids."""
        ids = list(dict.fromkeys(media_ids))
        found: dict[str, Media | None] = {}
        for start in range(0, len(ids), _MAX_PAGE):
            chunk = ids[start:start + _MAX_PAGE]
            data = await self.execute("MediaNodes", {"ids": chunk})
            nodes = self._parse("MediaNodes", lambda: list(data["nodes"]))
            if len(nodes) != len(chunk):
                raise ShopifyResponseError("nodes answered another number of entries than ids asked",
                                           operation="MediaNodes")
            for media_id, node in zip(chunk, nodes):
                found[media_id] = self._parse("MediaNodes", lambda: parse_media(node))
        return found

    async def _complete_product(self, node: dict[str, Any], media_page_size: int) -> Product | None:
        """Parse a ProductFields node, fetching the media pages beyond the first; None if deleted meanwhile."""
        extra: list[dict[str, Any]] = []
        product_id, media = self._parse("Product", lambda: (node["id"], node["media"]))
        cursor = self._next_cursor(media, None, "Product")
        while cursor is not None:
            data = await self.execute("ProductMediaPage", {"id": product_id, "first": media_page_size, "after": cursor})
            product: Any = data.get("product")  # Any: the lambdas below read it after the None check
            if product is None:
                log.info("product_gone", product_id=product_id)
                return None
            page = self._parse("ProductMediaPage", lambda: product["media"])
            extra.extend(self._parse("ProductMediaPage", lambda: list(page["nodes"])))
            cursor = self._next_cursor(page, cursor, "ProductMediaPage")
        collections: Any = node.get("collections")  # read past the isinstance check below, in lambdas
        cursor = self._next_cursor(collections, None, "Product") if isinstance(collections, dict) else None
        while cursor is not None:  # only a product in more collections than the first page holds
            data = await self.execute("ProductCollectionsPage", {"id": product_id, "after": cursor})
            product = data.get("product")
            if product is None:
                log.info("product_gone", product_id=product_id)
                return None
            page = self._parse("ProductCollectionsPage", lambda: product["collections"])
            more = self._parse("ProductCollectionsPage", lambda: list(page["nodes"]))
            node = {**node, "collections": {**collections, "nodes": [*collections["nodes"], *more]}}
            collections = node["collections"]
            cursor = self._next_cursor(page, cursor, "ProductCollectionsPage")
        return self._parse("Product", lambda: parse_product(node, extra))

    @staticmethod
    def _next_cursor(connection: Mapping[str, Any], previous: str | None, operation_name: str) -> str | None:
        try:
            info = connection["pageInfo"]
            if not info["hasNextPage"]:
                return None
            cursor = info["endCursor"]
        except (KeyError, TypeError):
            raise ShopifyResponseError("connection without pageInfo", operation=operation_name) from None
        if not isinstance(cursor, str) or cursor == previous:
            # Following it would loop forever.
            raise ShopifyResponseError("hasNextPage without a new endCursor", operation=operation_name)
        return cursor

    @staticmethod
    def _field(data: Mapping[str, Any], name: str, operation_name: str) -> Any:
        value = data.get(name)
        if value is None:
            raise ShopifyResponseError(f"response has no {name}", operation=operation_name)
        return value

    @staticmethod
    def _parse(operation_name: str, build: Callable[[], T]) -> T:
        try:
            return build()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ShopifyResponseError(
                f"unexpected response shape ({type(exc).__name__}: {exc})", operation=operation_name
            ) from None

    # ------------------------------------------------------------------ writes

    async def staged_upload(self, filename: str, mime_type: str, data: bytes, *, http_method: str = "POST") -> str:
        """Upload bytes to a staged target; returns the `resourceUrl` to use as `originalSource`.

        POST (default): multipart form with the target's parameters, then `file`.
        PUT: the raw bytes as the body, the target's parameters as headers.
        """
        (resource_url,) = await self.staged_uploads([(filename, mime_type, data)], http_method=http_method)
        return resource_url

    async def staged_uploads(self, files: Sequence[tuple[str, str, bytes]], *, http_method: str = "POST") -> list[str]:
        """Upload several files, each `(filename, mime_type, data)`: one stagedUploadsCreate for up
        to 250 of them (a mutation costs the same for one input as for 250), then one upload each.
        Returns their `resourceUrl`s in order. A user error on any input refuses the whole call."""
        if http_method not in ("POST", "PUT"):
            raise ValueError("http_method must be POST or PUT")
        resource_urls: list[str] = []
        for start in range(0, len(files), _MAX_PAGE):
            chunk = files[start:start + _MAX_PAGE]
            targets = await self._staged_targets(chunk, http_method)
            for (filename, mime_type, data), (url, resource_url, parameters) in zip(chunk, targets, strict=True):
                await self._upload_to_target(url, parameters, filename, mime_type, data, http_method)
                resource_urls.append(resource_url)
        return resource_urls

    async def _staged_targets(self, files: Sequence[tuple[str, str, bytes]],
                              http_method: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """`(url, resourceUrl, parameters)` of one staged target per file, in order."""
        result = await self.execute(
            "StagedUploadsCreate",
            {
                "input": [
                    {
                        "resource": "IMAGE",
                        "filename": filename,
                        "mimeType": mime_type,
                        "httpMethod": http_method,
                        "fileSize": str(len(data)),
                    }
                    for filename, mime_type, data in files
                ]
            },
        )

        def target_fields() -> list[tuple[str, str, list[tuple[str, str]]]]:
            targets = result["stagedUploadsCreate"]["stagedTargets"]
            return [(target["url"], target["resourceUrl"], [(p["name"], p["value"]) for p in target["parameters"]])
                    for target in targets]

        targets = self._parse("StagedUploadsCreate", target_fields)
        if len(targets) != len(files):
            raise ShopifyResponseError(f"{len(targets)} staged targets for {len(files)} files",
                                       operation="StagedUploadsCreate")
        for url, resource_url, parameters in targets:
            if not (isinstance(url, str) and isinstance(resource_url, str)
                    and all(isinstance(name, str) and isinstance(value, str) for name, value in parameters)):
                raise ShopifyResponseError("staged target fields are not strings", operation="StagedUploadsCreate")
            if not url or not resource_url:
                raise ShopifyResponseError("staged target without url/resourceUrl", operation="StagedUploadsCreate")
        return targets

    async def _upload_to_target(self, url: str, parameters: list[tuple[str, str]], filename: str, mime_type: str,
                                data: bytes, http_method: str) -> None:
        def build() -> httpx.Request:
            if http_method == "PUT":
                return self._http.build_request("PUT", url, content=data, headers=dict(parameters))
            request = self._http.build_request(
                "POST", url, data=dict(parameters), files={"file": (filename, data, mime_type)}
            )
            # httpx streams a multipart form in four pieces per field, and each piece costs a trip
            # through the connection's send path (~40 µs of CPU): ten fields made 41 writes per
            # upload. Read into one body, it goes out in one write.
            request.read()
            return request

        async def once() -> None:
            response = await self._send(build())
            if not response.is_success:
                raise ShopifyResponseError(
                    f"staged upload refused: HTTP {response.status_code}",
                    operation="staged_upload",
                    status=response.status_code,
                )

        # Uploading the same bytes to the same signed key twice leaves the same object: retry freely.
        await self._with_retries("staged_upload", once, retry_when_maybe_executed=True)

    async def replace_media_source(self, media_id: str, original_source: str, alt: str | None = None) -> None:
        """Replace a READY MediaImage's bytes in place (fileUpdate); the media id, position and links stay.

        `alt=None` keeps the current alt text. The media goes through processing again: poll
        `get_media` until READY. The new source's extension must match the original's.
        """
        file: dict[str, Any] = {"id": media_id, "originalSource": original_source}
        if alt is not None:
            file["alt"] = alt_for_shopify(alt)
        await self.execute("FileUpdate", {"files": [file]})

    async def replace_media_sources(self, sources: Sequence[tuple[str, str]]) -> list[FileRow]:
        """`replace_media_source` for several `(media_id, original_source)` pairs: one fileUpdate per
        250. Shopify applies the valid rows and names each bad one (file_update.py): this answers
        what became of each pair, in order, instead of raising for the whole call."""
        rows: list[FileRow] = []
        for start in range(0, len(sources), _MAX_PAGE):
            chunk = sources[start:start + _MAX_PAGE]
            data = await self.execute("FileUpdate", {"files": [{"id": media_id, "originalSource": source}
                                                               for media_id, source in chunk]},
                                      raise_user_errors=False)
            payload = data.get("fileUpdate")
            if not isinstance(payload, dict):
                raise ShopifyResponseError("no fileUpdate payload", operation="FileUpdate")
            rows += file_rows([media_id for media_id, _ in chunk], payload.get("files"),
                              self.user_errors("FileUpdate", data))
        return rows

    async def add_media(self, product_id: str, original_source: str, alt: str | None) -> str:
        """Append an image to the product (productUpdate with media); returns the new media's id.

        productUpdate's payload has no list of created media, so the new id is found by difference:
        the media ids in the response's `product.media` minus those of a fresh read taken just
        before. Assumption: nobody else adds media to this product in between. Should several new
        ids appear anyway, the last one with our alt text is taken (new media are appended in order),
        and a warning is logged.

        After a timeout or 5xx this raises `ShopifyUnavailable(ambiguous=True)`: the image may have
        been added; read the product back before trying again.
        """
        before = await self.get_product(product_id)
        before_ids = {media.id for media in before.media} if before else set()
        # Enough room for every existing media plus ours (and a few concurrent ones); at most 250.
        media_first = min(_MAX_PAGE, len(before_ids) + 10)
        data = await self.execute(
            "ProductAddMedia",
            {
                "product": {"id": product_id},
                "media": [{"originalSource": original_source, "alt": alt_for_shopify(alt), "mediaContentType": "IMAGE"}],
                "mediaFirst": media_first,
            },
        )

        def new_nodes() -> list[dict[str, Any]]:
            nodes = data["productUpdate"]["product"]["media"]["nodes"]
            return [node for node in nodes if node["id"] not in before_ids]

        created = self._parse("ProductAddMedia", new_nodes)
        if not created:
            raise ShopifyResponseError("no new media in the productUpdate response", operation="ProductAddMedia")
        if len(created) > 1:
            log.warning("add_media_ambiguous", product_id=product_id, new_media=len(created))
            same_alt = [node for node in created if node.get("alt") == alt_for_shopify(alt)]
            created = same_alt or created
        return str(created[-1]["id"])

    async def move_media(self, product_id: str, media_id: str, new_position: int, *, timeout: float = 30) -> None:
        """Move one media to `new_position` (zero-based) and wait until Shopify's job is done."""
        data = await self.execute(
            "ProductReorderMedia",
            {"id": product_id, "moves": [{"id": media_id, "newPosition": str(new_position)}]},
        )
        job = self._parse("ProductReorderMedia", lambda: data["productReorderMedia"]["job"])
        if not job:
            return
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise ShopifyResponseError("reorder job without an id", operation="ProductReorderMedia")
        if job.get("done"):
            return
        deadline = self._clock() + timeout
        delay = 0.1
        while True:
            await self._sleep(delay)
            delay = min(delay * 2, 1.0)
            polled = (await self.execute("Job", {"id": job["id"]})).get("job")
            # A job Shopify no longer knows has finished long ago (jobs expire after completion).
            if polled is not None and not isinstance(polled, dict):
                raise ShopifyResponseError("job is not an object", operation="Job")
            if polled is None or polled.get("done"):
                return
            if self._clock() >= deadline:
                raise ShopifyUnavailable(
                    f"reorder job {job['id']} not done after {timeout:g}s", operation="ProductReorderMedia"
                )

    async def set_marker(self, product_id: str, media_ids: Iterable[str], compare_digest: str | None) -> str:
        """Write the retouch marker (the product's media ids that are our output); returns the new digest.

        Optimistic locking: `compare_digest` is the marker's digest as last read
        (`Product.marker_digest`); None means "the marker must not exist yet". If someone changed it
        since (or a timed-out attempt of this very call did go through), Shopify refuses with
        STALE_OBJECT → ShopifyUserError: read the product again, merge, call again.
        """
        data = await self.execute(
            "MetafieldsSet",
            {
                "metafields": [
                    {
                        "ownerId": product_id,
                        "namespace": MARKER_NAMESPACE,
                        "key": MARKER_KEY,
                        "type": MARKER_TYPE,
                        "value": marker_value(media_ids),
                        "compareDigest": compare_digest,
                    }
                ]
            },
        )
        return str(self._parse("MetafieldsSet", lambda: data["metafieldsSet"]["metafields"][0]["compareDigest"]))

    async def delete_media(self, media_ids: list[str]) -> None:
        """Delete media (fileDelete). Ids that no longer exist come back as a ShopifyUserError."""
        if not media_ids:
            return
        await self.execute("FileDelete", {"fileIds": list(media_ids)})

    # ------------------------------------------------------------------ webhook subscriptions

    async def webhook_subscriptions(self, topics: Iterable[str]) -> list[WebhookSubscription]:
        """The app's subscriptions to `topics` (every page)."""
        found: list[WebhookSubscription] = []
        after: str | None = None
        while True:
            data = await self.execute("WebhookSubscriptions", {"topics": list(topics), "first": _MAX_PAGE,
                                                               "after": after})
            connection = self._field(data, "webhookSubscriptions", "WebhookSubscriptions")
            found += self._parse("WebhookSubscriptions", lambda: [
                WebhookSubscription(id=str(n["id"]), topic=str(n["topic"]), uri=str(n["uri"]))
                for n in connection["nodes"]])
            after = self._next_cursor(connection, after, "WebhookSubscriptions")
            if after is None:
                return found

    async def create_webhook_subscription(self, topic: str, uri: str) -> str:
        """Subscribe `uri` to `topic`; returns the subscription's gid."""
        data = await self.execute("WebhookSubscriptionCreate", {"topic": topic, "uri": uri})
        return str(self._parse("WebhookSubscriptionCreate",
                               lambda: data["webhookSubscriptionCreate"]["webhookSubscription"]["id"]))

    async def delete_webhook_subscription(self, subscription_id: str) -> None:
        await self.execute("WebhookSubscriptionDelete", {"id": subscription_id})

    # ------------------------------------------------------------------ bulk operations

    async def products_count(self, *, limit: int | None = None) -> tuple[int, bool]:
        """How many products the store has: (count, exact). Shopify counts up to `limit` (None is
        sent as null: no limit) and answers precision AT_LEAST (exact=False) above it."""
        data = await self.execute("ProductsCount", {"query": None, "limit": limit})
        found = self._field(data, "productsCount", "ProductsCount")
        return self._parse("ProductsCount", lambda: (int(found["count"]), found["precision"] == "EXACT"))

    async def start_bulk_products(self) -> BulkOperation:
        """Start the bulk export of every product with its media (`bulk_products_query`).

        Raises ShopifyUserError with code OPERATION_IN_PROGRESS when the app already runs as many
        bulk queries as Shopify allows at once (five since 2026-01). Not retried after a timeout
        (ShopifyUnavailable(ambiguous=True)): an operation may have started anyway."""
        data = await self.execute("BulkProductsRun", {"query": bulk_products_query()})
        node = self._parse("BulkProductsRun", lambda: data["bulkOperationRunQuery"]["bulkOperation"])
        if not isinstance(node, dict):
            raise ShopifyResponseError("no bulkOperation and no userErrors", operation="BulkProductsRun")
        return self._parse("BulkProductsRun", lambda: parse_bulk_operation(node))

    async def bulk_operation(self, operation_id: str) -> BulkOperation | None:
        """The operation's current state; None when Shopify does not know the id."""
        data = await self.execute("BulkOperation", {"id": operation_id})
        node = data.get("bulkOperation")
        return None if node is None else self._parse("BulkOperation", lambda: parse_bulk_operation(node))

    async def cancel_bulk_operation(self, operation_id: str) -> BulkOperation | None:
        """Ask Shopify to stop the operation (it moves to CANCELING). An operation that already
        finished comes back as ShopifyUserError (nothing to cancel)."""
        data = await self.execute("BulkOperationCancel", {"id": operation_id})
        node = self._parse("BulkOperationCancel", lambda: data["bulkOperationCancel"]["bulkOperation"])
        return None if node is None else self._parse("BulkOperationCancel", lambda: parse_bulk_operation(node))

    async def iter_jsonl(self, url: str, *, max_line: int = 16 * 2**20) -> AsyncIterator[dict[str, Any]]:
        """Stream a bulk result (JSON Lines) object by object, without the Shopify token, holding one
        line in memory at a time.

        A download that ends early raises ShopifyResponseError (operation "bulk_download"): the
        connection dropped (HTTP's own framing: Content-Length or the chunked terminator), or a last
        line that is not complete JSON. Objects yielded before that are good; the caller decides whether to start
        over. A refused URL (expired signature: 403/404/410) raises it with `status` set."""
        host = urlsplit(url).hostname or "?"

        def cut(reason: str, status: int | None = None) -> ShopifyResponseError:
            return ShopifyResponseError(f"bulk result from {host} {reason}", operation="bulk_download", status=status)

        try:
            request = self._http.build_request("GET", url)
        except httpx.InvalidURL:
            request = None
        if request is None or request.url.scheme not in ("http", "https"):
            raise cut("is not an http(s) URL")
        response = await self._with_retries(
            "bulk_download", lambda: self._send(request, stream=True, follow_redirects=True),
            retry_when_maybe_executed=True)
        try:
            if not response.is_success:
                raise cut(f"refused: HTTP {response.status_code}", response.status_code)
            received = 0
            pending = b""
            try:
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    if len(pending) > max_line:
                        raise cut(f"has a line longer than {max_line} bytes")
                    for line in lines:
                        if line.strip():
                            yield self._jsonl_object(line, cut)
            except httpx.TransportError as exc:
                raise cut(f"was cut off after {received} bytes ({type(exc).__name__})") from None
            if pending.strip():
                yield self._jsonl_object(pending, cut)
        finally:
            await response.aclose()

    @staticmethod
    def _jsonl_object(line: bytes, cut: Callable[[str], ShopifyResponseError]) -> dict[str, Any]:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            raise cut("was cut off (a line is not complete JSON)") from None
        if not isinstance(value, dict):
            raise cut("has a line that is not a JSON object")
        return value

    async def download(self, url: str, *, max_bytes: int = 50 * 2**20) -> tuple[bytes, str]:
        """GET a CDN or result URL (without the Shopify token); returns (bytes, media type).

        The media type is the Content-Type without parameters ("image/jpeg"); redirects are followed.

        Retries 429/5xx, timeouts and connection errors; other non-2xx statuses and bodies over
        `max_bytes` raise ShopifyResponseError.
        """
        host = urlsplit(url).hostname or "?"

        try:
            request = self._http.build_request("GET", url)
        except httpx.InvalidURL:
            request = None
        if request is None or request.url.scheme not in ("http", "https"):
            raise ShopifyResponseError(f"not an http(s) download URL (host {host})", operation="download")

        async def once() -> tuple[bytes, str]:
            response = await self._send(request, stream=True, follow_redirects=True)
            try:
                if not response.is_success:
                    raise ShopifyResponseError(
                        f"download from {host} failed: HTTP {response.status_code}",
                        operation="download",
                        status=response.status_code,
                    )
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ShopifyResponseError(f"download from {host} exceeds {max_bytes} bytes", operation="download")
                chunks: list[bytes] = []
                size = 0
                try:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise ShopifyResponseError(
                                f"download from {host} exceeds {max_bytes} bytes", operation="download"
                            )
                        chunks.append(chunk)
                except httpx.TimeoutException as exc:
                    raise _Transient(f"timeout ({type(exc).__name__})", maybe_executed=True) from None
                except httpx.TransportError as exc:
                    raise _Transient(f"connection_error ({type(exc).__name__})", maybe_executed=True) from None
                except httpx.RequestError as exc:
                    raise ShopifyResponseError(
                        f"download from {host} failed: {type(exc).__name__}", operation="download"
                    ) from None
                content_type = response.headers.get("Content-Type", "application/octet-stream")
                return b"".join(chunks), content_type.split(";", 1)[0].strip()
            finally:
                await response.aclose()

        return await self._with_retries("download", once, retry_when_maybe_executed=True)


__all__ = [
    "DEFAULT_API_VERSION",
    "IDEMPOTENT_MUTATIONS",
    "ClientStats",
    "ShopifyClient",
    "ShopifyError",
    "admin_api_url",
    "products_search_query",
]
