"""The sandbox shop's state and the rules that change it.

Every method assumes the caller holds `Store.lock` (the GraphQL service holds it for a whole
request; the admin API for one call). The only place the lock is let go is `fetch_sources`, while
media sources are downloaded, so a slow URL never blocks the rest of the shop; code after it
re-checks that what it is about to change still exists.

GraphQL mutations return payload dicts shaped like Shopify's; the userError codes, messages and
`field` paths come from the captures in ../shared/reference/shopify/captures where one exists:
- fileUpdate: FILE_DOES_NOT_EXIST, NON_READY_STATE, INVALID_FILENAME_EXTENSION,
  REFERENCE_TARGET_DOES_NOT_EXIST (2026-04/media/media-file-update-*.json) — one aggregated error
  with field ["files"], nothing applied;
- productUpdate: "Image URL is invalid" at ["media", i, "originalSource"], nothing applied
  (2025-01/products/product-top-level-media-parity.json);
- metafieldsSet: LESS_THAN_OR_EQUAL_TO over 25, STALE_OBJECT at ["metafields", i]
  (2025-01/products/metafields-set-*.json);
- fileDelete resolves a gid by its number whatever its type (2026-04/media/media-file-delete-typed-gid-roundtrip.json).
Errors without a capture (marked "no capture" below) use the real codes with plain messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import structlog

from . import lifecycle
from .bulk import BulkOperations, BulkSettings
from .catalog import OffsetCache, ProductOrders
from .cost import LeakyBucket
from .faults import FaultPlan
from .imaging import DOWNLOAD_FAILURE, extension_of, failure, filename_from_url, inspect_image

FIRST_COLLECTION_ID = 480_000_000_001  # like Shopify's collection ids; not a product's, media's or variant's

from .model import (
    FIRST_MEDIA_ID,
    FIRST_METAFIELD_ID,
    FIRST_PRODUCT_ID,
    FIRST_VARIANT_ID,
    ID_STRIDE,
    Collection,
    GeneratedImage,
    Image,
    Media,
    MediaFailure,
    Metafield,
    Processing,
    Product,
    ReorderJob,
    StagedUpload,
    Variant,
    gid,
    iso,
    parse_gid,
)
from .paging import PAGINATION_CAP
from .photos import format_for_filename, product_photo
from .profiles import DEFAULT_PROFILE, Profile, media_alt_errors, partial_file_update, stored_namespace
from .sources import Fetched, download, is_valid_source_url
from .webhooks import Subscriptions

log = structlog.get_logger(__name__)

MAX_METAFIELDS_PER_CALL = 25
APP_ID = 347082227713  # the app id Shopify shows in app-owned namespaces ("app--<id>"), from a capture
SHOP_NUMERIC_ID = 92891250994
STAGED_MAX_BYTES = 20 * 1024 * 1024
_SIGNING_SECRET = b"retouch-sandbox-staged-uploads"  # signs fake policies; not a credential


class SandboxError(LookupError):
    """An admin call named something the shop does not have (the HTTP admin API answers 404)."""


def user_error(field_path: list[str] | None, message: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"field": field_path, "message": message}
    if code is not None:
        error["code"] = code
    error.update(extra)
    return error


@dataclass
class Stats:
    graphql_requests: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    faults_served: int = 0
    unauthorized: int = 0
    max_cost_exceeded: int = 0
    points: dict[str, int] = field(default_factory=dict)  # actual cost charged, by operation name

    def as_dict(self) -> dict[str, Any]:
        return {
            "graphql_requests": self.graphql_requests,
            "operations": dict(self.operations),
            "throttled": self.throttled,
            "points": dict(self.points),
            "faults_served": self.faults_served,
            "unauthorized": self.unauthorized,
            "max_cost_exceeded": self.max_cost_exceeded,
        }


class Store:
    profile: Profile = DEFAULT_PROFILE  # how kind it is (profiles.py); the sandbox sets it
    # Products whose latest change reaches the search index this many seconds late (profiles.py).
    search_delays: Mapping[int, float] = MappingProxyType({})

    def __init__(
        self,
        *,
        shop_name: str,
        clock: Callable[[], float],
        processing_seconds: float,
        bucket_size: float,
        restore_rate: float,
        bulk: BulkSettings | None = None,
        pagination_cap: int = PAGINATION_CAP,
    ) -> None:
        self.lock = threading.Lock()
        self.bulk_settings = bulk or BulkSettings()
        self.shop_name = shop_name
        self.clock = clock
        self.processing_seconds = processing_seconds
        self.pagination_cap = pagination_cap  # how deep a connection may be paged (Shopify: 25,000)
        self._bucket_args = (bucket_size, restore_rate)
        self._next_ids = {
            "product": FIRST_PRODUCT_ID,
            "media": FIRST_MEDIA_ID,
            "metafield": FIRST_METAFIELD_ID,
            "variant": FIRST_VARIANT_ID,
            "collection": FIRST_COLLECTION_ID,
        }
        # Called (under the lock) with (topic, product number) when a subscribed event happens.
        self.on_event: Callable[[str, int], None] | None = None
        self.reset()

    def reset(self) -> None:
        """An empty shop again: no products, media, uploads, jobs, faults or stats, a full bucket.
        Ids keep counting up, so nothing a client remembers from before can name a new object."""
        self.bucket = LeakyBucket(*self._bucket_args, self.clock)
        self.faults = FaultPlan()
        self.stats = Stats()
        self.products: dict[int, Product] = {}
        self.collections: dict[int, Collection] = {}  # [[rules]] match on membership (Product.collection_ids)
        self.shop_metafields: dict[tuple[str, str], Metafield] = {}  # the Shop's own (the store claim)
        self.media: dict[int, Media] = {}
        self.staged: dict[str, StagedUpload] = {}
        self.jobs: dict[str, ReorderJob] = {}
        self.filenames: dict[str, int] = {}  # CDN file name -> media id
        # Products in each sort order asked for, kept sorted as they change (catalog.py).
        self.orders = ProductOrders(lambda: self.products.values())
        self.offsets = OffsetCache()  # filtered-ordering positions of handed-out cursors
        # What `settle` has to look at: media with a processing in flight, reorder jobs not applied.
        self._processing: set[int] = set()
        self._pending_jobs: set[str] = set()
        self._photo_seed = 0
        self._names = random.Random()  # seeded from the OS: file-name suffixes (`_uuid`)
        self.subscriptions = Subscriptions()
        self.pending_events: set[tuple[str, int]] = set()  # announced, not yet built into a delivery
        self.bulk = BulkOperations(self.bulk_settings)
        # Every picture an API client put on a product (fileUpdate with a new source, productUpdate
        # with media), in order: what a test checks against what was allowed to be written.
        self.writes: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def unlocked(self) -> Iterator[None]:
        """Let go of the lock for a while (the caller must hold it)."""
        self.lock.release()
        try:
            yield
        finally:
            self.lock.acquire()

    def namespace(self, value: str | None) -> str:
        """A metafield namespace as this store keeps it (its profile may resolve `$app:`)."""
        return stored_namespace(self.profile, namespace_for(value), APP_ID)

    def _new_id(self, kind: str) -> int:
        value = self._next_ids[kind]
        self._next_ids[kind] = value + ID_STRIDE
        return value

    def settle(self, now: float) -> None:
        """Make finished processings and due reorder jobs permanent. Only media registered as
        processing (`_start_processing`) and unapplied jobs are looked at, not the whole catalog."""
        for media_id in list(self._processing):
            media = self.media.get(media_id)
            if media is None or media.processing is None:
                self._processing.discard(media_id)
            elif lifecycle.settle(media, now, self.processing_seconds):
                self._processing.discard(media_id)
        for job_id in list(self._pending_jobs):
            job = self.jobs.get(job_id)
            if job is None or job.applied:
                self._pending_jobs.discard(job_id)
            elif now >= job.due_at:
                self._apply_reorder(job)

    def _start_processing(self, media: Media, processing: Processing) -> None:
        media.processing = processing
        self._processing.add(media.id)

    def touch(self, product: Product, now: float) -> None:
        if now > product.updated_at:
            with self.orders.changing(product):
                product.updated_at = now
        self.emit("PRODUCTS_UPDATE", product.id)

    def _set_title(self, product: Product, title: str) -> None:
        with self.orders.changing(product):
            product.title = title

    def emit(self, topic: str, product_id: int) -> None:
        """Announce a product event to the webhook sender, once while it waits to be built (the
        delivery's body is built when it leaves, so several changes share one)."""
        if self.on_event is None or not self.subscriptions.for_topic(topic):
            return
        if (topic, product_id) not in self.pending_events:
            self.pending_events.add((topic, product_id))
            self.on_event(topic, product_id)

    def product_by_gid(self, value: str | None) -> Product | None:
        parsed = parse_gid(value or "")
        if parsed is None or parsed[0] != "Product":
            return None
        return self.products.get(parsed[1])

    def media_by_gid(self, value: str | None) -> Media | None:
        parsed = parse_gid(value or "")
        if parsed is None or parsed[0] != "MediaImage":
            return None
        return self.media.get(parsed[1])

    def node(self, value: str) -> object | None:
        parsed = parse_gid(value)
        if parsed is None:
            return None
        kind, number = parsed
        if kind == "Product":
            return self.products.get(number)
        if kind == "MediaImage":
            return self.media.get(number)
        if kind == "Metafield":
            return next((m for p in self.products.values() for m in p.metafields.values() if m.id == number), None)
        if kind == "BulkOperation":
            return self.bulk.by_id.get(number)
        if kind == "Collection":
            return self.collections.get(number)
        return None

    def job_by_gid(self, value: str) -> ReorderJob | None:
        prefix = "gid://shopify/Job/"
        return self.jobs.get(value[len(prefix) :]) if value.startswith(prefix) else None

    def product_media(self, product: Product) -> list[Media]:
        return [self.media[i] for i in product.media_ids if i in self.media]

    def position_of(self, media: Media) -> int | None:
        """Zero-based position in its product's media, None when detached."""
        product = self.products.get(media.product_id) if media.product_id is not None else None
        return product.media_ids.index(media.id) if product and media.id in product.media_ids else None

    # ------------------------------------------------------------------ sources and media

    def resolve_own(self, url: str, bases: Iterable[str]) -> Fetched | None:
        """Bytes of a URL this sandbox serves (staged upload or CDN file); None for other URLs."""
        for base in bases:
            if not base or not url.startswith(base + "/"):
                continue
            parts = urlsplit(url)
            segments = [unquote(s) for s in parts.path.split("/") if s]
            if len(segments) >= 3 and segments[:2] == ["_staged", "files"]:
                staged = self.staged.get(segments[2])
                if staged is None or staged.data is None:
                    return Fetched(error="staged file not uploaded")
                return Fetched(data=staged.data)
            if len(segments) == 3 and segments[:2] == ["cdn", "files"]:
                served = self.cdn_file(segments[2], parse_qs(parts.query).get("v", [None])[0])
                return Fetched(data=served.data) if served else Fetched(error="HTTP 404")
        return None

    def fetch_sources(self, urls: Iterable[str], bases: Iterable[str]) -> dict[str, Fetched]:
        """Fetch every source URL: our own from memory, the others over HTTP with the lock let go."""
        bases = tuple(bases)
        results: dict[str, Fetched] = {}
        external: list[str] = []
        for url in dict.fromkeys(urls):
            own = self.resolve_own(url, bases)
            if own is None:
                external.append(url)
            else:
                results[url] = own
        if external:
            with self.unlocked():
                for url in external:
                    results[url] = download(url)
        return results

    def outcome_of(self, fetched: Fetched) -> Image | MediaFailure:
        """What processing will decide for these bytes (an injected failure comes first)."""
        injected = self.faults.take_media_failure()
        if injected is not None:
            return failure(injected, "injected by the sandbox")
        if fetched.data is None:
            return failure(DOWNLOAD_FAILURE, fetched.error)
        return inspect_image(fetched.data)

    def _unique_filename(self, wanted: str, outcome: Image | MediaFailure) -> str:
        """Shopify keeps file names unique per shop; a nameless or taken one gets a UUID suffix."""
        name = wanted.strip().replace("/", "_") or "image"
        stem, ext = (name.rsplit(".", 1) + [""])[:2] if extension_of(name) else (name, "")
        if not ext and not isinstance(outcome, MediaFailure):
            ext = outcome.extension
            name = f"{stem}_{self._uuid()}.{ext}"
        if name in self.filenames:
            name = f"{stem}_{self._uuid()}" + (f".{ext}" if ext else "")
        return name

    def _uuid(self) -> str:
        """A random version-4 UUID, as `str(uuid.uuid4())` but from a fast PRNG seeded from the
        OS once (file-name suffixes need uniqueness, not secrecy; a 300,000-media seed takes many)."""
        h = f"{self._names.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def _next_version(self, media: Media | None, now: float) -> int:
        return max((media.last_version + 1) if media else 0, int(now))

    def create_media(
        self,
        product: Product | None,
        *,
        source_url: str,
        alt: str,
        fetched: Fetched,
        now: float,
        filename: str | None = None,
        immediately_ready: bool = False,
    ) -> Media:
        """A new MediaImage appended to `product`: processing starts now, or (for media the store
        already had, created through the admin API) it is READY at once."""
        outcome = self.outcome_of(fetched)
        media = Media(
            id=self._new_id("media"),
            product_id=product.id if product else None,
            filename=self._unique_filename(filename or filename_from_url(source_url), outcome),
            alt=alt,
            created_at=now,
            updated_at=now,
            source_url=source_url,
            source_size=len(fetched.data) if fetched.data is not None else None,
        )
        version = self._next_version(None, now)
        if immediately_ready:
            media.processing = Processing(started_at=now - self.processing_seconds, outcome=outcome, version=version)
            lifecycle.settle(media, now, self.processing_seconds)
        else:
            self._start_processing(media, Processing(started_at=now, outcome=outcome, version=version))
        self.media[media.id] = media
        self.filenames[media.filename] = media.id
        if product is not None:
            product.media_ids.append(media.id)
            self.touch(product, now)
        log.info(
            "media_created",
            product_id=media.product_id,
            media_id=media.id,
            outcome=outcome.code if isinstance(outcome, MediaFailure) else "ok",
        )
        return media

    def replace_source(self, media: Media, *, source_url: str, fetched: Fetched, now: float) -> None:
        """fileUpdate with a new originalSource: same id, position, alt and file name; reprocessed."""
        outcome = self.outcome_of(fetched)
        self._start_processing(
            media, Processing(started_at=now, outcome=outcome, version=self._next_version(media, now))
        )
        media.source_url = source_url
        media.source_size = len(fetched.data) if fetched.data is not None else None
        media.updated_at = max(media.updated_at, now)
        log.info(
            "media_replaced", media_id=media.id, outcome=outcome.code if isinstance(outcome, MediaFailure) else "ok"
        )

    def _record_write(self, operation: str, media: Media, fetched: Fetched, now: float) -> None:
        self.writes.append(
            {
                "operation": operation,
                "media_id": media.id,
                "product_id": media.product_id,
                "at": now,
                "sha256": hashlib.sha256(fetched.data).hexdigest() if fetched.data is not None else None,
            }
        )

    def remove_media(self, media: Media, now: float) -> None:
        self.detach(media, now)
        self.filenames.pop(media.filename, None)
        self._processing.discard(media.id)
        del self.media[media.id]

    def detach(self, media: Media, now: float) -> None:
        product = self.products.get(media.product_id) if media.product_id is not None else None
        if product is not None and media.id in product.media_ids:
            product.media_ids.remove(media.id)
            for variant in product.variants:  # a variant cannot show a media its product no longer has
                if media.id in variant.media_ids:
                    variant.media_ids.remove(media.id)
            self.touch(product, now)
        media.product_id = None

    def cdn_file(self, filename: str, version: str | None) -> Image | None:
        """What the CDN serves for /cdn/files/<filename>?v=<version>: that version if known, else
        the newest processed image of the file."""
        media_id = self.filenames.get(filename)
        media = self.media.get(media_id) if media_id is not None else None
        if media is None:
            return None
        lifecycle.settle(media, self.clock(), self.processing_seconds)
        known = media.version(int(version)) if version is not None and version.isdigit() else None
        return known if known is not None else media.ready

    def cdn_url(self, base_url: str, media: Media, version: int) -> str:
        return f"{base_url}/cdn/files/{quote(media.filename)}?v={version}"

    # ------------------------------------------------------------------ GraphQL mutations

    def staged_uploads_create(self, inputs: list[dict[str, Any]], base_url: str, now: float) -> dict[str, Any]:
        targets = []
        for item in inputs:
            key = uuid.uuid4().hex
            filename = item["filename"]
            mime_type = item["mimeType"]
            method = item.get("httpMethod") or "PUT"
            self.staged[key] = StagedUpload(key, filename, mime_type, method, now)
            if method == "PUT":
                parameters = [("content_type", mime_type), ("acl", "private")]
            else:
                parameters = self._post_policy(key, filename, mime_type, item["resource"], now)
            targets.append(
                {
                    "url": f"{base_url}/_staged/upload/{key}",
                    "resourceUrl": f"{base_url}/_staged/files/{key}/{quote(filename)}",
                    "parameters": [{"name": n, "value": v} for n, v in parameters],
                }
            )
        return {"stagedTargets": targets, "userErrors": []}

    @staticmethod
    def _post_policy(key: str, filename: str, mime_type: str, resource: str, now: float) -> list[tuple[str, str]]:
        """Form fields like Google Cloud Storage's signed POST policy (see staged-upload-targets-parity.json)."""
        folder = "products" if resource == "IMAGE" else "files"
        object_key = f"tmp/{SHOP_NUMERIC_ID}/{folder}/{key}/{filename}"
        stamp = datetime.fromtimestamp(now, UTC)
        date = stamp.strftime("%Y%m%dT%H%M%SZ")
        credential = f"merchant-assets@shopify-tiers.iam.gserviceaccount.com/{stamp:%Y%m%d}/auto/storage/goog4_request"
        policy = base64.b64encode(
            json.dumps(
                {
                    "conditions": [
                        {"Content-Type": mime_type},
                        {"success_action_status": "201"},
                        {"acl": "private"},
                        ["content-length-range", 1, STAGED_MAX_BYTES],
                        {"bucket": "shopify-staged-uploads"},
                        {"key": object_key},
                        {"x-goog-date": date},
                        {"x-goog-credential": credential},
                        {"x-goog-algorithm": "GOOG4-RSA-SHA256"},
                    ],
                    "expiration": datetime.fromtimestamp(now + 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                separators=(",", ":"),
            ).encode()
        ).decode()
        signature = hmac.new(_SIGNING_SECRET, policy.encode(), hashlib.sha256).hexdigest()
        return [
            ("Content-Type", mime_type),
            ("success_action_status", "201"),
            ("acl", "private"),
            ("key", object_key),
            ("x-goog-date", date),
            ("x-goog-credential", credential),
            ("x-goog-algorithm", "GOOG4-RSA-SHA256"),
            ("x-goog-signature", signature),
            ("policy", policy),
        ]

    def receive_upload(self, key: str, data: bytes, form_key: str | None = None) -> str | None:
        """Store uploaded bytes for a staged target; the error text when refused."""
        staged = self.staged.get(key)
        if staged is None:
            return "AccessDenied"
        if form_key is not None and not form_key.endswith(f"/{key}/{staged.filename}"):
            return "AccessDenied"
        if not 1 <= len(data) <= STAGED_MAX_BYTES:
            return "EntityTooLarge" if data else "EntityTooSmall"
        staged.data = data
        return None

    def file_update(self, files: list[dict[str, Any]], bases: tuple[str, ...], now: float) -> dict[str, Any]:
        if self.profile.partial_file_update:
            return partial_file_update(self, files, bases, now)
        errors = self._file_update_errors(files, now)
        if errors:
            return {"files": [], "userErrors": errors}
        sources = [f["originalSource"] for f in files if f.get("originalSource")]
        fetched = self.fetch_sources(sources, bases) if sources else {}
        now = max(now, self.clock())
        self.settle(now)
        errors = self._file_update_errors(files, now)  # the lock was let go: check again
        if errors:
            return {"files": [], "userErrors": errors}
        return {"files": [self.apply_file_update(item, fetched, now) for item in files], "userErrors": []}

    def apply_file_update(self, item: dict[str, Any], fetched: dict[str, Fetched], now: float) -> Media:
        """Apply one checked row of a fileUpdate; returns its media."""
        media = self.media_by_gid(item["id"])
        assert media is not None
        touched = {media.product_id} if media.product_id is not None else set()
        if item.get("alt") is not None:
            media.alt = item["alt"]
        if item.get("filename"):
            self.filenames.pop(media.filename, None)
            media.filename = self._unique_filename(item["filename"], media.ready or failure("UNKNOWN"))
            self.filenames[media.filename] = media.id
        for ref in item.get("referencesToRemove") or ():
            product = self.product_by_gid(ref)
            if product is not None and media.product_id == product.id:
                self.detach(media, now)
        if item.get("originalSource"):
            source = item["originalSource"]
            self.replace_source(media, source_url=source, fetched=fetched[source], now=now)
            self._record_write("fileUpdate", media, fetched[source], now)
        media.updated_at = max(media.updated_at, now)
        for product_id in touched:
            if product_id in self.products:
                self.touch(self.products[product_id], now)
        return media

    def _file_update_errors(self, files: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        missing = [f["id"] for f in files if self.media_by_gid(f["id"]) is None]
        if missing:
            return [user_error(["files"], f"File id {json.dumps(missing)} does not exist.", "FILE_DOES_NOT_EXIST")]
        media = [self.media_by_gid(f["id"]) for f in files]
        if any(lifecycle.file_status(m, now, self.processing_seconds) != lifecycle.READY for m in media if m):
            return [user_error(["files"], "Non-ready files cannot be updated.", "NON_READY_STATE")]
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(files):
            source = item.get("originalSource")
            if source and not is_valid_source_url(source):  # no capture: code real, wording ours
                errors.append(
                    user_error(
                        ["files", str(index), "originalSource"], "Image URL is invalid", "INVALID_IMAGE_SOURCE_URL"
                    )
                )
        if errors:
            return errors
        for item, current in zip(files, media, strict=True):
            assert current is not None
            original = extension_of(current.filename)
            wanted = [extension_of(item["filename"])] if item.get("filename") else []
            if item.get("originalSource"):
                # A source URL without an extension (".../600x400/png") says nothing to compare.
                wanted += [ext for ext in [extension_of(filename_from_url(item["originalSource"]))] if ext]
            if any(ext != original for ext in wanted):
                return [
                    user_error(
                        ["files"],
                        "The filename extension provided must match the original filename.",
                        "INVALID_FILENAME_EXTENSION",
                    )
                ]
        for item in files:
            if any(self.product_by_gid(ref) is None for ref in item.get("referencesToRemove") or ()):
                return [user_error(["files"], "The reference target does not exist", "REFERENCE_TARGET_DOES_NOT_EXIST")]
        return []

    def product_update(
        self,
        product_input: dict[str, Any] | None,
        media_inputs: list[dict[str, Any]] | None,
        bases: tuple[str, ...],
        now: float,
    ) -> dict[str, Any]:
        product = self.product_by_gid((product_input or {}).get("id"))
        if product is None:  # no capture: Shopify's usual wording for a missing product
            return {"product": None, "userErrors": [user_error(["id"], "Product does not exist")]}
        errors = self._product_update_errors(product_input or {}, media_inputs or []) + media_alt_errors(
            self.profile, media_inputs or []
        )
        if errors:
            return {"product": product, "userErrors": errors}
        sources = [m["originalSource"] for m in media_inputs or []]
        fetched = self.fetch_sources(sources, bases) if sources else {}
        now = max(now, self.clock())
        self.settle(now)
        if product.id not in self.products:
            return {"product": None, "userErrors": [user_error(["id"], "Product does not exist")]}
        if (product_input or {}).get("title") is not None:
            self._set_title(product, (product_input or {})["title"])
        if (product_input or {}).get("tags") is not None:
            product.tags = _clean_tags((product_input or {})["tags"])
        for item in media_inputs or []:
            media = self.create_media(
                product,
                source_url=item["originalSource"],
                alt=item.get("alt") or "",
                fetched=fetched[item["originalSource"]],
                now=now,
            )
            self._record_write("productUpdate", media, fetched[item["originalSource"]], now)
        self.touch(product, now)
        return {"product": product, "userErrors": []}

    @staticmethod
    def _product_update_errors(
        product_input: dict[str, Any], media_inputs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        errors = []
        title = product_input.get("title")
        if title is not None and not title.strip():  # no capture: Shopify's usual wording
            errors.append(user_error(["title"], "Title can't be blank"))
        for index, item in enumerate(media_inputs):
            if not is_valid_source_url(item["originalSource"]):
                errors.append(user_error(["media", str(index), "originalSource"], "Image URL is invalid"))
        return errors

    def product_reorder_media(self, product_gid: str, moves: list[dict[str, Any]], now: float) -> dict[str, Any]:
        product = self.product_by_gid(product_gid)
        if product is None:  # no capture for the error branches of this mutation: real codes, plain wording
            return {
                "job": None,
                "mediaUserErrors": [user_error(["id"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")],
            }
        errors = []
        parsed: list[tuple[int, int]] = []
        for index, move in enumerate(moves):
            media = self.media_by_gid(move["id"])
            if media is None and self.profile.silent_missing_reorder:
                continue  # recorded: a job and no userError for a media that is gone; the move does nothing
            if media is None:
                errors.append(user_error(["moves", str(index), "id"], "Media does not exist", "MEDIA_DOES_NOT_EXIST"))
                continue
            if media.id not in product.media_ids:
                errors.append(
                    user_error(
                        ["moves", str(index), "id"],
                        "Media does not exist on the given product",
                        "MEDIA_DOES_NOT_EXIST_ON_PRODUCT",
                    )
                )
                continue
            try:
                position = int(move["newPosition"])
                if position < 0:
                    raise ValueError
            except (TypeError, ValueError):
                errors.append(user_error(["moves", str(index), "newPosition"], "Position is invalid", "INVALID"))
                continue
            parsed.append((media.id, position))
        if errors:
            return {"job": None, "mediaUserErrors": errors}
        job = ReorderJob(
            id=str(uuid.uuid4()), product_id=product.id, moves=parsed, due_at=now + self.processing_seconds
        )
        self.jobs[job.id] = job
        self._pending_jobs.add(job.id)
        if now >= job.due_at:
            self._apply_reorder(job)
        return {"job": job, "mediaUserErrors": []}

    def _apply_reorder(self, job: ReorderJob) -> None:
        job.applied = True
        product = self.products.get(job.product_id)
        if product is None:
            return
        for media_id, position in job.moves:  # applied one after the other, like Shopify
            if media_id in product.media_ids:
                product.media_ids.remove(media_id)
                product.media_ids.insert(min(position, len(product.media_ids)), media_id)
        self.touch(product, job.due_at)

    def metafields_set(self, inputs: list[dict[str, Any]], now: float) -> dict[str, Any]:
        if len(inputs) > MAX_METAFIELDS_PER_CALL:
            return {
                "metafields": None,
                "userErrors": [
                    user_error(
                        ["metafields"],
                        f"Exceeded the maximum metafields input limit of {MAX_METAFIELDS_PER_CALL}.",
                        "LESS_THAN_OR_EQUAL_TO",
                        elementIndex=None,
                    )
                ],
            }
        errors = []
        for index, item in enumerate(inputs):
            where = ["metafields", str(index)]
            owner = self._metafield_owner(item["ownerId"])
            if owner is None:  # no capture
                errors.append(user_error([*where, "ownerId"], "Owner does not exist.", "INVALID", elementIndex=None))
                continue
            existing = owner[1].get((self.namespace(item.get("namespace")), item["key"]))
            digest = item.get("compareDigest")
            # [DOC] metafieldsSet: compareDigest given must match the stored value's; given as null,
            # "the metafield doesn't exist yet" is the guarantee (a create-only write); left out, no
            # guarantee. The answer to a null digest over an existing metafield is not captured:
            # [ASSUME] the same STALE_OBJECT as a stale digest.
            stale = (
                (existing is None or existing.compare_digest != digest)
                if digest is not None
                else ("compareDigest" in item and existing is not None)
            )
            if stale:
                errors.append(
                    user_error(
                        where,
                        "The resource has been updated since it was loaded. Try again with an updated "
                        "`compareDigest` value.",
                        "STALE_OBJECT",
                        elementIndex=None,
                    )
                )
                continue
            kind = item.get("type") or (existing.type if existing else None)
            if not kind:  # no capture
                errors.append(user_error([*where, "type"], "Type can't be blank.", "BLANK", elementIndex=None))
                continue
            problem = _value_problem(kind, item["value"])
            if problem:  # no capture
                errors.append(user_error([*where, "value"], problem, "INVALID_VALUE", elementIndex=None))
        if errors:
            return {"metafields": [], "userErrors": errors}
        written = []
        for item in inputs:
            owner = self._metafield_owner(item["ownerId"])
            assert owner is not None
            product, metafields = owner
            namespace = self.namespace(item.get("namespace"))
            existing = metafields.get((namespace, item["key"]))
            if existing is None:
                existing = Metafield(
                    id=self._new_id("metafield"),
                    owner_id=product.id if product else SHOP_NUMERIC_ID,
                    namespace=namespace,
                    key=item["key"],
                    type=item["type"],
                    value=item["value"],
                    created_at=now,
                    updated_at=now,
                )
                metafields[(namespace, item["key"])] = existing
            else:
                existing.value = item["value"]
                existing.type = item.get("type") or existing.type
                existing.revision += 1
                existing.updated_at = now
            if product is not None:
                self.touch(product, now)
            written.append(existing)
        return {"metafields": written, "userErrors": []}

    def _metafield_owner(self, owner_id: str) -> tuple[Product | None, dict[tuple[str, str], Metafield]] | None:
        """The product (None for the shop itself) and the metafields of a metafieldsSet `ownerId`."""
        if owner_id == gid("Shop", SHOP_NUMERIC_ID):
            return None, self.shop_metafields
        product = self.product_by_gid(owner_id)
        return None if product is None else (product, product.metafields)

    def file_delete(self, file_ids: list[str], now: float) -> dict[str, Any]:
        found: list[Media] = []
        missing: list[str] = []
        for value in file_ids:
            parsed = parse_gid(value)
            media = self.media.get(parsed[1]) if parsed else None  # any type prefix, as Shopify does
            if media is None:
                missing.append(value)
            elif media not in found:
                found.append(media)
        if missing:  # wording as fileUpdate's FILE_DOES_NOT_EXIST (captured); field path ours
            return {
                "deletedFileIds": [],
                "userErrors": [
                    user_error(["fileIds"], f"File id {json.dumps(missing)} does not exist.", "FILE_DOES_NOT_EXIST")
                ],
            }
        for media in found:
            self.remove_media(media, now)
        log.info("media_deleted", media_ids=[m.id for m in found])
        return {"deletedFileIds": [m.gid for m in found], "userErrors": []}

    # ------------------------------------------------------------------ admin API

    def _new_product(self, title: str, tags: Iterable[str], now: float) -> Product:
        product = Product(
            id=self._new_id("product"), title=title, tags=_clean_tags(tags), created_at=now, updated_at=now
        )
        self.products[product.id] = product
        self.orders.added(product)
        self.emit("PRODUCTS_CREATE", product.id)
        return product

    def add_product(self, title: str, tags: Iterable[str], images: Iterable[dict[str, Any]], now: float) -> Product:
        product = self._new_product(title, tags, now)
        for image in images:
            self.add_image(product, image, now)
        log.info("product_added", product_id=product.id, media=len(product.media_ids))
        return product

    def add_image(self, product: Product, image: dict[str, Any], now: float) -> Media:
        """An image as a merchant would have added it: READY at once unless `processing` is true."""
        filename = str(image.get("filename") or "image.jpg")
        if image.get("data") is not None:
            data = bytes(image["data"])
        elif image.get("data_base64"):
            data = base64.b64decode(image["data_base64"])
        else:
            data = product_photo(self._photo_seed + product.id % 997, format_for_filename(filename))
            self._photo_seed += 1
        return self.create_media(
            product,
            source_url=f"https://merchant-upload.invalid/{quote(filename)}",
            alt=str(image.get("alt") or ""),
            fetched=Fetched(data=data),
            now=now,
            filename=filename,
            immediately_ready=not image.get("processing", False),
        )

    def seed(
        self, products: int, images_per_product: int, seed: int, now: float, spread_seconds: float = 0.0
    ) -> list[Product]:
        """`products` products with generated titles, tags and READY photos, deterministic for
        `seed`. A photo is kept as its recipe (`GeneratedImage`: photo seed, format, 640 x 640)
        and drawn only when its bytes are asked for, so 100,000 products with 300,000 media seed
        in seconds; its originalSource `fileSize` is null (Shopify's field is nullable; knowing
        it would mean drawing every photo). Products are created (and updated) at `now`, or spread
        evenly over the `spread_seconds` before it, oldest first (a catalog an `updated_at` range
        can split)."""
        rng = random.Random(seed)
        shared: dict[str, str] = {}  # one copy of each recurring title and alt text
        sources: dict[str, str] = {}  # file name -> its (recurring) source URL
        formats = {ext: format_for_filename(f"x.{ext}") for ext in _EXTENSIONS}
        created = []
        for k in range(products):
            noun = rng.choice(_NOUNS)
            title = f"{rng.choice(_ADJECTIVES)} {noun}"
            title = shared.setdefault(title, title)
            slug = title.lower().replace(" ", "-")
            images = []
            for j in range(images_per_product):
                # cum_weights of weights 6, 3, 1: the same draw as `weights=[6, 3, 1]`, summed once
                ext = rng.choices(_EXTENSIONS, cum_weights=_EXTENSION_CUM_WEIGHTS)[0]
                recipe = GeneratedImage(rng.randrange(1_000_000), formats[ext])
                images.append((f"{slug}-{j + 1}.{ext}", f"{title}, view {j + 1}", recipe))
            tags = rng.sample(_TAGS, rng.randint(0, 3))
            at = now - spread_seconds * (products - k) / products if spread_seconds > 0 else now
            product = self._new_product(title, tags, at)
            version = self._next_version(None, at)
            for filename, alt, recipe in images:
                self._add_seeded_media(product, filename, shared.setdefault(alt, alt), recipe, at, version, sources)
            if images:
                self.emit("PRODUCTS_UPDATE", product.id)
            created.append(product)
        log.info("catalog_seeded", products=products, media=products * images_per_product, seed=seed)
        return created

    def _add_seeded_media(
        self,
        product: Product,
        filename: str,
        alt: str,
        recipe: GeneratedImage,
        now: float,
        version: int,
        sources: dict[str, str],
    ) -> Media:
        """A merchant's image already processed (READY, or FAILED when a media failure was
        injected), as `create_media(..., immediately_ready=True)` makes it, kept as a recipe."""
        injected = self.faults.take_media_failure()
        outcome: Image | MediaFailure = failure(injected, "injected by the sandbox") if injected else recipe
        source_url = sources.get(filename)
        if source_url is None:
            source_url = sources[filename] = f"https://merchant-upload.invalid/{quote(filename)}"
        unique = filename if filename not in self.filenames else self._unique_filename(filename, outcome)
        media = Media(
            id=self._new_id("media"),
            product_id=product.id,
            filename=unique,
            alt=alt,
            created_at=now,
            updated_at=now,
            source_url=source_url,
            source_size=None,
        )
        if isinstance(outcome, MediaFailure):
            media.failure = outcome
        else:
            media.ready, media.ready_version = outcome, version
        self.media[media.id] = media
        self.filenames[media.filename] = media.id
        product.media_ids.append(media.id)
        return media

    def add_variant(self, product: Product, title: str, media: Iterable[Media], now: float) -> Variant:
        """A variant linked to some of the product's media, as the merchant sets it up in the admin."""
        linked = [m.id for m in media]
        if any(i not in product.media_ids for i in linked):
            raise SandboxError("a variant can only be linked to its own product's media")
        variant = Variant(id=self._new_id("variant"), title=title, media_ids=linked)
        product.variants.append(variant)
        self.touch(product, now)
        return variant

    def set_alt(self, media: Media, alt: str, now: float) -> None:
        """The merchant edits a picture's alt text: same file, same version."""
        media.alt = alt
        media.updated_at = max(media.updated_at, now)
        if media.product_id in self.products:
            self.touch(self.products[media.product_id], now)

    def update_product(self, product: Product, title: str | None, tags: Iterable[str] | None, now: float) -> None:
        if title is not None:
            self._set_title(product, title)
        if tags is not None:
            product.tags = _clean_tags(tags)
        self.touch(product, now)

    def delete_product(self, product: Product, now: float) -> None:
        for media in self.product_media(product):
            self.remove_media(media, now)
        self.orders.removed(product)
        del self.products[product.id]

    def media_json(self, media: Media, base_url: str, now: float, *, digest: bool = True) -> dict[str, Any]:
        """The admin API's view of a media. `digest=False` leaves out "sha256", which draws a
        seeded photo to hash it (width, height and MIME type come from its recipe)."""
        p = self.processing_seconds
        shown = lifecycle.visible_image(media, now, p)
        fail = lifecycle.media_failure(media, now, p)
        current = media.ready
        answer = {
            "id": media.gid,
            "product_id": gid("Product", media.product_id) if media.product_id is not None else None,
            "position": self.position_of(media),
            "status": lifecycle.media_status(media, now, p),
            "file_status": lifecycle.file_status(media, now, p),
            "alt": media.alt,
            "filename": media.filename,
            "url": self.cdn_url(base_url, media, shown[1]) if shown else None,
            "sha256": current.sha256 if current else None,
            "mime_type": current.mime_type if current else None,
            "width": current.width if current else None,
            "height": current.height if current else None,
            "version": media.ready_version,
            "source_url": media.source_url,
            "errors": [{"code": fail.code, "message": fail.message, "details": fail.details}] if fail else [],
            "created_at": iso(media.created_at),
            "updated_at": iso(media.updated_at),
        }
        if not digest:
            del answer["sha256"]
        return answer

    def product_json(self, product: Product, base_url: str, now: float, *, digest: bool = True) -> dict[str, Any]:
        return {
            "id": product.gid,
            "legacy_id": str(product.id),
            "title": product.title,
            "tags": list(product.tags),
            "created_at": iso(product.created_at),
            "updated_at": iso(product.updated_at),
            "media": [self.media_json(m, base_url, now, digest=digest) for m in self.product_media(product)],
            "variants": [
                {"id": v.gid, "title": v.title, "media_ids": [gid("MediaImage", i) for i in v.media_ids]}
                for v in product.variants
            ],
            "metafields": {
                f"{m.namespace}.{m.key}": {
                    "id": m.gid,
                    "namespace": m.namespace,
                    "key": m.key,
                    "type": m.type,
                    "value": m.value,
                    "compare_digest": m.compare_digest,
                    "updated_at": iso(m.updated_at),
                }
                for m in product.metafields.values()
            },
        }


def namespace_for(value: str | None) -> str:
    """Metafield namespace as stored: given namespaces (including "$app:…") as they are; an omitted
    one is the app's own, which Shopify shows as "app--<app id>" (metafields-set-over-limit-parity.json)."""
    return value if value else f"app--{APP_ID}"


def _value_problem(kind: str, value: str) -> str | None:
    """Why `value` is not valid for metafield type `kind` (the types retouch may use), else None."""
    if kind == "json":
        try:
            json.loads(value)
        except ValueError:
            return "Value is invalid JSON."
    elif kind == "number_integer" and not value.lstrip("-").isdigit():
        return "Value must be an integer."
    elif kind == "boolean" and value not in ("true", "false"):
        return "Value must be true or false."
    return None


def _clean_tags(tags: Iterable[str]) -> list[str]:
    """Shopify trims tags, drops empty ones and duplicates (case-insensitively), and sorts them."""
    seen: dict[str, str] = {}
    for tag in tags:
        text = str(tag).strip()
        if text and text.lower() not in seen:
            seen[text.lower()] = text
    return sorted(seen.values(), key=str.lower)


_ADJECTIVES = [
    "Ceramic",
    "Glass",
    "Linen",
    "Walnut",
    "Brass",
    "Stoneware",
    "Recycled",
    "Matte",
    "Speckled",
    "Handmade",
    "Amber",
    "Slate",
    "Olive",
    "Copper",
    "Frosted",
]
_NOUNS = [
    "Mug",
    "Water Bottle",
    "Vase",
    "Candle Jar",
    "Gift Box",
    "Teapot",
    "Planter",
    "Bowl",
    "Carafe",
    "Soap Dispenser",
    "Lantern",
    "Storage Tin",
    "Desk Lamp",
    "Bath Bomb",
    "Spice Jar",
]
_EXTENSIONS = ("jpg", "png", "webp")
_EXTENSION_CUM_WEIGHTS = (6, 9, 10)
_TAGS = ["kitchen", "gift", "new", "sale", "home", "eco", "bestseller", "summer"]
