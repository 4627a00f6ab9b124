"""Where a store's Admin GraphQL API lives: `{shop}/admin/api/{version}/graphql.json`.

ShopifyAPI (`import shopify`) supplies the Admin API conventions: version validation
(`shopify.ApiVersion`), the `/admin/api/<version>` path and the shop URL normalisation
(`shopify.Session`). Its GraphQL transport (blocking urllib, no timeout, prints bodies) is not used.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import shopify

_LOOPBACK_NAMES = {"localhost"}


def admin_api_url(shop_url: str, api_version: str) -> str:
    """`{shop}/admin/api/{version}/graphql.json` for a store or a loopback sandbox.

    Raises ValueError for a version that is not `YYYY-MM`/`unstable` or an unusable shop URL.
    """
    try:
        version = shopify.ApiVersion.coerce_to_version(api_version)
    except (shopify.VersionNotFoundError, shopify.InvalidVersionError):
        raise ValueError(f"Shopify API version {api_version!r} is not of the form YYYY-MM") from None
    parts = urlsplit(shop_url.strip() if "://" in shop_url else f"https://{shop_url.strip()}")
    if _is_loopback(parts.hostname):
        # ShopifyAPI's Session forces https and rewrites every host to "<first label>.myshopify.com"
        # (127.0.0.1:8080 would become 127.myshopify.com). A sandbox on loopback speaks plain http on
        # its own port, so keep its origin as given and borrow only the version's path convention.
        return version.api_path(f"{parts.scheme}://{parts.netloc}") + "/graphql.json"
    host = parts.hostname or ""
    if "." in host and not host.endswith(".myshopify.com"):
        # Session would keep only the first label ("www.example.com" -> "www.myshopify.com"):
        # a custom storefront domain must not silently turn into some other shop's address.
        raise ValueError(
            f"shop URL {shop_url!r} is not a myshopify.com address; use the store's admin address, "
            "e.g. https://my-store.myshopify.com (not its custom domain)"
        )
    session = shopify.Session(shop_url, version.name)
    if session.url is None:
        raise ValueError(f"shop URL {shop_url!r} has no host; expected e.g. https://my-store.myshopify.com")
    return session.site + "/graphql.json"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
