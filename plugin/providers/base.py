"""The provider plugin boundary: what every enhancement service offers the pipeline, and how.

A provider package exposes one `ProviderPlugin` through the entry-point group `retouch.providers`
(see registry.py). The plugin validates its own settings table (`[aigenstudio]`, `[imagen]`, …)
and builds a `Provider` for the daemon. The pipeline never asks which provider it is talking to:
it reads the provider's declared `Capabilities` instead.

The life of one job, as the pipeline drives it:

    submit(ticket, progress)  -> provider job id      the job row and its key are committed first;
                                                      `progress.save()` commits provider-private
                                                      state (a project id, an upload done) before
                                                      the next paid step, so a retry resumes
    poll(ticket, progress)    -> JobStatus            per item (by position in the ticket): done
                                                      with a result URL, failed with a reason, or
                                                      still running
    fresh_results(ticket)     -> {index: url}         new links for `temporary_link` results, when
    result_link_expired(err)  -> bool                 the provider says a failed download (fetch.py)
                                                      met one of its links past its expiry
    verify_webhook(...)       -> WebhookEvent         a delivery, checked; it only moves a poll forward

Quota: every request that counts against the provider's limits is reported with
`progress.spend(kind, count)` at the moment its answer arrived (see quota.py).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel

from .errors import ProviderError
from .fetch import FetchError
from .quota import QuotaLimits

SourceKind = Literal["url", "upload"]  # the provider fetches a public URL / we upload the bytes
ResultKind = Literal["lasting_url", "temporary_link"]  # a temporary link must be fetched again when it expires
Completion = Literal["poll", "webhook"]


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do and how; every pipeline decision about a provider is made from these."""

    quota: QuotaLimits  # window, per-kind limits, active jobs, images per job
    source: SourceKind
    source_formats: frozenset[str]  # MIME types taken as they are; others become JPEG first
    result: ResultKind
    completion: frozenset[Completion]  # "webhook" only counts when [server] public_url is set
    poll_interval: float  # shortest interval between polls of a job, unless the owner sets one
    min_poll_interval: float  # the provider's own floor: never poll one job more often
    # A resend after a lost answer cannot start a second paid job (an idempotency key, or state the
    # provider can be asked about). When False, a send whose outcome is unknown is a paid attempt.
    idempotent_submit: bool
    max_attempts: int = 1  # paid jobs retouch itself starts for one image
    credits_per_image: float = 0.0  # what one image costs, in `credit_unit` (budgets, resync's estimate)
    credit_unit: str = "credits"
    # Every job has a deadline: past this age (since it was sent) it is polled once more, then its
    # unfinished images fail with `provider_timeout`. Each plugin declares its default with the reason
    # ([provider] max_job_age overrides it); an unknown status word is "running" only until then.
    max_job_age: float = 6 * 3600.0

    @property
    def max_batch(self) -> int:
        return self.quota.max_batch


@dataclass(frozen=True)
class TicketItem:
    """One image of a job, at its position in the job."""

    index: int
    product_id: str  # gid://shopify/Product/…
    product_legacy_id: str  # the numeric id: `external_id` where the provider has one
    media_id: str
    source_url: str
    filename: str | None
    mime_type: str | None


@dataclass(frozen=True)
class Ticket:
    """A job as the pipeline hands it to the provider."""

    key: str  # our idempotency key, unique per job, stable across retries
    items: Sequence[TicketItem]
    options: Mapping[str, Any]  # the request options, as first sent (stored with the job)
    provider_job_id: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)  # what progress.save() kept last time
    # This poll is the job's last (it reached max_job_age): start no new paid step, and hand back any
    # usable result now (a provider that has one in hand, e.g. before an upscale, returns it as done).
    final: bool = False


class Progress(Protocol):
    """The pipeline's side of one job, for the provider to record what happened."""

    def save(self, **state: Any) -> None:
        """Merge `state` into the job's provider state and commit it now."""

    def spend(self, kind: str, count: int = 1) -> None:
        """Record quota used now ("job", "image", "poll", "request")."""

    async def source_bytes(self, item: TicketItem) -> tuple[bytes, str]:
        """The original's bytes and MIME type, converted to JPEG unless its format is accepted as is."""


@dataclass(frozen=True)
class ItemResult:
    status: Literal["running", "completed", "failed"]
    result_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    external_id: str | None = None  # what the provider says the item belongs to, when it says


