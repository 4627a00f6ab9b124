"""Exceptions raised by the Shopify Admin client.

    ShopifyError
     ├── ShopifyAuthError       HTTP 401/403 or ACCESS_DENIED: wrong token or missing access scope
     │    └── ShopifyTokenError the token endpoint refused the client credentials (`code`:
     │                          app_not_installed, shop_not_permitted, invalid_client, ...)
     ├── ShopifyUserError       the mutation ran and refused the input (userErrors / mediaUserErrors)
     ├── ShopifyUnavailable     transient failures outlasted the retries (THROTTLED, 429, 5xx,
     │                          timeout, connection error); `ambiguous` when a non-idempotent
     │                          mutation may nevertheless have executed
     └── ShopifyResponseError   a body we cannot use: malformed JSON, unexpected shape, GraphQL
                                `errors` other than THROTTLED, an unexpected HTTP status

httpx exceptions are mapped to these where they enter (transport.py), so callers catch one tree.
No message or repr carries the access token: the token never reaches these constructors, and the
client scrubs any server text it quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class ShopifyError(Exception):
    """Base class of everything the Shopify client raises."""


class ShopifyAuthError(ShopifyError):
    """Shopify refused the credentials (401) or the app lacks a scope (403 / ACCESS_DENIED). Not retried."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ShopifyTokenError(ShopifyAuthError):
    """The client credentials grant was refused; `code` is Shopify's (None when it gave none)."""

    def __init__(self, code: str | None, text: str, *, status: int | None = None) -> None:
        self.code = code
        self.text = text
        super().__init__(f"Shopify refused an access token{f' ({code})' if code else ''}: {text}", status=status)


@dataclass(frozen=True)
class UserError:
    """One entry of a mutation's `userErrors` / `mediaUserErrors`."""

    code: str | None
    field: list[str] | None
    message: str


class ShopifyUserError(ShopifyError):
    """A mutation returned user errors; `errors` keeps every code and field path."""

    def __init__(self, operation: str, errors: Sequence[UserError]) -> None:
        self.operation = operation
        self.errors = list(errors)
        details = "; ".join(_describe(error) for error in self.errors)
        super().__init__(f"{operation} refused: {details}")

    @property
    def codes(self) -> list[str | None]:
        return [error.code for error in self.errors]


def _describe(error: UserError) -> str:
    where = f" at {'.'.join(error.field)}" if error.field else ""
    code = f"{error.code}" if error.code else "error"
    return f"{code}{where}: {error.message}"


class ShopifyUnavailable(ShopifyError):
    """Shopify could not be reached or kept answering "try later" until the attempts ran out.

    `ambiguous=True` means a non-idempotent mutation (ProductAddMedia) may have executed even though
    no answer arrived: the caller must read the product back and reconcile before trying again.
    """

    def __init__(self, reason: str, ambiguous: bool = False, *, operation: str | None = None) -> None:
        self.reason = reason
        self.ambiguous = ambiguous
        self.operation = operation
        prefix = f"{operation}: " if operation else ""
        suffix = " (the request may have executed)" if ambiguous else ""
        super().__init__(f"{prefix}Shopify unavailable: {reason}{suffix}")


class ShopifyResponseError(ShopifyError):
    """An answer the client cannot use: malformed or unexpected body, GraphQL errors, odd HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        status: int | None = None,
        messages: Sequence[str] = (),
    ) -> None:
        self.operation = operation
        self.status = status
        self.messages = list(messages)
        prefix = f"{operation}: " if operation else ""
        super().__init__(f"{prefix}{message}")
