"""AI Gen Studio: the client, its quota pacer and its sandbox (see contract.py for the documented rules)."""

from .client import AigenClient
from .errors import (
    AigenError,
    AuthenticationFailed,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidPayload,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)
from .models import CreateResult, Enhancement, Item, Preset, RateLimit, SourceImage
from .quota import QuotaLedger, QuotaLimits, documented_limits

__all__ = [
    "AigenClient",
    "AigenError",
    "AuthenticationFailed",
    "CreateResult",
    "Enhancement",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidPayload",
    "Item",
    "NotFound",
    "Preset",
    "QuotaLedger",
    "QuotaLimits",
    "RateLimit",
    "RateLimited",
    "ServiceUnavailable",
    "SourceImage",
    "UnexpectedResponse",
    "documented_limits",
]
