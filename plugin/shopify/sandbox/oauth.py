"""The sandbox's token endpoint: the client credentials grant, as Shopify documents it.

`POST /admin/oauth/access_token`, form-encoded `grant_type=client_credentials&client_id&client_secret`
-> `{"access_token", "scope", "expires_in"}`. Tokens expire after `lifetime` seconds of the sandbox's
clock (Shopify: 86399; tests set a few seconds to cross several expiries quickly) and can all be
revoked at once (`revoke`). Refusals, with the shape `plugin/shopify/auth.py` records as [ASSUME]:
HTTP 400 `{"error": "<code>", "error_description": "<text>"}` for `invalid_request` (no form body,
another grant type), `invalid_client` (unknown client ID or wrong secret), `app_not_installed` and
`shop_not_permitted` (an app/store setting of the sandbox). A static token (apps made in the admin)
is accepted too when the sandbox has one.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# [DOC, user reports] the texts Shopify answers with (see plugin/shopify/auth.py).
REFUSALS = {
    "app_not_installed": "The application is not installed on this shop.",
    "shop_not_permitted": "Client credentials cannot be performed on this shop.",
    "invalid_client": "Client authentication failed: unknown client or wrong client secret.",
}

DEFAULT_SCOPES = "read_products,write_products,write_files"


@dataclass
class TokenIssuer:
    """The app as the store knows it: its credentials, whether it is installed, its scopes; the
    tokens it issued. Thread-safe (the HTTP routes run in a thread pool)."""

    client_id: str | None
    client_secret: str | None
    clock: Callable[[], float]
    lifetime: float = 86399.0
    scopes: str = DEFAULT_SCOPES
    installed: bool = True
    permitted: bool = True
    reject_tokens: bool = False  # a store that answers 401 to every issued token (a test of bounded renewals)
    _tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at
    _ever: list[str] = field(default_factory=list)  # every token issued, revoked or not
    _lock: threading.Lock = field(default_factory=threading.Lock)
    grants: int = 0
    refused: int = 0
    revoked: int = 0

    def grant(self, form: dict[str, str]) -> tuple[int, dict]:
        """(status, JSON body) for one request to the token endpoint."""
        with self._lock:
            if form.get("grant_type") != "client_credentials" or not form.get("client_id"):
                return self._refuse(
                    "invalid_request", "grant_type=client_credentials and client_id are required (form-encoded)"
                )
            if (
                self.client_id is None
                or self.client_secret is None
                or not (
                    hmac.compare_digest(form["client_id"].encode(), self.client_id.encode())
                    and hmac.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode())
                )
            ):
                return self._refuse("invalid_client", REFUSALS["invalid_client"])
            if not self.permitted:
                return self._refuse("shop_not_permitted", REFUSALS["shop_not_permitted"])
            if not self.installed:
                return self._refuse("app_not_installed", REFUSALS["app_not_installed"])
            token = "shpat_" + secrets.token_hex(16)
            self._tokens[token] = self.clock() + self.lifetime
            self._ever.append(token)
            self.grants += 1
            expires_in = int(self.lifetime) if self.lifetime >= 1 else self.lifetime
            return 200, {"access_token": token, "scope": self.scopes, "expires_in": expires_in}

    def _refuse(self, code: str, text: str) -> tuple[int, dict]:
        self.refused += 1
        return 400, {"error": code, "error_description": text}

    def valid(self, presented: str) -> bool:
        with self._lock:
            expires = self._tokens.get(presented)
            return expires is not None and self.clock() < expires and not self.reject_tokens

    def revoke(self) -> int:
        """Revoke every token issued so far (as uninstalling the app or rotating the secret does)."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            self.revoked += count
            return count

    def configure(
        self,
        *,
        lifetime: float | None = None,
        scopes: str | None = None,
        installed: bool | None = None,
        permitted: bool | None = None,
        reject_tokens: bool | None = None,
    ) -> None:
        with self._lock:
            if lifetime is not None:
                if lifetime <= 0:
                    raise ValueError("lifetime must be positive")
                self.lifetime = lifetime
            if scopes is not None:
                self.scopes = scopes
            if installed is not None:
                self.installed = installed
            if permitted is not None:
                self.permitted = permitted
            if reject_tokens is not None:
                self.reject_tokens = reject_tokens

    def issued(self) -> list[str]:
        """Every token issued, revoked or expired too (for the secret-leak tests)."""
        with self._lock:
            return list(self._ever)

    def stats(self) -> dict:
        with self._lock:
            return {
                "grants": self.grants,
                "refused": self.refused,
                "revoked": self.revoked,
                "lifetime": self.lifetime,
                "scopes": self.scopes,
                "installed": self.installed,
                "permitted": self.permitted,
                "reject_tokens": self.reject_tokens,
            }
