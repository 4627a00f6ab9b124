"""The sandbox store's records (products, media, metafields, staged uploads, jobs) and id helpers.

Plain dataclasses, no behaviour beyond small derived values: the rules that change them live in
`store.py`, the media lifecycle in `lifecycle.py`. Times are epoch seconds (floats) from the
sandbox's clock; Shopify shows them with whole-second precision (`iso`).

The records use `slots=True`: a seeded catalog holds 100,000 products and 300,000 media, and a
per-object `__dict__` would cost more than the rest of the record. A seeded image is a
`GeneratedImage` — its recipe (photo seed, format, size) — whose bytes are drawn when first asked
for and kept in a small LRU (`photos.cached_photo`); uploaded images are `ImageAsset`s with their bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Union

from .photos import cached_photo

GID_PREFIX = "gid://shopify/"
_GID = re.compile(r"^gid://shopify/([A-Za-z0-9]+)/([0-9]+)(?:\?.*)?$")

# Realistic first ids (taken from the captures) and Shopify's usual stride between new ids.
FIRST_PRODUCT_ID = 10244032266546
FIRST_MEDIA_ID = 44071803355442
FIRST_METAFIELD_ID = 45359476998450
FIRST_VARIANT_ID = 47012345667890
ID_STRIDE = 32768


def gid(kind: str, number: int) -> str:
    return f"{GID_PREFIX}{kind}/{number}"


def parse_gid(value: str) -> tuple[str, int] | None:
    """("Product", 123) for "gid://shopify/Product/123"; None when `value` is not a Shopify gid."""
    match = _GID.match(value or "")
    return (match.group(1), int(match.group(2))) if match else None


def iso(ts: float) -> str:
    """Shopify's DateTime: UTC, whole seconds, "Z" suffix."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Pillow format -> (MIME type, canonical file extension)
FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}


@dataclass(frozen=True, slots=True)
class ImageAsset:
    """Image bytes Shopify accepted, with what processing learnt about them."""

    data: bytes = field(repr=False)
    mime_type: str
    extension: str  # canonical extension of the detected format: jpg, png, webp, gif
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """A generated product photo kept as its recipe: `photos.product_photo(seed, format, (width,
    height))` — the same bytes whenever they are drawn. Width, height, MIME type and extension
    come from the recipe; `data` (and so `sha256`) draws the photo, cached in a small LRU."""

    seed: int
    format: str  # "JPEG", "PNG" or "WEBP"
    width: int = 640
    height: int = 640

    @property
    def data(self) -> bytes:
        return cached_photo(self.seed, self.format, (self.width, self.height))

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format][0]

    @property
    def extension(self) -> str:
        return FORMATS[self.format][1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


Image = Union[ImageAsset, GeneratedImage]  # an image processing accepted


@dataclass(frozen=True, slots=True)
class MediaFailure:
    """Why processing failed: a `MediaErrorCode` and Shopify-style message/details."""

    code: str
    message: str
    details: str | None = None


@dataclass(slots=True)
class Processing:
    """A (re)processing in flight: its outcome is decided when it starts and shown when it ends."""

    started_at: float
    outcome: Image | MediaFailure
    version: int


# What a media that never had its image replaced keeps as earlier versions (shared, read-only:
# `lifecycle.settle` gives the media a dict of its own when a replacement supersedes an image).
NO_VERSIONS: Mapping[int, Image] = MappingProxyType({})


@dataclass(slots=True)
class Media:
    """A MediaImage: attached to a product (`product_id`) or detached (only a File)."""

    id: int
    product_id: int | None
    filename: str  # CDN file name; kept when the bytes are replaced
    alt: str
    created_at: float
    updated_at: float
    source_url: str
    source_size: int | None
    processing: Processing | None = None
    ready: Image | None = None  # the last successfully processed image
    ready_version: int | None = None
    failure: MediaFailure | None = None  # set when the last processing failed
    # Earlier processed images the CDN still serves at their versioned URLs (the current one is
    # `ready` at `ready_version`; it may be here too).
    versions: Mapping[int, Image] = field(default_factory=lambda: NO_VERSIONS, repr=False)

    @property
    def gid(self) -> str:
        return gid("MediaImage", self.id)

    @property
    def last_version(self) -> int:
        known = list(self.versions)
        if self.ready_version is not None:
            known.append(self.ready_version)
        if self.processing is not None:
            known.append(self.processing.version)
        return max(known, default=0)

    def version(self, number: int) -> Image | None:
        """The processed image of version `number`, if there is one."""
        if number == self.ready_version and self.ready is not None:
            return self.ready
        return self.versions.get(number)


@dataclass(slots=True)
class Metafield:
    id: int
    owner_id: int
    namespace: str
    key: str
    type: str
    value: str
    created_at: float
    updated_at: float
    revision: int = 1

    @property
    def gid(self) -> str:
        return gid("Metafield", self.id)

    @property
    def compare_digest(self) -> str:
        """A hash of the value (and of which metafield and which write it is, so that writing a
        value back to an earlier one still invalidates digests read in between)."""
        return hashlib.sha256(f"{self.id}:{self.revision}:{self.value}".encode()).hexdigest()


@dataclass(slots=True)
class Variant:
    """A product variant and the media linked to it (the picture shown when a shopper picks it).
    A link follows the media id: replacing the file keeps it, deleting the media drops it."""

    id: int
    title: str
    media_ids: list[int] = field(default_factory=list)

    @property
    def gid(self) -> str:
        return gid("ProductVariant", self.id)


@dataclass(slots=True)
class Product:
    id: int
    title: str
    tags: list[str]
    created_at: float
    updated_at: float
    media_ids: list[int] = field(default_factory=list)  # in position order
    metafields: dict[tuple[str, str], Metafield] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    product_type: str = ""
    vendor: str = ""
    status: str = "ACTIVE"  # ProductStatus
    collection_ids: list[int] = field(default_factory=list)  # the collections it belongs to, in order added

    @property
    def gid(self) -> str:
        return gid("Product", self.id)


@dataclass(slots=True)
class Collection:
    """A custom collection: a handle, a title, and (on each Product) which products it holds."""

    id: int
    handle: str
    title: str

    @property
    def gid(self) -> str:
        return gid("Collection", self.id)


@dataclass(slots=True)
class StagedUpload:
    """A staged upload target handed out by stagedUploadsCreate; `data` once the client uploaded."""

    key: str
    filename: str
    mime_type: str
    http_method: str
    created_at: float
    data: bytes | None = field(default=None, repr=False)


@dataclass(slots=True)
class ReorderJob:
    """productReorderMedia's job: the moves are applied, and `done` turns true, at `due_at`."""

    id: str  # a UUID, as in gid://shopify/Job/<uuid>
    product_id: int
    moves: list[tuple[int, int]]  # (media id, new zero-based position), applied in order
    due_at: float
    applied: bool = False

    @property
    def gid(self) -> str:
        return f"{GID_PREFIX}Job/{self.id}"
