"""The enhancement services behind one boundary (`base.py`): each provider is a plugin found by name
(`registry`), declares its capabilities, maps its failures onto one tree (`errors`), and has its
results downloaded through their own seam (`fetch`). Each service's package holds its client, its
plugin and its sandbox; the sandboxes are not imported from here."""

from .base import (
    Capabilities,
    ItemResult,
    JobStatus,
    Progress,
    Provider,
    ProviderConfig,
    ProviderPlugin,
    Ticket,
    TicketItem,
    WebhookEvent,
    WebhookRefused,
    result_link_expired,
)
from .errors import AuthenticationFailed, NotFound, OutOfCredits, ProviderError, RateLimited, Rejected, Unavailable
from .fetch import (
    Fetched,
    FetchError,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
    FetchUnavailable,
    LinkGone,
    ResultFetcher,
)
from .registry import available, get

__all__ = [
    "AuthenticationFailed",
    "Capabilities",
    "FetchError",
    "FetchRefused",
    "FetchTimeout",
    "FetchTooLarge",
    "FetchUnavailable",
    "Fetched",
    "ItemResult",
    "JobStatus",
    "LinkGone",
    "NotFound",
    "OutOfCredits",
    "Progress",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderPlugin",
    "RateLimited",
    "Rejected",
    "ResultFetcher",
    "Ticket",
    "TicketItem",
    "Unavailable",
    "WebhookEvent",
    "WebhookRefused",
    "available",
    "get",
    "result_link_expired",
]
