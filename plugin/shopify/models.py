"""Typed, immutable views of the Shopify objects the daemon reads, parsed from GraphQL responses.

The parse functions take the JSON shapes selected by `operations/_fragments.graphql`
(`ProductFields`, `MediaFields`) and raise KeyError/TypeError/ValueError on a shape they do not
recognise; the client turns those into `ShopifyResponseError`.

The retouch marker is an app-owned JSON metafield on the product (namespace `$app:retouch`, key
`output_media`) whose value is `{"media_ids": ["gid://shopify/MediaImage/…", …]}`: the media that
are retouch output, so discovery never enhances them again even if the local database is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger(__name__)

MARKER_NAMESPACE = "$app:retouch"
MARKER_KEY = "output_media"
MARKER_TYPE = "json"


@dataclass(frozen=True)
class MediaError:
    """One entry of `MediaImage.mediaErrors` (why processing FAILED)."""

    code: str
    message: str
    details: str | None


@dataclass(frozen=True)
class Media:
    """One product media. Image fields are None for other media types and `url` is None until READY."""

    id: str
    content_type: str
    status: str
    alt: str | None
    mime_type: str | None
    url: str | None
    original_url: str | None
    width: int | None
    height: int | None
    errors: tuple[MediaError, ...]
    updated_at: datetime | None

    @property
    def filename(self) -> str | None:
        """Last path segment of `url` (else `original_url`), without the query string."""
        source = self.url or self.original_url
        if not source:
            return None
        name = unquote(PurePosixPath(urlsplit(source).path).name)
        return name or None

    @property
    def extension(self) -> str | None:
        """Lower-case suffix of `filename` with its dot (".jpg"), or None without one."""
        name = self.filename
        suffix = PurePosixPath(name).suffix.lower() if name else ""
        return suffix or None


@dataclass(frozen=True)
class Product:
    """A product with all its media (every page) and the retouch marker."""

    id: str
    legacy_id: int
    title: str
    tags: tuple[str, ...]
    updated_at: datetime
    media: tuple[Media, ...]
    marker_media_ids: frozenset[str]
    marker_digest: str | None
    # What [[rules]] match on besides tags (read in the same product query: no extra call).
    product_type: str = ""
    vendor: str = ""
    status: str = ""
    collections: tuple[str, ...] = ()  # the handle and the title of each collection it belongs to


@dataclass(frozen=True)
class ShopInfo:
    name: str
    domain: str


def parse_datetime(value: str) -> datetime:
    """Shopify's ISO 8601 `DateTime` ("2026-07-19T15:50:20Z") as an aware datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_media(node: Mapping[str, Any] | None) -> Media | None:
    """A `MediaFields` node as Media; None when the node is null or not a Media (no content type)."""
    if not node or "mediaContentType" not in node:
        return None
    image = node.get("image") or {}
    original = node.get("originalSource") or {}
    updated_at = node.get("updatedAt")
    return Media(
        id=node["id"],
        content_type=node["mediaContentType"],
        status=node["status"],
        alt=node.get("alt"),
        mime_type=node.get("mimeType"),
        url=image.get("url"),
        original_url=original.get("url"),
        width=_optional_int(image.get("width")),
        height=_optional_int(image.get("height")),
        errors=tuple(
            MediaError(code=error["code"], message=error["message"], details=error.get("details"))
            for error in node.get("mediaErrors") or ()
        ),
        updated_at=parse_datetime(updated_at) if updated_at else None,
    )


def parse_product(node: Mapping[str, Any], extra_media_nodes: Iterable[Mapping[str, Any]] = ()) -> Product:
    """A `ProductFields` node as Product; `extra_media_nodes` are the media of later pages."""
    media_nodes = [*node["media"]["nodes"], *extra_media_nodes]
    media = tuple(m for m in (parse_media(n) for n in media_nodes) if m is not None)
    marker = node.get("marker")
    return Product(
        id=node["id"],
        legacy_id=int(node["legacyResourceId"]),
        title=node["title"],
        tags=tuple(node.get("tags") or ()),
        updated_at=parse_datetime(node["updatedAt"]),
        media=media,
        marker_media_ids=parse_marker(marker.get("value") if marker else None, product_id=node["id"]),
        marker_digest=marker.get("compareDigest") if marker else None,
        product_type=str(node.get("productType") or ""),
        vendor=str(node.get("vendor") or ""),
        status=str(node.get("status") or ""),
        collections=tuple(
            part
            for c in (node.get("collections") or {}).get("nodes") or ()
            for part in (c.get("handle"), c.get("title"))
            if isinstance(part, str)
        ),
    )


def parse_marker(value: str | None, *, product_id: str | None = None) -> frozenset[str]:
    """The media ids in a marker value; empty (with a warning) when the value is not what we write.

    A merchant or another tool may have edited the metafield: a bad marker must not stop discovery.
    """
    if value is None:
        return frozenset()
    try:
        document = json.loads(value)
    except (TypeError, ValueError):
        log.warning("marker_invalid", product_id=product_id, problem="not JSON")
        return frozenset()
    ids = document.get("media_ids") if isinstance(document, dict) else None
    if not isinstance(ids, list):
        log.warning("marker_invalid", product_id=product_id, problem="no media_ids list")
        return frozenset()
    if any(not isinstance(item, str) for item in ids):
        log.warning("marker_invalid", product_id=product_id, problem="non-string media ids ignored")
    return frozenset(item for item in ids if isinstance(item, str))


def marker_value(media_ids: Iterable[str]) -> str:
    """The metafield value for a set of media ids (sorted, so equal sets give equal values)."""
    return json.dumps({"media_ids": sorted(set(media_ids))}, separators=(",", ":"))


@dataclass(frozen=True)
class WebhookSubscription:
    """One of the app's webhook subscriptions: `id` is its gid, `topic` e.g. "PRODUCTS_UPDATE"."""

    id: str
    topic: str
    uri: str


# Bulk operation statuses after which nothing changes any more.
BULK_TERMINAL = frozenset({"COMPLETED", "CANCELED", "FAILED", "EXPIRED"})


@dataclass(frozen=True)
class BulkOperation:
    """A bulk query's progress (`BulkOperationFields`). `url` is the JSONL result once COMPLETED;
    `partial_data_url` what a FAILED operation managed to read; both expire after seven days."""

    id: str
    status: str
    error_code: str | None
    created_at: datetime | None
    object_count: int
    url: str | None
    partial_data_url: str | None
    root_object_count: int = 0  # products exported so far (objectCount adds their media)

    @property
    def terminal(self) -> bool:
        return self.status in BULK_TERMINAL


def parse_bulk_operation(node: Mapping[str, Any]) -> BulkOperation:
    created_at = node.get("createdAt")
    return BulkOperation(
        id=str(node["id"]),
        status=str(node["status"]),
        error_code=node.get("errorCode"),
        created_at=parse_datetime(created_at) if created_at else None,
        object_count=int(node.get("objectCount") or 0),  # UnsignedInt64 arrives as a string
        root_object_count=int(node.get("rootObjectCount") or 0),
        url=node.get("url"),
        partial_data_url=node.get("partialDataUrl"),
    )
