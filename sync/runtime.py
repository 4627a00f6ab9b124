"""Build the pipeline's context from settings, and drive it until a set of images settles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from retouch.plugin.providers.base import Provider, ProviderConfig
from retouch.plugin.providers.fetch import ResultFetcher
from retouch.plugin.shopify.auth import ClientCredentials, StaticToken, TokenSource
from retouch.plugin.shopify.client import ShopifyClient
from retouch.storage.backups import BackupStore
from retouch.storage.models import WORK_STATES, ImageState
from retouch.storage.store import Store

from .config import Settings
from .logs import REDACTOR
from .pipeline import Context
from .pipeline.order import one_shot_cycle


def shopify_tokens(settings: Settings) -> TokenSource:
    """The static token, or a fresh client-credentials source: every process asks for its own token,
    kept in memory only; each one issued joins the log redaction list the moment it arrives."""
    if settings.shop_client_secret is None or not settings.shop.client_id:
        # load_settings guarantees one of the two ways; a Settings built otherwise fails here, plainly.
        return StaticToken(settings.shop_token.get_secret_value() if settings.shop_token else "")
    return ClientCredentials(
        settings.shop.url,
        settings.shop.client_id,
        settings.shop_client_secret.get_secret_value(),
        timeout=settings.shop.timeout,
        on_token=lambda token: REDACTOR.add([token]),
    )


def token_health(tokens: TokenSource) -> dict | None:
    """{"ok", "detail"} for /healthz: whether a token is in hand and when it expires, or why the
    last grant failed; None for a static token (nothing to renew). Never the token."""
    if not isinstance(tokens, ClientCredentials):
        return None
    state = tokens.state()
    return {"ok": state.ok, "detail": state.detail}


def shopify_client(settings: Settings) -> ShopifyClient:
    return ShopifyClient(
        settings.shop.url, shopify_tokens(settings), settings.shop.api_version, timeout=settings.shop.timeout
    )


def provider_client(settings: Settings) -> Provider:
    """The configured provider, built by its plugin from its own table."""
    return settings.plugin.create(
        ProviderConfig(
            api_key=settings.provider_key.get_secret_value(),
            base_url=settings.provider_base_url,
            timeout=settings.provider.timeout,
            settings=settings.provider_table,
            public_url=settings.public_url,
        )
    )


@asynccontextmanager
async def open_context(
    settings: Settings, store: Store | None = None, busy_timeout: float | None = None
) -> AsyncIterator[Context]:
    """`busy_timeout`: how long a statement waits for another process's write lock (the Store's default if None)."""
    own_store = store is None
    if store is None:
        store = Store(settings.database_url) if busy_timeout is None else Store(settings.database_url, busy_timeout)
    shopify = shopify_client(settings)
    provider = provider_client(settings)
    ctx = Context(
        settings=settings,
        store=store,
        backups=BackupStore(settings.backup_dir),
        shopify=shopify,
        provider=provider,
        results=ResultFetcher(timeout=settings.provider.timeout),
    )
    try:
        yield ctx
    finally:
        # The clients in use now: a reload may have replaced them, and kept retired providers.
        clients: list[ShopifyClient | Provider] = [
            shopify,
            ctx.shopify,
            provider,
            ctx.provider,
            *(view.provider for view in ctx.retired),
        ]
        for client in {id(c): c for c in clients}.values():
            await client.aclose()
        await ctx.results.aclose()
        if own_store:
            store.close()


async def work_cycle(ctx: Context) -> None:
    """One pass of the work steps, in the order that frees quota and finishes images first
    (pipeline/order.py `ONE_SHOT_CYCLE`)."""
    await one_shot_cycle(ctx)


def pending_among(ctx: Context, image_ids: Iterable[int] | None) -> int:
    """How many of these images (all, when None) are still on their way (an image that waits for the
    owner's review is not: nothing but the owner moves it)."""
    pending = ctx.store.images_in_state(*WORK_STATES)
    if image_ids is None:
        return len(pending)
    wanted = set(image_ids)
    return sum(1 for image in pending if image.id in wanted)


async def run_until_settled(
    ctx: Context,
    image_ids: Iterable[int] | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run work cycles until none of the images is pending (or `stop` is set)."""
    ids = None if image_ids is None else list(image_ids)
    while True:
        await work_cycle(ctx)
        left = pending_among(ctx, ids)
        if progress:
            progress(left)
        if left == 0 or (stop is not None and stop.is_set()):
            return
        try:
            await asyncio.wait_for((stop or asyncio.Event()).wait(), timeout=ctx.settings.schedule.tick)
        except TimeoutError:
            pass


def image_ids_in(ctx: Context, states: Iterable[ImageState], product_ids: list[str] | None) -> list[int]:
    return [i.id for i in ctx.store.images_in_state(*states, product_ids=product_ids) if i.id is not None]
