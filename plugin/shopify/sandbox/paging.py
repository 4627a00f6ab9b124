"""Relay connections the way Shopify pages them: opaque base64 cursors holding the sort position.

A cursor is base64 of `{"last_id": <numeric id>, "last_value": "<sort value>"}` — the same shape
as Shopify's (e.g. `{"last_id":9899728634162,"last_value":"2026-06-24 14:40:33.000000"}` for
UPDATED_AT, `{"last_id":44071803355442,"last_value":"1"}` for media by POSITION). Paging is by
key, not by offset: a page continues after the cursor's (value, id) even if items were added or
removed in between. `hasPreviousPage`/`hasNextPage` say whether items exist before/after the page
in the full ordering (Shopify reports both).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class InvalidCursor(ValueError):
    pass


def encode_cursor(last_id: int, last_value: str) -> str:
    payload = json.dumps({"last_id": last_id, "last_value": last_value}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        payload = json.loads(base64.b64decode(cursor.encode(), validate=True))
        return int(payload["last_id"]), str(payload["last_value"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None


@dataclass(frozen=True)
class SortSpec(Generic[T]):
    """How a connection is ordered: `key` orders items (ties broken by id); `cursor_value` is the
    value stored in cursors and `parse_value` turns it back into a key component."""

    id_of: Callable[[T], int]
    value_of: Callable[[T], Any]
    cursor_value: Callable[[T], str]
    parse_value: Callable[[str], Any]

    def key(self, item: T) -> tuple[Any, int]:
        return self.value_of(item), self.id_of(item)

    def cursor(self, item: T) -> str:
        return encode_cursor(self.id_of(item), self.cursor_value(item))

    def cursor_key(self, cursor: str) -> tuple[Any, int]:
        last_id, last_value = decode_cursor(cursor)
        try:
            return self.parse_value(last_value), last_id
        except (ValueError, TypeError):
            raise InvalidCursor(cursor) from None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_previous: bool
    has_next: bool

    def as_connection(self, to_node: Callable[[T], Any] = lambda item: item) -> dict[str, Any]:
        nodes = [to_node(item) for item in self.items]
        return {
            "nodes": nodes,
            "edges": [{"cursor": c, "node": n} for c, n in zip(self.cursors, nodes, strict=True)],
            "pageInfo": {
                "hasNextPage": self.has_next,
                "hasPreviousPage": self.has_previous,
                "startCursor": self.cursors[0] if self.cursors else None,
                "endCursor": self.cursors[-1] if self.cursors else None,
            },
        }


def paginate(
    items: Sequence[T],
    sort: SortSpec[T],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
) -> Page[T]:
    """One page of `items` ordered by `sort` (descending when `reverse`). Raises InvalidCursor."""
    ordered = sorted(items, key=sort.key, reverse=reverse)
    keys = [sort.key(item) for item in ordered]

    def beyond(key: tuple[Any, int], mark: tuple[Any, int]) -> bool:
        return key < mark if reverse else key > mark

    start, end = 0, len(ordered)
    if after is not None:
        mark = sort.cursor_key(after)
        start = next((i for i, k in enumerate(keys) if beyond(k, mark)), len(ordered))
    if before is not None:
        mark = sort.cursor_key(before)
        end = next((i for i, k in enumerate(keys) if k == mark or beyond(k, mark)), len(ordered))
        end = max(end, start)
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    window = ordered[start:end]
    return Page(
        items=window,
        cursors=[sort.cursor(item) for item in window],
        has_previous=start > 0,
        has_next=end < len(ordered),
    )
