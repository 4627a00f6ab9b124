"""The create payload, validated as AI Gen Studio documents it (CONTRACTS.md §1, Create). Pure.

Strict pydantic models: unknown fields are rejected, strings are not coerced from numbers, and
the first problem becomes the message of a 400 `invalid_payload`. One sandbox-only allowance:
`webhook_url` may be plain http on a loopback host, so tests can receive webhooks locally (the
real service requires public https).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import contract

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_SOURCE_URL_CHARS = 2048  # [ASSUME] mirrors the webhook_url limit


class PayloadError(ValueError):
    """The payload is invalid; the message says where."""


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.hostname:
        raise ValueError("must be an absolute https URL")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return value
    raise ValueError("must be an https URL")


SourceUrl = Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_URL_CHARS), AfterValidator(_http_url)]
WebhookUrl = Annotated[
    str, Field(min_length=1, max_length=contract.MAX_WEBHOOK_URL_CHARS), AfterValidator(_webhook_url)
]


class ImagePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    source_url: SourceUrl
    external_id: Annotated[str, Field(min_length=1, max_length=contract.MAX_EXTERNAL_ID_CHARS)] | None = None


class CreatePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # [DOC: API reference] only `images` is required; the service's default preset otherwise [ASSUME].
    preset: Literal[contract.PRESET_IDS] = contract.DEFAULT_PRESET  # type: ignore[valid-type]
    preservation_level: Literal[contract.PRESERVATION_LEVELS] = contract.DEFAULT_PRESERVATION_LEVEL  # type: ignore[valid-type]
    instructions: Annotated[str, Field(min_length=1, max_length=contract.MAX_INSTRUCTIONS_CHARS)] | None = None
    webhook_url: WebhookUrl | None = None
    images: Annotated[list[ImagePayload], Field(min_length=1, max_length=contract.MAX_IMAGES_PER_JOB)]


def validate_create(body: Any) -> CreatePayload:
    """The parsed payload, or PayloadError naming the first problem."""
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")
    for name in body:
        if isinstance(name, str) and name.replace("-", "_").lower() in ("idempotency_key", "idempotencykey"):
            raise PayloadError("do not send the idempotency key in the body: use the Idempotency-Key header")
    try:
        return CreatePayload.model_validate(body)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
        raise PayloadError(f"{where or 'body'}: {first['msg']}") from None


def validate_idempotency_key(value: str | None) -> str:
    if value is None:
        raise PayloadError("the Idempotency-Key header is required")
    if not contract.IDEMPOTENCY_KEY_PATTERN.match(value):
        raise PayloadError("Idempotency-Key must be 8 to 160 letters, digits, '.', '_', ':' or '-'")
    return value


def is_private_host(host: str | None) -> bool:
    """localhost, a loopback, private, link-local (metadata) or otherwise non-public address."""
    host = (host or "").strip("[]").lower()
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: the real service resolves it; we cannot say
    return address.is_loopback or address.is_private or address.is_link_local or address.is_reserved


def refuse_private_webhook(payload: CreatePayload) -> None:
    """[DOC: API reference] the real service rejects a `webhook_url` on localhost, private ranges or
    metadata addresses; the production profile does too (the default profile allows loopback, as a
    declared sandbox exception, so tests can receive webhooks)."""
    if payload.webhook_url is not None and is_private_host(urlsplit(payload.webhook_url).hostname):
        raise PayloadError(
            "webhook_url: must be a public https URL (localhost, private and metadata addresses are rejected)"
        )