@dataclass(frozen=True)
class JobStatus:
    terminal: bool
    items: Mapping[int, ItemResult]  # by position in the ticket; a missing position is still running
    credits_used: int = 0
    description: str = ""  # the provider's word for the state, for the log
    provider_job_id: str | None = None  # set when the job moved on to another provider job (an upscale)
    expected_seconds: float | None = None  # when to ask again, if the provider advises (or estimates)
    # Will a webhook announce the job's next change (when webhooks are on)? If not, keep polling.
    webhook_expected: bool = True


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str  # deliveries with an id seen before are refused as replays
    provider_job_id: str | None
    kind: str = ""
    # The provider says the whole job is over (not one item of it): no burst of further events to
    # wait for, so the job is polled at once.
    final: bool = False


def is_loopback_url(url: str) -> bool:
    """A URL on this machine: where the built-in sandboxes run."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_token(api_key: str) -> str:
    """The secret part of a webhook URL for providers whose deliveries are unsigned (Imagen, ProductAI).

    Derived from the API key, so there is nothing more to configure or store; treated as a secret
    (redacted from logs, never written to the database)."""
    return hmac.new(api_key.encode(), b"retouch webhook path", hashlib.sha256).hexdigest()[:32]


def token_matches(api_key: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(webhook_token(api_key).encode(), token.encode())


class WebhookRefused(Exception):
    """A delivery that must not be acted on: answered with `status`, logged with `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: Capabilities
    stats: Counter[str]  # requests by outcome, for /metrics

    def request_options(self) -> dict[str, Any]:
        """Today's settings as a job's request options (stored with the job when it is created)."""

    async def submit(self, ticket: Ticket, progress: Progress) -> str:
        """Start (or resume) the job; return the provider's job id. Raises errors.ProviderError."""

    async def poll(self, ticket: Ticket, progress: Progress) -> JobStatus:
        """Ask how the job is doing (and take the next step of a multi-step job)."""

    async def fresh_results(self, ticket: Ticket, progress: Progress) -> dict[int, str]:
        """New result URLs by item position (temporary links expire); {} when the provider has none."""

    def result_link_expired(self, failure: FetchError) -> bool:
        """Is this failed download of one of our result links (fetch.py) a link past its expiry, which
        `fresh_results` renews? Each provider knows how its storage answers one; False when links last."""

    def webhook_url(self, public_url: str) -> str | None:
        """Where the provider should send job events, or None when it sends none."""

    def verify_webhook(
        self, token: str | None, headers: Mapping[str, str], body: bytes, now: float, skew: float
    ) -> WebhookEvent:
        """A checked delivery; raises WebhookRefused. `token` is the URL path's last part, if any."""

    async def describe(self) -> list[tuple[bool, str]]:
        """(ok, line) for `retouch check`: the key is accepted, the settings fit the account.
        Raises errors.ProviderError when the provider cannot be asked."""

    async def aclose(self) -> None: ...


def result_link_expired(provider: Provider, failure: ProviderError) -> bool:
    """The provider's own rule (`Provider.result_link_expired`) on a failed result download. A plugin
    written before that method existed keeps the rule the pipeline used to apply for every provider:
    a declared `temporary_link` result refused or gone (an expired presigned link answers 401/403/404/410)."""
    if not isinstance(failure, FetchError):
        return False
    rule = getattr(provider, "result_link_expired", None)
    if callable(rule):
        return bool(rule(failure))
    return provider.capabilities.result == "temporary_link" and failure.status in (401, 403, 404, 410)


@dataclass(frozen=True)
class ProviderConfig:
    """Everything a plugin needs to build its provider; the key stays out of reprs."""

    api_key: str = field(repr=False)
    base_url: str | None
    timeout: float
    settings: BaseModel  # the validated [<name>] table
    public_url: str | None  # [server] public_url when the server listens, else None


@dataclass(frozen=True)
class DemoSandbox:
    """A running sandbox of the provider, for `retouch demo` and `retouch sandbox`."""

    base_url: str
    api_key: str = field(repr=False)
    settings_lines: tuple[str, ...]  # the [<name>] table for a config that uses this sandbox
    stop: Callable[[], None]
    charges: Callable[[], int] = lambda: 0  # what the sandbox charged so far


@dataclass(frozen=True)
class ProviderPlugin:
    """One entry in the `retouch.providers` entry-point group."""

    name: str  # [provider] name and the settings table's name
    title: str  # for people: "AI Gen Studio"
    settings_model: type[BaseModel]  # validates the [<name>] table (extra keys forbidden)
    capabilities: Callable[[BaseModel], Capabilities]  # pure: status and metrics use it without a client
    create: Callable[[ProviderConfig], Provider]
    default_base_url: str
    check_key: Callable[[str], str | None] = lambda key: None  # why a key cannot be right, or None
    is_sandbox: Callable[[str, str], bool] = lambda key, base_url: False  # (key, base_url)
    # (fast=bool, port=int, profile="default"|"production") -> a running sandbox; "production" answers in
    # the shapes the real service documents (see each sandbox's PROFILES).
    start_sandbox: Callable[..., DemoSandbox] | None = None
