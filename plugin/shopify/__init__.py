"""Shopify's Admin API for one store: the narrow GraphQL transport (`transport.py`), the thin
operation modules over it (catalog, media, staged, bulk, subscriptions, downloads), and
`ShopifyClient`, which composes them. `sandbox` (a loopback emulator) is not imported from here."""

from .auth import ClientCredentials, StaticToken, TokenSource, TokenState
from .client import ShopifyClient
from .errors import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyResponseError,
    ShopifyTokenError,
    ShopifyUnavailable,
    ShopifyUserError,
    UserError,
)
from .models import BulkOperation, Media, Product, ShopInfo, WebhookSubscription
from .transport import DEFAULT_API_VERSION, ClientStats, GraphQLTransport, admin_api_url

__all__ = [
    "DEFAULT_API_VERSION",
    "BulkOperation",
    "ClientCredentials",
    "ClientStats",
    "GraphQLTransport",
    "Media",
    "Product",
    "ShopInfo",
    "ShopifyAuthError",
    "ShopifyClient",
    "ShopifyError",
    "ShopifyResponseError",
    "ShopifyTokenError",
    "ShopifyUnavailable",
    "ShopifyUserError",
    "StaticToken",
    "TokenSource",
    "TokenState",
    "UserError",
    "WebhookSubscription",
    "admin_api_url",
]
