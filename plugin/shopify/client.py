"""`ShopifyClient`: one store's Admin API as one object, composed of the narrow seam and the thin
operation modules over it.

    GraphQLTransport (transport.py)    execute(operation, variables): pacing, retries, error mapping,
         │                             token source; send/with_retries for plain HTTP
         ├── catalog.py                the shop, products with all their media, media by id
         ├── media.py                  replace in place, add, move, delete media; the marker metafield
         ├── staged.py                 staged upload targets and the uploads to them
         ├── bulk.py                   the bulk product export and its JSON Lines result
         ├── subscriptions.py          webhook subscriptions
         └── downloads.py              Shopify's own CDN files (provider results: providers/fetch.py)

The client is the transport plus one forwarding method per operation, so callers keep one object
(and tests that replace `execute` on it see every operation go through their replacement). New
operations belong in an operation module, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, AsyncIterator, Callable, Iterable, Sequence, TypeVar

from . import bulk, catalog, downloads, media, staged, subscriptions
from .admin_url import admin_api_url
from .catalog import products_search_query
from .errors import ShopifyError
from .file_update import FileRow
from .models import BulkOperation, Media, Product, ShopInfo, WebhookSubscription
from .reading import parsed
from .transport import DEFAULT_API_VERSION, IDEMPOTENT_MUTATIONS, ClientStats, GraphQLTransport
from .windows import PAGINATION_CAP

T = TypeVar("T")


class ShopifyClient(GraphQLTransport):
    """Paced, retrying client of one store's Admin GraphQL API. Use as an async context manager."""

    @staticmethod
    def _parse(operation_name: str, build: Callable[[], T]) -> T:
        # (kept for shop_metafield.py and other readers written against the old one-class client)
        return parsed(operation_name, build)

    # ------------------------------------------------------------------ reads (catalog.py)

    async def shop(self) -> ShopInfo:
        return await catalog.shop(self)

    def iter_products(
        self,
        *,
        updated_since: datetime | None = None,
        search: str | None = None,
        page_size: int = 16,
        media_page_size: int = 10,
        pagination_cap: int = PAGINATION_CAP,
    ) -> AsyncIterator[Product]:
        return catalog.iter_products(
            self,
            updated_since=updated_since,
            search=search,
            page_size=page_size,
            media_page_size=media_page_size,
            pagination_cap=pagination_cap,
        )

    async def get_product(self, product_id: str, *, media_page_size: int = 50) -> Product | None:
        return await catalog.get_product(self, product_id, media_page_size=media_page_size)

    async def get_media(self, media_id: str) -> Media | None:
        return await catalog.get_media(self, media_id)

    async def get_media_many(self, media_ids: Iterable[str]) -> dict[str, Media | None]:
        return await catalog.get_media_many(self, media_ids)

    # ------------------------------------------------------------------ writes (staged.py, media.py)

    async def staged_upload(self, filename: str, mime_type: str, data: bytes, *, http_method: str = "POST") -> str:
        return await staged.staged_upload(self, filename, mime_type, data, http_method=http_method)

    async def staged_uploads(self, files: Sequence[tuple[str, str, bytes]], *, http_method: str = "POST") -> list[str]:
        return await staged.staged_uploads(self, files, http_method=http_method)

    async def replace_media_source(self, media_id: str, original_source: str, alt: str | None = None) -> None:
        await media.replace_media_source(self, media_id, original_source, alt)

    async def replace_media_sources(self, sources: Sequence[tuple[str, str]]) -> list[FileRow]:
        return await media.replace_media_sources(self, sources)

    async def add_media(self, product_id: str, original_source: str, alt: str | None) -> str:
        return await media.add_media(self, product_id, original_source, alt)

    async def move_media(self, product_id: str, media_id: str, new_position: int, *, timeout: float = 30) -> None:
        await media.move_media(self, product_id, media_id, new_position, timeout=timeout)

    async def set_marker(self, product_id: str, media_ids: Iterable[str], compare_digest: str | None) -> str:
        return await media.set_marker(self, product_id, media_ids, compare_digest)

    async def delete_media(self, media_ids: list[str]) -> None:
        await media.delete_media(self, media_ids)

    # ------------------------------------------------------------------ webhook subscriptions

    async def webhook_subscriptions(self, topics: Iterable[str]) -> list[WebhookSubscription]:
        return await subscriptions.webhook_subscriptions(self, topics)

    async def create_webhook_subscription(self, topic: str, uri: str) -> str:
        return await subscriptions.create_webhook_subscription(self, topic, uri)

    async def delete_webhook_subscription(self, subscription_id: str) -> None:
        await subscriptions.delete_webhook_subscription(self, subscription_id)

    # ------------------------------------------------------------------ bulk operations

    async def products_count(self, *, limit: int | None = None) -> tuple[int, bool]:
        return await bulk.products_count(self, limit=limit)

    async def start_bulk_products(self) -> BulkOperation:
        return await bulk.start_bulk_products(self)

    async def bulk_operation(self, operation_id: str) -> BulkOperation | None:
        return await bulk.bulk_operation(self, operation_id)

    async def cancel_bulk_operation(self, operation_id: str) -> BulkOperation | None:
        return await bulk.cancel_bulk_operation(self, operation_id)

    def iter_jsonl(self, url: str, *, max_line: int = 16 * 2**20) -> AsyncIterator[dict[str, Any]]:
        return bulk.iter_jsonl(self, url, max_line=max_line)

    # ------------------------------------------------------------------ Shopify's CDN

    async def download(self, url: str, *, max_bytes: int = 50 * 2**20) -> tuple[bytes, str]:
        return await downloads.download(self, url, max_bytes=max_bytes)


__all__ = [
    "DEFAULT_API_VERSION",
    "IDEMPOTENT_MUTATIONS",
    "ClientStats",
    "ShopifyClient",
    "ShopifyError",
    "admin_api_url",
    "products_search_query",
]
