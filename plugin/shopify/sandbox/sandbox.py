"""`ShopifySandbox`: one emulated shop — its state, its Admin GraphQL endpoint, its admin API.

Every admin method takes the store lock for its whole call and returns plain dicts (the same JSON
the `/_sandbox/...` routes answer), so tests, the demo and the HTTP admin API share one behaviour.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette

from ...serve import RunningServer, serve_in_thread
from .app import build_app
from .bulk import SEVEN_DAYS, BulkSettings
from .graphql_api import GraphQLService
from .model import Media, Product, parse_gid
from .oauth import DEFAULT_SCOPES, TokenIssuer
from .paging import PAGINATION_CAP
from .profiles import profile_named
from .sources import Fetched
from .store import SandboxError, Store
from .webhooks import Delivery, WebhookSender, new_delivery, product_payload

# The app's client secret Shopify signs webhooks with (X-Shopify-Hmac-Sha256); a test sets its own.
DEFAULT_WEBHOOK_SECRET = "shpss_sandbox_app_secret"


class ShopifySandbox:
    """A loopback emulator of the parts of Shopify's Admin GraphQL API retouch uses.

    `processing_seconds`: how long new or replaced media take to become READY (UPLOADED for the
    first half, PROCESSING for the second). `bucket_size`/`restore_rate`: the cost bucket.
    `clock`: epoch seconds, for every timestamp, the media lifecycle, jobs and the bucket.
    `webhook_secret`: the app's client secret, which signs the product webhooks it delivers.
    Bulk operations (bulk.py): CREATED for `bulk_created_seconds`, then RUNNING for
    `bulk_seconds_per_object` per object; CANCELING for `bulk_cancel_seconds`; results expire
    `bulk_expiry_seconds` after completion (Shopify: 7 days); `bulk_any_order_seed`: shuffle the
    lines of results of `groupObjects: false` (children need not follow their parent).
    `pagination_cap`: how deep a connection may be paged (Shopify's 25,000; a test of the cap can
    set a smaller one rather than seed 25,000 products). Past it a page is an error (paging.py).
    Access: `access_token`, a static token (apps made in the admin; None: none accepted), and/or
    `client_id` + `client_secret`, the app's credentials for the client credentials grant
    (oauth.py), whose tokens live `token_lifetime` seconds of `clock` and carry `scopes`.
    `profile`: "default", or "production" (answers as the real Shopify was recorded to where it is
    less kind: partial fileUpdate, silent reorder, search lag, webhook address rules; profiles.py).
    `search_lag_seconds`: how long a change takes to reach the search index (production: 2 s).
    """

    def __init__(
        self,
        *,
        access_token: str | None = "shpat_sandbox_token",
        client_id: str | None = None,
        client_secret: str | None = None,
        token_lifetime: float = 86399.0,
        scopes: str = DEFAULT_SCOPES,
        api_version: str = "2026-07",
        shop_name: str = "retouch-sandbox",
        bucket_size: float = 2000,
        restore_rate: float = 100,
        processing_seconds: float = 0.3,
        clock: Callable[[], float] = time.time,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0),
        bulk_created_seconds: float = 0.2,
        bulk_seconds_per_object: float = 0.0001,
        bulk_cancel_seconds: float = 0.2,
        bulk_expiry_seconds: float = SEVEN_DAYS,
        bulk_any_order_seed: int | None = None,
        pagination_cap: int = PAGINATION_CAP,
        profile: str = "default",
        search_lag_seconds: float | None = None,
    ) -> None:
        self._access_token = access_token
        self.api_version = api_version
        self.shop_name = shop_name
        self.base_url: str | None = None
        self._store = Store(
            shop_name=shop_name,
            clock=clock,
            processing_seconds=processing_seconds,
            bucket_size=bucket_size,
            restore_rate=restore_rate,
            bulk=BulkSettings(
                created_seconds=bulk_created_seconds,
                seconds_per_object=bulk_seconds_per_object,
                cancel_seconds=bulk_cancel_seconds,
                expiry_seconds=bulk_expiry_seconds,
                any_order_seed=bulk_any_order_seed,
            ),
            pagination_cap=pagination_cap,
        )
        self._store.profile = profile_named(profile, search_lag_seconds=search_lag_seconds)
        self._store.search_delays = {}
        self._graphql = GraphQLService(self._store)
        self.tokens = TokenIssuer(
            client_id=client_id, client_secret=client_secret, clock=clock, lifetime=token_lifetime, scopes=scopes
        )
        self._app: Starlette | None = None
        self._server: RunningServer | None = None
        self._webhooks = WebhookSender(
            secret=webhook_secret,
            shop_domain=f"{shop_name}.myshopify.com",
            api_version=api_version,
            build=self._deliveries,
            faults=self._store.faults.book,
            retry_delays=webhook_retry_delays,
        )
        self._store.on_event = self._webhooks.enqueue

    @property
    def profile(self) -> str:
        return self._store.profile.name

    @property
    def search_lag_seconds(self) -> float:
        """How long a change takes to reach the search index (`products(query:)`)."""
        return self._store.profile.search_lag_seconds

    def __repr__(self) -> str:  # never shows the token
        return f"ShopifySandbox(shop_name={self.shop_name!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ serving

    @property
    def app(self) -> Starlette:
        if self._app is None:
            self._app = build_app(self)
        return self._app

    def start(self, port: int = 0) -> RunningServer:
        """Serve on 127.0.0.1:`port` (0: any free port) from a background thread."""
        self._server = serve_in_thread(self.app, port=port)
        self.base_url = self._server.url
        return self._server

    def stop(self) -> None:
        self._webhooks.close()
        if self._server is not None:
            self._server.stop()
            self._server = None

    # ------------------------------------------------------------------ webhooks

    def _deliveries(self, topic: str, product_id: int) -> list[Delivery]:
        """The webhook deliveries of one announced event, built now (so a burst of changes goes
        out as one body with the latest state); none for a product deleted meanwhile."""
        store = self._store
        with store.lock:
            store.pending_events.discard((topic, product_id))
            product = store.products.get(product_id)
            if product is None:
                return []
            now = store.clock()
            store.settle(now)
            body = product_payload(
                store.product_json(product, self._url(), now), lambda media_gid: _number(media_gid) or 0
            )
            return [new_delivery(s, body, now) for s in store.subscriptions.for_topic(topic)]

    def webhook_subscriptions(self) -> list[dict[str, Any]]:
        with self._store.lock:
            return [{"id": s.gid, "topic": s.topic, "uri": s.uri} for s in self._store.subscriptions.by_id.values()]

    def webhook_stats(self) -> dict[str, int]:
        """Deliveries answered 2xx, failed attempts, deliveries given up."""
        return self._webhooks.stats()

    @property
    def shop_url(self) -> str:
        """What a store owner puts in `[shop] url`, e.g. "http://127.0.0.1:8765"."""
        if self.base_url is None:
            raise RuntimeError("the sandbox is not started: call start() first")
        return self.base_url

    @property
    def graphql_path(self) -> str:
        return f"/admin/api/{self.api_version}/graphql.json"

    def token_matches(self, presented: str | None) -> bool:
        if presented is None:
            return False
        if self._access_token is not None and hmac.compare_digest(presented.encode(), self._access_token.encode()):
            return True
        return self.tokens.valid(presented)

    @property
    def graphql(self) -> GraphQLService:
        return self._graphql

    @property
    def store(self) -> Store:
        """The raw state (hold `store.lock` while touching it); prefer the methods below."""
        return self._store

    def _url(self) -> str:
        return self.base_url or "http://127.0.0.1"

    def _product(self, legacy_id: int | str) -> Product:
        number = _number(legacy_id)
        product = self._store.products.get(number) if number is not None else None
        if product is None:
            raise SandboxError(f"no product {legacy_id}")
        return product

    def _media(self, media_id: int | str) -> Media:
        number = _number(media_id)
        media = self._store.media.get(number) if number is not None else None
        if media is None:
            raise SandboxError(f"no media {media_id}")
        return media

    # ------------------------------------------------------------------ admin API

    def add_product(
        self, title: str, tags: Iterable[str] = (), images: Iterable[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        """A product with images ({"filename", "alt", "data_base64" or "data", "processing"}); images
        without data get a generated product photo in the format their extension names."""
        store = self._store
        with store.lock:
            now = store.clock()
            product = store.add_product(title, tags, list(images), now)
            return store.product_json(product, self._url(), now)

    def seed(
        self, products: int = 10, images_per_product: int = 1, seed: int = 0, *, spread_seconds: float = 0.0
    ) -> list[dict[str, Any]]:
        """`products` products with generated titles, tags and photos (deterministic for a seed),
        as product JSON (whose "sha256" draws each photo: for a large catalog use `seed_catalog`).
        `spread_seconds`: see `Store.seed`."""
        store = self._store
        with store.lock:
            now = store.clock()
            created = store.seed(products, images_per_product, seed, now, spread_seconds)
            return [store.product_json(p, self._url(), now) for p in created]

    def seed_catalog(
        self, products: int, images_per_product: int = 3, seed: int = 0, *, spread_seconds: float = 0.0
    ) -> dict[str, Any]:
        """`seed` for large catalogs: answers only how many products and media the shop now holds
        and the legacy ids of the first and last product created (no photo is drawn)."""
        store = self._store
        with store.lock:
            created = store.seed(products, images_per_product, seed, store.clock(), spread_seconds)
            return {
                "products": len(store.products),
                "media": len(store.media),
                "first_id": created[0].id if created else None,
                "last_id": created[-1].id if created else None,
            }

    def add_image(
        self,
        legacy_id: int | str,
        filename: str = "image.jpg",
        alt: str = "",
        *,
        data: bytes | None = None,
        data_base64: str | None = None,
        processing: bool = False,
    ) -> dict[str, Any]:
        """Append an image to a product, as the merchant would (bumps the product's updatedAt)."""
        store = self._store
        with store.lock:
            now = store.clock()
            media = store.add_image(
                self._product(legacy_id),
                {"filename": filename, "alt": alt, "data": data, "data_base64": data_base64, "processing": processing},
                now,
            )
            return store.media_json(media, self._url(), now)

    def update_product(
        self, legacy_id: int | str, *, title: str | None = None, tags: Iterable[str] | None = None
    ) -> dict[str, Any]:
        store = self._store
        with store.lock:
            now = store.clock()
            product = self._product(legacy_id)
            store.update_product(product, title, tags, now)
            return store.product_json(product, self._url(), now)

    def set_product_facts(
        self,
        legacy_id: int | str,
        *,
        product_type: str | None = None,
        vendor: str | None = None,
        status: str | None = None,
    ) -> None:
        """What [[rules]] match on besides tags, as the merchant sets it in the admin (bumps updatedAt)."""
        store = self._store
        with store.lock:
            product = self._product(legacy_id)
            if status is not None and status not in ("ACTIVE", "ARCHIVED", "DRAFT", "UNLISTED"):
                raise SandboxError(f"status {status!r} is not a ProductStatus")
            product.product_type = product.product_type if product_type is None else product_type
            product.vendor = product.vendor if vendor is None else vendor
            product.status = product.status if status is None else status
            store.touch(product, store.clock())

    def add_collection(
        self, title: str, handle: str | None = None, products: Iterable[int | str] = ()
    ) -> dict[str, Any]:
        """A custom collection holding these products (legacy ids); bumps their updatedAt, as adding does."""
        from .model import Collection
        from .store import FIRST_COLLECTION_ID  # noqa: F401  (the numbering starts there)

        store = self._store
        with store.lock:
            collection = Collection(store._new_id("collection"), handle or title.lower().replace(" ", "-"), title)
            store.collections[collection.id] = collection
            for legacy_id in products:
                product = self._product(legacy_id)
                product.collection_ids.append(collection.id)
                store.touch(product, store.clock())
            return {"id": collection.gid, "legacy_id": collection.id, "handle": collection.handle, "title": title}

    def delete_product(self, legacy_id: int | str) -> None:
        store = self._store
        with store.lock:
            store.delete_product(self._product(legacy_id), store.clock())

    def delete_media(self, media_id: int | str) -> None:
        store = self._store
        with store.lock:
            store.remove_media(self._media(media_id), store.clock())

    def replace_image(self, media_id: int | str, *, data: bytes) -> dict[str, Any]:
        """Put another picture into a media, as the merchant's "replace" in the admin does: same id,
        position, alt and file name, a new version at a new CDN URL; READY at once."""
        store = self._store
        with store.lock:
            now = store.clock()
            media = self._media(media_id)
            store.replace_source(
                media,
                source_url="https://merchant-upload.invalid/replaced",
                fetched=Fetched(data=data),
                now=now - store.processing_seconds,
            )
            store.settle(now)
            if media.product_id in store.products:
                store.touch(store.products[media.product_id], now)
            return store.media_json(media, self._url(), now)

    def reorder_media(self, legacy_id: int | str, media_id: int | str, position: int) -> dict[str, Any]:
        """Move one media to `position` (0-based), as the merchant's drag and drop does; at once."""
        store = self._store
        with store.lock:
            now = store.clock()
            product, media = self._product(legacy_id), self._media(media_id)
            if media.id not in product.media_ids:
                raise SandboxError(f"media {media_id} is not on product {legacy_id}")
            product.media_ids.remove(media.id)
            product.media_ids.insert(min(max(position, 0), len(product.media_ids)), media.id)
            store.touch(product, now)
            return store.product_json(product, self._url(), now)

    def add_variant(self, legacy_id: int | str, title: str, media_ids: Iterable[int | str] = ()) -> dict[str, Any]:
        """A variant of the product linked to some of its media (the admin's "add image to variant")."""
        store = self._store
        with store.lock:
            now = store.clock()
            product = self._product(legacy_id)
            store.add_variant(product, title, [self._media(m) for m in media_ids], now)
            return store.product_json(product, self._url(), now)

    def set_alt(self, media_id: int | str, alt: str) -> dict[str, Any]:
        """Edit a picture's alt text, as the merchant does in the admin (bumps the product's updatedAt)."""
        store = self._store
        with store.lock:
            now = store.clock()
            media = self._media(media_id)
            store.set_alt(media, alt, now)
            return store.media_json(media, self._url(), now)

    def delay_search_index(self, legacy_id: int | str, seconds: float) -> None:
        """The search index takes `seconds` to catch up with this product's latest change (and the
        ones after it): `products(query:)` misses it until then. The real index lags unevenly."""
        with self._store.lock:
            self._store.search_delays[self._product(legacy_id).id] = seconds  # type: ignore[index]  # a dict since __init__

    def reset(self) -> None:
        """Forget every product, media, fault and counter (the server keeps running): one test
        example after another on one sandbox."""
        with self._store.lock:
            self._store.reset()

    def product(self, legacy_id: int | str) -> dict[str, Any]:
        store = self._store
        with store.lock:
            now = store.clock()
            store.settle(now)
            return store.product_json(self._product(legacy_id), self._url(), now)

    def products(self) -> list[dict[str, Any]]:
        store = self._store
        with store.lock:
            now = store.clock()
            store.settle(now)
            return [store.product_json(p, self._url(), now) for p in store.products.values()]

    def media_bytes(self, media_id: int | str) -> bytes | None:
        """The bytes the CDN currently serves for a media (None before its first READY)."""
        store = self._store
        with store.lock:
            store.settle(store.clock())
            media = self._media(media_id)
            return media.ready.data if media.ready else None

    def stats(self) -> dict[str, Any]:
        with self._store.lock:
            return self._store.stats.as_dict()

    def writes(self) -> list[dict[str, Any]]:
        """Every picture a client put on a product, in order: {operation (fileUpdate, or productUpdate adding media),
        media_id, product_id, at (the sandbox's clock), sha256 of the bytes it fetched}."""
        with self._store.lock:
            return [dict(write) for write in self._store.writes]

    def add_fault(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: float | None = None,
        operation: str | None = None,
        throttle: bool = False,
        fail_media_processing: int = 0,
        code: str | None = None,
        mode: str | None = None,
        seconds: float = 0.0,
        skip: int = 0,
        probability: float = 1.0,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Inject faults (see `faults.FaultPlan.add`); returns the faults now pending. Bulk
        operations: `endpoint="bulk"` with mode "fail"/"partial" (`code` INTERNAL_SERVER_ERROR,
        TIMEOUT, ACCESS_DENIED) or "expired" (`seconds`); `endpoint="bulk_download"` with a
        `status` or mode "truncated" (cut mid-stream), "reset", "hang", ..."""
        with self._store.lock:
            self._store.faults.add(
                status=status,
                count=count,
                retry_after=retry_after,
                operation=operation,
                throttle=throttle,
                fail_media_processing=fail_media_processing,
                code=code,
                mode=mode,
                seconds=seconds,
                skip=skip,
                probability=probability,
                endpoint=endpoint,
            )
            return self._store.faults.as_dict()

    def faults_served(self) -> dict[str, int]:
        """Faults injected so far, by kind ("429", "reset", "throttled", "fail", ...)."""
        return self._store.faults.book.served()

    def reseed_faults(self, seed: int) -> None:
        """Make the chances of probabilistic faults repeat from `seed`."""
        self._store.faults.book.reseed(seed)

    def faults(self) -> dict[str, Any]:
        with self._store.lock:
            return self._store.faults.as_dict()

    def clear_faults(self) -> None:
        with self._store.lock:
            self._store.faults.clear()


def _number(value: int | str) -> int | None:
    """The numeric id in 123, "123" or "gid://shopify/<Type>/123"."""
    text = str(value)
    if text.isdigit():
        return int(text)
    parsed = parse_gid(text)
    return parsed[1] if parsed else None
