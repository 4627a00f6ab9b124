"""Bulk operations over the GraphQL transport: count, start, watch and cancel the product export,
and stream its JSON Lines result (without the Shopify token)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx

from .errors import ShopifyResponseError
from .models import BulkOperation, parse_bulk_operation
from .operations import bulk_products_query
from .reading import parsed, required_field
from .transport import GraphQLTransport


async def products_count(gql: GraphQLTransport, *, limit: int | None = None) -> tuple[int, bool]:
    """How many products the store has: (count, exact). Shopify counts up to `limit` (None is
    sent as null: no limit) and answers precision AT_LEAST (exact=False) above it."""
    data = await gql.execute("ProductsCount", {"query": None, "limit": limit})
    found = required_field(data, "productsCount", "ProductsCount")
    return parsed("ProductsCount", lambda: (int(found["count"]), found["precision"] == "EXACT"))


async def start_bulk_products(gql: GraphQLTransport) -> BulkOperation:
    """Start the bulk export of every product with its media (`bulk_products_query`).

    Raises ShopifyUserError with code OPERATION_IN_PROGRESS when the app already runs as many
    bulk queries as Shopify allows at once (five since 2026-01). Not retried after a timeout
    (ShopifyUnavailable(ambiguous=True)): an operation may have started anyway."""
    data = await gql.execute("BulkProductsRun", {"query": bulk_products_query()})
    node = parsed("BulkProductsRun", lambda: data["bulkOperationRunQuery"]["bulkOperation"])
    if not isinstance(node, dict):
        raise ShopifyResponseError("no bulkOperation and no userErrors", operation="BulkProductsRun")
    return parsed("BulkProductsRun", lambda: parse_bulk_operation(node))


async def bulk_operation(gql: GraphQLTransport, operation_id: str) -> BulkOperation | None:
    """The operation's current state; None when Shopify does not know the id."""
    data = await gql.execute("BulkOperation", {"id": operation_id})
    node = data.get("bulkOperation")
    return None if node is None else parsed("BulkOperation", lambda: parse_bulk_operation(node))


async def cancel_bulk_operation(gql: GraphQLTransport, operation_id: str) -> BulkOperation | None:
    """Ask Shopify to stop the operation (it moves to CANCELING). An operation that already
    finished comes back as ShopifyUserError (nothing to cancel)."""
    data = await gql.execute("BulkOperationCancel", {"id": operation_id})
    node = parsed("BulkOperationCancel", lambda: data["bulkOperationCancel"]["bulkOperation"])
    return None if node is None else parsed("BulkOperationCancel", lambda: parse_bulk_operation(node))


async def iter_jsonl(gql: GraphQLTransport, url: str, *, max_line: int = 16 * 2**20) -> AsyncIterator[dict[str, Any]]:
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
        request = gql.build_request("GET", url)
    except httpx.InvalidURL:
        request = None
    if request is None or request.url.scheme not in ("http", "https"):
        raise cut("is not an http(s) URL")
    response = await gql.with_retries(
        "bulk_download", lambda: gql.send(request, stream=True, follow_redirects=True), retry_when_maybe_executed=True
    )
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
                        yield _jsonl_object(line, cut)
        except httpx.TransportError as exc:
            raise cut(f"was cut off after {received} bytes ({type(exc).__name__})") from None
        if pending.strip():
            yield _jsonl_object(pending, cut)
    finally:
        await response.aclose()


def _jsonl_object(line: bytes, cut: Callable[[str], ShopifyResponseError]) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        raise cut("was cut off (a line is not complete JSON)") from None
    if not isinstance(value, dict):
        raise cut("has a line that is not a JSON object")
    return value
