"""Relay connections the way Shopify pages them: opaque base64 cursors holding the sort position.

A cursor is base64 of `{"last_id": <numeric id>, "last_value": "<sort value>"}` — the same shape
as Shopify's (e.g. `{"last_id":9899728634162,"last_value":"2026-06-24 14:40:33.000000"}` for
UPDATED_AT, `{"last_id":44071803355442,"last_value":"1"}` for media by POSITION). Paging is by
key, not by offset: a page continues after the cursor's (value, id) even if items were added or
removed in between. `hasPreviousPage`/`hasNextPage` say whether items exist before/after the page
in the full ordering (Shopify reports both).

Shopify caps pagination at 25,000 objects (https://shopify.dev/docs/api/usage/limits, "Pagination
limits": "Shopify limits pagination of arrays of objects to 25,000 objects"). What a connection
answers past it is documented only for the Storefront API ("queries will now return an error when
paginating past the 25,000th item in the array", shopify.dev/changelog/new-pagination-limits-for-
liquid-storefront-graphql-api, 2025-06-17); no capture shows it. Assumed here, for every
connection: a page that would reach past the `cap`-th item of the ordering, counted from the end
it is paged from (the start for `first`, the end for `last` alone), is an error (`PaginationLimit`)
and returns nothing; pages wholly within the cap are answered as usual (`hasNextPage` stays true
at the cap when more items follow).

`paginate` orders a plain sequence per call (small connections: a product's media); `paginate_sorted`
pages an already sorted `SortedIndex` (the catalog's products), touching only the items it returns
plus those it must skip because the query's filter rejects them.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PAGINATION_CAP = 25_000


class InvalidCursor(ValueError):
    pass


class PaginationLimit(ValueError):
    """A page would reach past the pagination cap."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"pagination is capped at {cap} objects")
        self.cap = cap


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
    offset: int | None = None  # how many items of the ordering come before the page (when counted)

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
    cap: int | None = None,
) -> Page[T]:
    """One page of `items` ordered by `sort` (descending when `reverse`). Raises InvalidCursor, and
    PaginationLimit when the page would reach past the `cap`-th item (None: no cap)."""
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
    depth = len(ordered) - start if last is not None and first is None else end
    if cap is not None and depth > cap:
        raise PaginationLimit(cap)
    window = ordered[start:end]
    return Page(
        items=window,
        cursors=[sort.cursor(item) for item in window],
        has_previous=start > 0,
        has_next=end < len(ordered),
        offset=start,
    )


class SortedIndex(Generic[T]):
    """Items kept in `key` order (parallel lists of keys and items, for `bisect`). Keys must be
    unique — (sort value, id) tuples are. Adding or removing an item costs O(log n) comparisons
    plus a list shift (a memmove of pointers: microseconds at 100,000 items)."""

    def __init__(self, key: Callable[[T], tuple[Any, ...]], items: Iterable[T] = ()) -> None:
        self.key = key
        pairs = sorted(((key(item), item) for item in items), key=lambda pair: pair[0])
        self.keys: list[tuple[Any, ...]] = [k for k, _ in pairs]
        self.items: list[T] = [item for _, item in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: T) -> None:
        key = self.key(item)
        at = bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.items.insert(at, item)

    def discard(self, item: T, key: tuple[Any, ...] | None = None) -> bool:
        """Remove `item`, found by `key` (its key when it was added; default: its key now)."""
        key = self.key(item) if key is None else key
        at = bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key and self.items[at] is item:
            del self.keys[at]
            del self.items[at]
            return True
        return False

    def span(self, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None) -> tuple[int, int]:
        """The index range of keys k with low <= k < high (None: unbounded)."""
        lo = 0 if low is None else bisect_left(self.keys, low)
        hi = len(self.keys) if high is None else bisect_left(self.keys, high)
        return lo, max(lo, hi)


def paginate_sorted(
    index: SortedIndex[T],
    sort: SortSpec[T],
    *,
    span: tuple[int, int] | None = None,
    matches: Callable[[T], bool] | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    cap: int | None = None,
    known_offset: int | None = None,
) -> Page[T]:
    """`paginate` over an index already in `sort.key` order, the same answer without sorting:
    only items in `span` (an index range, e.g. from a time filter on the sort field) that
    `matches` accepts (None: all) are in the ordering. Cost: the page, the items `matches` rejects
    on the way, and (with `matches` and a cap) counting the matches before the page unless
    `known_offset` says how many there are before `after`'s position (a cache of earlier pages)."""
    keys, items = index.keys, index.items
    lo, hi = span if span is not None else (0, len(items))
    size = hi - lo

    def at(position: int) -> T:  # the item at a position of the ordering (within the span)
        return items[hi - 1 - position] if reverse else items[lo + position]

    def accepted(position: int) -> bool:
        return matches is None or matches(at(position))

    def any_between(begin: int, end: int) -> bool:
        if matches is None:
            return begin < end
        return any(accepted(p) for p in range(begin, end))

    def count_between(begin: int, end: int) -> int:
        if matches is None:
            return max(0, end - begin)
        return sum(1 for p in range(begin, end) if accepted(p))

    start, end = 0, size  # positions in the ordering, before filtering
    if after is not None:
        mark = sort.cursor_key(after)
        start = hi - bisect_left(keys, mark, lo, hi) if reverse else bisect_right(keys, mark, lo, hi) - lo
    if before is not None:
        mark = sort.cursor_key(before)
        stop = hi - bisect_right(keys, mark, lo, hi) if reverse else bisect_left(keys, mark, lo, hi) - lo
        end = max(stop, start)
    window: list[int] | None = None
    if first is not None:
        window, position = [], start
        while position < end and len(window) < first:
            if accepted(position):
                window.append(position)
            position += 1
        if len(window) == first:
            end = position
    if last is not None:
        if window is None:
            window, position = [], end - 1
            while position >= start and len(window) < last:
                if accepted(position):
                    window.append(position)
                position -= 1
            window.reverse()
        else:
            window = window[max(0, len(window) - last) :]
    if window is None:
        window = [p for p in range(start, end) if accepted(p)]
    begin = window[0] if window else start
    offset: int | None = None
    if matches is None:
        offset = begin
    elif cap is not None and known_offset is not None and after is not None and last is None:
        offset = known_offset  # nothing matches between the cursor and the page's first item
    if cap is not None:
        if last is not None and first is None:
            depth = count_between(end, size) + len(window)
        else:
            if offset is None:
                offset = count_between(0, begin)
            depth = offset + len(window)
        if depth > cap:
            raise PaginationLimit(cap)
    chosen = [at(p) for p in window]
    return Page(
        items=chosen,
        cursors=[sort.cursor(item) for item in chosen],
        has_previous=offset > 0 if offset is not None else any_between(0, begin),
        has_next=any_between(end, size),
        offset=offset,
    )
