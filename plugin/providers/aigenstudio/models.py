"""The values the AI Gen Studio client hands out, and how they are read from JSON and headers.

Plain frozen dataclasses. Parsing goes through pydantic (`TypeAdapter` over these very
dataclasses): a missing required field or a wrong type becomes one `ValidationError`, which the
client turns into `UnexpectedResponse` — never a KeyError or TypeError leaking out. Unknown
fields are ignored, so the service may add fields without breaking us. Fields that the create
response does not carry (it only has id, status, total_items, credits_reserved, sandbox) have
defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter

from . import contract


def _none_as_zero(value: Any) -> Any:
    return 0 if value is None else value


# A counter the service might send as null before it means anything (e.g. credits_used of a queued item).
Count = Annotated[int, BeforeValidator(_none_as_zero)]


@dataclass(frozen=True)
class SourceImage:
    """One image to enhance: our id for it (the Shopify product id) and a URL the service can fetch."""

    external_id: str
    source_url: str


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Item:
    """One image of an enhancement, in the order it was sent."""

    id: str
    status: str | None = None  # [DOC: API reference] may be absent: derived (contract.py)
    external_id: str | None = None
    result_url: str | None = None
    thumbnail_url: str | None = None
    credits_reserved: Count = 0
    credits_used: Count = 0
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Enhancement:
    """A job: the create response fills the first fields only; a status response fills all."""

    id: str
    total_items: int
    status: str | None = None  # [DOC: API reference] may be absent: the client derives it (contract.py)
    completed_items: Count = 0
    failed_items: Count = 0
    credits_reserved: Count = 0
    credits_used: Count = 0
    sandbox: bool = False
    created_at: datetime | None = None
    completed_at: datetime | None = None
    items: tuple[Item, ...] = ()

    def with_derived_status(self) -> Enhancement:
        """This enhancement with every missing status derived from what the body does say."""
        items = tuple(
            item if item.status else replace(item, status=contract.derive_item_status(item.result_url, item.error_code))
            for item in self.items
        )
        status = self.status
        if not status:
            completed = max(self.completed_items, sum(1 for i in items if i.status == "completed"))
            failed = max(self.failed_items, sum(1 for i in items if i.status == "failed"))
            status = contract.derive_enhancement_status(self.total_items, completed, failed)
        return replace(self, status=status, items=items)

    @property
    def is_terminal(self) -> bool:
        """No further change will happen (completed, partially_completed, failed, cancelled)."""
        return self.status in contract.TERMINAL_STATUSES


@dataclass(frozen=True)
class RateLimit:
    """The X-RateLimit-* headers of a response; each is None when absent or unreadable."""

    limit: int | None
    remaining: int | None
    reset: float | None  # Unix time at which the window resets


@dataclass(frozen=True)
class CreateResult:
    enhancement: Enhancement
    remaining_paid_credits: int
    replayed: bool  # True for HTTP 200: an earlier request with this Idempotency-Key made the job
    rate_limit: RateLimit | None


# --- wire shapes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresetsBody:
    presets: tuple[Preset, ...]


@dataclass(frozen=True)
class EnhancementBody:
    enhancement: Enhancement
    remaining_paid_credits: Count = 0


@dataclass(frozen=True)
class ErrorDetail:
    code: str | None = None
    message: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class ErrorBody:
    error: ErrorDetail


presets_body = TypeAdapter(PresetsBody)
enhancement_body = TypeAdapter(EnhancementBody)
error_body = TypeAdapter(ErrorBody)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """X-RateLimit-* headers, leniently: they are advice, so an unreadable one is just absent."""
    limit = _number(headers.get("x-ratelimit-limit"))
    remaining = _number(headers.get("x-ratelimit-remaining"))
    reset = _number(headers.get("x-ratelimit-reset"))
    if limit is None and remaining is None and reset is None:
        return None
    return RateLimit(
        limit=None if limit is None else int(limit),
        remaining=None if remaining is None else int(remaining),
        reset=reset,
    )


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
