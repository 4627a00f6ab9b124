"""`retouch check`'s lines about the Shopify credentials: how the token is obtained, and for each
refusal a merchant meets, what to do in the Dev Dashboard. Pure: (ok, line) from what happened."""

from __future__ import annotations

from retouch.plugin.shopify.auth import REQUIRED_SCOPES, ClientCredentials, TokenSource, missing_scopes
from retouch.plugin.shopify.errors import ShopifyAuthError, ShopifyTokenError

from ..config import Settings

_SCOPES = ", ".join(REQUIRED_SCOPES)


def token_line(settings: Settings, tokens: TokenSource) -> tuple[bool, str]:
    """How the Admin API token is obtained (never the token), and whether it has the scopes retouch needs."""
    if not isinstance(tokens, ClientCredentials):
        return True, (
            "shopify: token — a static access token (an app made in the admin before 2026; it does not expire)"
        )
    state = tokens.state()
    expires = f"expires in {_hours(state.lifetime)}" if state.lifetime else "expiry unknown"
    line = (
        f"shopify: token — client credentials of app {settings.shop.client_id}; each token {expires} "
        "and is renewed ahead of that (kept in memory only)"
    )
    lacking = missing_scopes(state.scopes) if state.grants else []
    if lacking:
        return False, scopes_line(lacking)
    return True, line


def scopes_line(lacking: list[str]) -> str:
    return (
        f"shopify: the app's token lacks the access scope{'s' if len(lacking) > 1 else ''} {', '.join(lacking)} — "
        "in the Dev Dashboard open your app, create a new version with the Admin API scopes "
        f"{_SCOPES}, release it, and accept the update on the store"
    )


def refusal_line(settings: Settings, exc: ShopifyAuthError) -> str:
    """What to do about a refused credential, in the merchant's words."""
    shop = settings.shop.url
    if isinstance(exc, ShopifyTokenError):
        code = exc.code or ""
        if code == "app_not_installed":
            return (
                f"shopify: the app is not installed on {shop} (app_not_installed) — in the Dev Dashboard open "
                "your app and install it on this store (Home → Install app), then run check again"
            )
        if code == "shop_not_permitted":
            return (
                f"shopify: Shopify refuses client credentials on {shop} (shop_not_permitted) — the store must "
                "belong to the app's organisation: create the app in the Dev Dashboard of the organisation "
                "that owns this store and install it there"
            )
        if code == "invalid_client":
            return (
                "shopify: the client ID or secret was refused (invalid_client) — copy both again from the "
                "Dev Dashboard (your app → Settings) into [shop] client_id and client_secret"
            )
        return (
            f"shopify: Shopify refused an access token ({code or 'no reason given'}): {exc.text} — check "
            "[shop] client_id and client_secret against the Dev Dashboard (your app → Settings)"
        )
    if exc.status == 403 or "access denied" in str(exc):
        return (
            scopes_line(list(REQUIRED_SCOPES))
            if settings.shop_auth == "client_credentials"
            else (f"shopify: the app lacks an access scope — give it {_SCOPES}")
        )
    if settings.shop_auth == "client_credentials":
        return (
            "shopify: a freshly issued token was rejected — check that the app's released version has the "
            f"scopes {_SCOPES} and that it is installed on this store"
        )
    return f"shopify: the access token was rejected — check [shop] access_token and its scopes ({_SCOPES})"


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
