"""The catalog's products in each of Shopify's product sort orders, kept sorted as they change.

`products(sortKey:)` used to sort every product on every page; at 100,000 products that made a
full paged discovery quadratic. `ProductOrders` builds a `SortedIndex` per sort key the first time
a connection asks for it and then keeps it up to date: the store tells it when a product is added
or removed, and wraps every change of a sort field (`updatedAt` by `touch`, the title) in
`changing(product)`. A change made to a product behind the store's back would leave an index stale,
so `Product` fields that sort are only ever written through the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .model import Product, iso
from .paging import SortedIndex, SortSpec


def db_time(ts: float) -> str:
    """Time as Shopify writes it in cursors: "2026-06-24 14:40:33.000000"."""
    return iso(ts).replace("T", " ").replace("Z", ".000000")


def parse_db_time(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp())


_SORTS: dict[str, SortSpec[Product]] = {
    "UPDATED_AT": SortSpec(lambda p: p.id, lambda p: int(p.updated_at), lambda p: db_time(p.updated_at), parse_db_time),
    "CREATED_AT": SortSpec(lambda p: p.id, lambda p: int(p.created_at), lambda p: db_time(p.created_at), parse_db_time),
    "TITLE": SortSpec(lambda p: p.id, lambda p: p.title.lower(), lambda p: p.title.lower(), str),
    "ID": SortSpec(lambda p: p.id, lambda p: p.id, lambda p: str(p.id), int),
}

# The time field a sort key orders by (its `query` filters can be bisected to).
TIME_FIELDS = {"UPDATED_AT": "updated_at", "CREATED_AT": "created_at"}


def product_sort(sort_key: str) -> SortSpec[Product]:
    """The order of `products(sortKey:)`; unknown keys (RELEVANCE, ...) order by id."""
    return _SORTS.get(sort_key, _SORTS["ID"])


class ProductOrders:
    """Sorted indexes of the products, one per sort key asked for (built lazily)."""

    def __init__(self, products: Callable[[], Iterable[Product]]) -> None:
        self._products = products
        self._indexes: dict[str, SortedIndex[Product]] = {}

    def index(self, sort_key: str) -> SortedIndex[Product]:
        name = sort_key if sort_key in _SORTS else "ID"
        index = self._indexes.get(name)
        if index is None:
            index = self._indexes[name] = SortedIndex(_SORTS[name].key, self._products())
        return index

    def added(self, product: Product) -> None:
        for index in self._indexes.values():
            index.add(product)

    def removed(self, product: Product) -> None:
        for name, index in list(self._indexes.items()):
            if not index.discard(product):
                del self._indexes[name]  # out of step somehow: rebuilt when next asked for

    @contextmanager
    def changing(self, product: Product) -> Iterator[None]:
        """Wrap a change of a product's sort fields; it is moved in every index whose key changed."""
        before = [(name, index, index.key(product)) for name, index in self._indexes.items()]
        yield
        for name, index, old in before:
            if index.key(product) != old:
                if index.discard(product, old):
                    index.add(product)
                else:
                    self._indexes.pop(name, None)


class OffsetCache:
    """How many products a filtered ordering has up to a cursor, remembered from the page that
    handed the cursor out: counting them again would test every product before it against the
    filter on every page. Entries are (query, sort key, reverse, cursor) -> count; a few hundred
    recent ones are kept. Counts can drift by the products changed since — it only feeds the
    pagination cap."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], int] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> int | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: tuple[Any, ...], value: int) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
