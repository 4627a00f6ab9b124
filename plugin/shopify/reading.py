"""Reading Shopify's answers: the pure helpers every operation module shares.

A field that is missing or of the wrong type is a `ShopifyResponseError` naming the operation, never
a KeyError or TypeError escaping into the pipeline.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from .errors import ShopifyResponseError

T = TypeVar("T")

# Shopify caps a product at 250 media and a connection page at 250 nodes.
MAX_PAGE = 250


def next_cursor(connection: Mapping[str, Any], previous: str | None, operation_name: str) -> str | None:
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


def required_field(data: Mapping[str, Any], name: str, operation_name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise ShopifyResponseError(f"response has no {name}", operation=operation_name)
    return value


def parsed(operation_name: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ShopifyResponseError(
            f"unexpected response shape ({type(exc).__name__}: {exc})", operation=operation_name
        ) from None
