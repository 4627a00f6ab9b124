"""The sandbox's profiles: `default` (the behaviour the existing tests were written against) and
`production`, which answers the way the real Shopify was recorded to answer where it is less kind
(../shared/reference/shopify/NOTES.md, "Where the sandbox must not be kinder than Shopify"; real
captures in ../shared/reference/shopify/captures/):

- `fileUpdate` with several files applies the valid rows and returns a userError per bad row
  (`field: ["files", "<i>", …]`; FILE_DOES_NOT_EXIST and NON_READY_STATE name no index, as captured);
  alt text over 512 characters is refused (ALT_VALUE_LIMIT_EXCEEDED; [ASSUME] on productUpdate's new
  media too);
- `productReorderMedia` with a media id that no longer exists answers a job and no userError; that
  move does nothing;
- the products search index lags: a product created or changed less than `search_lag_seconds` ago
  is missing from `products(query: …)` and `productsCount(query: …)` (`ShopifySandbox.delay_search_index`
  makes one product's change lag longer, in either profile);
- `webhookSubscriptionCreate` refuses loopback, internal and Shopify addresses ("Address cannot be
  a Shopify or an internal domain"), so a daemon on this machine cannot subscribe;
- an `$app:` metafield namespace is stored resolved (`app--<app id>--retouch`); reads by `$app:…` work.

The store holds its profile (`Store.profile`); each rule is applied where the store decides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..file_update import ALT_VALUE_LIMIT
from ..public_address import host_of, name_problem

if TYPE_CHECKING:
    from .model import Product
    from .store import Store

PROFILES = ("default", "production")

# How long a change takes to reach the search index in the production profile unless told: a few
# reads' worth ([ASSUME] the captures show "several reads", not a duration).
PRODUCTION_SEARCH_LAG = 2.0


@dataclass(frozen=True)
class Profile:
    name: str = "default"
    partial_file_update: bool = False
    alt_limit: bool = False
    silent_missing_reorder: bool = False
    search_lag_seconds: float = 0.0
    webhook_uri_rules: bool = False
    resolved_app_namespace: bool = False


DEFAULT_PROFILE = Profile()


def profile_named(name: str, *, search_lag_seconds: float | None = None) -> Profile:
    """The profile called `name` ("default" or "production"); ValueError for another name."""
    if name == "default":
        return DEFAULT_PROFILE if search_lag_seconds is None else Profile(search_lag_seconds=search_lag_seconds)
    if name == "production":
        lag = PRODUCTION_SEARCH_LAG if search_lag_seconds is None else search_lag_seconds
        return Profile(
            "production",
            partial_file_update=True,
            alt_limit=True,
            silent_missing_reorder=True,
            search_lag_seconds=lag,
            webhook_uri_rules=True,
            resolved_app_namespace=True,
        )
    raise ValueError(f"unknown Shopify sandbox profile {name!r}; one of {', '.join(PROFILES)}")


# ------------------------------------------------------------------ search lag


def indexed(store: Store, product: Product, now: float) -> bool:
    """Has the search index caught up with the product's last change? It takes the profile's
    `search_lag_seconds`, or the delay a test set for this product (`Store.search_delays`: the real
    index does not catch up with every change equally fast)."""
    lag = store.search_delays.get(product.id, store.profile.search_lag_seconds)
    return lag <= 0 or product.updated_at <= now - lag


def search_lags(store: Store) -> bool:
    """Can what a search sees lag behind the catalog right now?"""
    return store.profile.search_lag_seconds > 0 or bool(store.search_delays)


# ------------------------------------------------------------------ webhook addresses


def webhook_uri_problem(profile: Profile, uri: str | None) -> str | None:
    """Shopify's refusal of a webhook address on a loopback, internal or Shopify host, else None."""
    if not profile.webhook_uri_rules:
        return None
    host = host_of(uri or "")
    if host is not None and name_problem(host) is not None:
        return "Address cannot be a Shopify or an internal domain"
    return None


def webhook_subscription_create(store: Store, topic: str, subscription: dict[str, Any], now: float) -> dict[str, Any]:
    problem = webhook_uri_problem(store.profile, subscription.get("uri"))
    if problem is not None:
        return {
            "webhookSubscription": None,
            "userErrors": [{"field": ["webhookSubscription", "callbackUrl"], "message": problem}],
        }
    return store.subscriptions.create(topic, subscription, now)


# ------------------------------------------------------------------ metafield namespaces


def stored_namespace(profile: Profile, namespace: str, app_id: int) -> str:
    """An `$app:` namespace as Shopify stores it (resolved) in the production profile."""
    if profile.resolved_app_namespace and namespace.startswith("$app:"):
        return f"app--{app_id}--{namespace[len('$app:') :]}"
    return namespace


# ------------------------------------------------------------------ alt text


def _alt_too_long(profile: Profile, alt: Any) -> bool:
    return profile.alt_limit and isinstance(alt, str) and len(alt) > ALT_VALUE_LIMIT


def _alt_error(field: list[str]) -> dict[str, Any]:
    from .store import user_error

    # No capture of this branch: the code and wording are the schema's (FilesErrorCode, admin-2026-07.graphql).
    return user_error(
        field, f"The alt value exceeds the maximum limit of {ALT_VALUE_LIMIT} characters.", "ALT_VALUE_LIMIT_EXCEEDED"
    )


def media_alt_errors(profile: Profile, media_inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """productUpdate's new media with alt text over the limit. [ASSUME] the media alt limit of
    fileUpdate (NOTES.md) holds for media created by productUpdate too: it is the same field."""
    return [
        _alt_error(["media", str(index), "alt"])
        for index, item in enumerate(media_inputs)
        if _alt_too_long(profile, item.get("alt"))
    ]


# ------------------------------------------------------------------ partial fileUpdate


def _row_errors(store: Store, files: list[dict[str, Any]], rows: list[int], now: float) -> tuple[list[Any], list[int]]:
    """(errors, rows that pass): each row checked on its own, as Shopify checks them; an indexed
    error carries the row's index in the whole call."""
    errors: list[tuple[int, dict[str, Any]]] = []
    passing = []
    for index in rows:
        item = files[index]
        if _alt_too_long(store.profile, item.get("alt")):
            found = [_alt_error(["files", str(index), "alt"])]
        else:
            found = store._file_update_errors([item], now)
        for error in found:
            field = error.get("field")
            if isinstance(field, list) and len(field) >= 2 and field[0] == "files" and field[1] == "0":
                error["field"] = ["files", str(index), *field[2:]]
            errors.append((index, error))
        if not found:
            passing.append(index)
    return [error for _, error in sorted(errors, key=lambda pair: pair[0])], passing


def partial_file_update(
    store: Store, files: list[dict[str, Any]], bases: tuple[str, ...], now: float
) -> dict[str, Any]:
    """fileUpdate as recorded: the valid rows are applied, each bad row gets its userError."""
    errors, passing = _row_errors(store, files, list(range(len(files))), now)
    sources = [files[i]["originalSource"] for i in passing if files[i].get("originalSource")]
    fetched = store.fetch_sources(sources, bases) if sources else {}
    now = max(now, store.clock())
    store.settle(now)
    late, passing = _row_errors(store, files, passing, now)  # the lock was let go: check again
    applied = [store.apply_file_update(files[i], fetched, now) for i in passing]
    return {"files": applied, "userErrors": errors + late}
