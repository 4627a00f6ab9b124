"""Catalog reads over the GraphQL transport: the shop, products with all their media, media by id."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable

import structlog

from .errors import ShopifyResponseError
from .models import Media, Product, ShopInfo, parse_datetime, parse_media, parse_product
from .reading import MAX_PAGE as _MAX_PAGE
from .reading import next_cursor, parsed, required_field
from .transport import GraphQLTransport
from .windows import PAGINATION_CAP, CapExceeded, next_window

log = structlog.get_logger("retouch.plugin.shopify.client")


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


async def shop(gql: GraphQLTransport) -> ShopInfo:
    data = await gql.execute("Shop")
    shop = required_field(data, "shop", "Shop")
    return parsed("Shop", lambda: ShopInfo(name=shop["name"], domain=shop["myshopifyDomain"]))


async def iter_products(
    gql: GraphQLTransport,
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
        data = await gql.execute(
            "ProductsPage",
            {"first": page_size, "after": after, "query": query, "mediaFirst": media_page_size},
        )
        connection = required_field(data, "products", "ProductsPage")
        nodes = parsed("ProductsPage", lambda: list(connection["nodes"]))
        last_updated: datetime | None = None
        for node in nodes:
            read += 1
            product = await complete_product(gql, node, media_page_size)
            if product is not None:
                last_updated = product.updated_at
                yield product
            else:
                last_updated = parsed("ProductsPage", lambda: parse_datetime(node["updatedAt"]))
        after = next_cursor(connection, after, "ProductsPage")
        if after is None:
            return
        if last_updated is None:
            continue
        try:
            restart = next_window(
                since=since, read=read, page_size=page_size, cap=pagination_cap, last_updated=last_updated
            )
        except CapExceeded as exc:
            raise ShopifyResponseError(
                f"cannot page past the pagination cap: {exc}", operation="ProductsPage"
            ) from None
        if restart is not None:
            log.info("products_window", since=restart.since.isoformat(), read=read)
            since, after, read = restart.since, None, 0
            query = products_search_query(since, search)


async def get_product(gql: GraphQLTransport, product_id: str, *, media_page_size: int = 50) -> Product | None:
    """The product with all its media, or None when it no longer exists."""
    data = await gql.execute("Product", {"id": product_id, "mediaFirst": media_page_size})
    node = data.get("product")
    return None if node is None else await complete_product(gql, node, media_page_size)


async def get_media(gql: GraphQLTransport, media_id: str) -> Media | None:
    """The media's current state, or None when it is gone or the id is not a media."""
    data = await gql.execute("Media", {"id": media_id})
    return parsed("Media", lambda: parse_media(data.get("node")))


async def get_media_many(gql: GraphQLTransport, media_ids: Iterable[str]) -> dict[str, Media | None]:
    """Each media's current state by id (None where it is gone), one request per 250 ids."""
    ids = list(dict.fromkeys(media_ids))
    found: dict[str, Media | None] = {}
    for start in range(0, len(ids), _MAX_PAGE):
        chunk = ids[start : start + _MAX_PAGE]
        data = await gql.execute("MediaNodes", {"ids": chunk})
        nodes = parsed("MediaNodes", lambda: list(data["nodes"]))
        if len(nodes) != len(chunk):
            raise ShopifyResponseError(
                "nodes answered another number of entries than ids asked", operation="MediaNodes"
            )
        for media_id, node in zip(chunk, nodes):
            found[media_id] = parsed("MediaNodes", lambda: parse_media(node))
    return found


async def complete_product(gql: GraphQLTransport, node: dict[str, Any], media_page_size: int) -> Product | None:
    """Parse a ProductFields node, fetching the media pages beyond the first; None if deleted meanwhile."""
    extra: list[dict[str, Any]] = []
    product_id, media = parsed("Product", lambda: (node["id"], node["media"]))
    cursor = next_cursor(media, None, "Product")
    while cursor is not None:
        data = await gql.execute("ProductMediaPage", {"id": product_id, "first": media_page_size, "after": cursor})
        paged = data.get("product")
        if paged is None:
            log.info("product_gone", product_id=product_id)
            return None
        page = parsed("ProductMediaPage", lambda: paged["media"])
        extra.extend(parsed("ProductMediaPage", lambda: list(page["nodes"])))
        cursor = next_cursor(page, cursor, "ProductMediaPage")
    collections = node.get("collections")
    cursor = next_cursor(collections, None, "Product") if isinstance(collections, dict) else None
    # Only a product in more collections than the first page holds; `collections` is a dict whenever there is
    # a cursor (the first page's, then the one built below).
    while cursor is not None and isinstance(collections, dict):
        data = await gql.execute("ProductCollectionsPage", {"id": product_id, "after": cursor})
        product = data.get("product")
        if product is None:
            log.info("product_gone", product_id=product_id)
            return None
        page = parsed("ProductCollectionsPage", lambda: product["collections"])
        more = parsed("ProductCollectionsPage", lambda: list(page["nodes"]))
        node = {**node, "collections": {**collections, "nodes": [*collections["nodes"], *more]}}
        collections = node["collections"]
        cursor = next_cursor(page, cursor, "ProductCollectionsPage")
    return parsed("Product", lambda: parse_product(node, extra))
