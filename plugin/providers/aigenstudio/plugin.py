"""AI Gen Studio as a retouch provider: its `[aigenstudio]` table, capabilities and adapter.

Registered in the `retouch.providers` entry-point group as `aigenstudio` (pyproject.toml).
One job carries up to 20 images by public URL, each with `external_id` = the product's numeric id;
the Idempotency-Key is our job key, so a resend after a lost answer is a free replay.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .. import base
from ..base import Capabilities, DemoSandbox, ItemResult, JobStatus, ProviderConfig, ProviderPlugin, Ticket
from ..fetch import FetchError
from ..settings import DAY, Count, DurationBetween, Section
from . import contract, errors, webhooks
from .client import AigenClient
from .models import SourceImage
from .quota import documented_limits

# A status request for an id that cannot exist: 404 proves the key is accepted (401 would not);
# it costs one poll of the hourly quota, nothing else.
PROBE_ID = "00000000-0000-0000-0000-000000000000"
SANDBOX_KEY = "aigen_test_sandbox0123456789"
WEBHOOK_PATH = "/webhooks/aigenstudio"


class AigenLimits(Section):
    """The key's quota per window; the defaults are the documented ones."""

    window: DurationBetween(1.0, 7 * DAY) = contract.WINDOW_SECONDS
    jobs: Count = Field(contract.JOBS_PER_WINDOW, ge=1, le=10_000_000)
    images: Count = Field(contract.IMAGES_PER_WINDOW, ge=1, le=10_000_000)
    polls: Count = Field(contract.POLLS_PER_WINDOW, ge=1, le=10_000_000)
    active_jobs: Count = Field(contract.ACTIVE_JOBS_PER_KEY, ge=1, le=1000)


class AigenSettings(Section):
    preset: Literal["single_product_white_background", "marketplace_clean_catalog", "clean_catalog_group"] = (
        contract.DEFAULT_PRESET  # type: ignore[assignment]
    )
    preservation_level: Literal["strict", "balanced", "creative"] = "strict"
    instructions: str | None = Field(None, min_length=1, max_length=contract.MAX_INSTRUCTIONS_CHARS)
    batch_size: Count = Field(contract.MAX_IMAGES_PER_JOB, ge=1, le=contract.MAX_IMAGES_PER_JOB)
    limits: AigenLimits = AigenLimits()


def capabilities(settings: BaseModel) -> Capabilities:
    assert isinstance(settings, AigenSettings)
    lim = settings.limits
    quota = documented_limits(
        window=lim.window,
        jobs=lim.jobs,
        images=lim.images,
        polls=lim.polls,
        active_jobs=lim.active_jobs,
        max_batch=settings.batch_size,
    )
    return Capabilities(
        quota=quota,
        source="url",
        source_formats=frozenset(contract.SOURCE_CONTENT_TYPES.values()),
        result="lasting_url",
        completion=frozenset({"poll", "webhook"}),
        # The poll quota spread evenly over the window is the fastest sustainable pace; the quota
        # itself (not a per-job floor, the docs give none) is what must never be exceeded.
        poll_interval=lim.window / lim.polls,
        min_poll_interval=0.0,
        idempotent_submit=True,
        credits_per_image=contract.CREDITS_PER_IMAGE,
        max_job_age=contract.MAX_JOB_AGE_SECONDS,
    )


class AigenProvider:
    name = "aigenstudio"

    def __init__(self, config: ProviderConfig, client: AigenClient | None = None) -> None:
        assert isinstance(config.settings, AigenSettings)
        self.settings = config.settings
        self.capabilities = capabilities(config.settings)
        self._api_key = config.api_key
        self._public_url = config.public_url
        self.client = client or AigenClient(
            config.api_key, config.base_url or contract.BASE_URL, timeout=config.timeout
        )
        self.stats = self.client.stats

    def __repr__(self) -> str:
        return f"AigenProvider({self.client!r})"

    def request_options(self) -> dict[str, Any]:
        webhook_url = self.webhook_url(self._public_url) if self._public_url else None
        return {
            "preset": self.settings.preset,
            "preservation_level": self.settings.preservation_level,
            "instructions": self.settings.instructions,
            "webhook_url": webhook_url,
        }

    async def submit(self, ticket: Ticket, progress: base.Progress) -> str:
        result = await self.client.create_enhancement(
            idempotency_key=ticket.key,
            **ticket.options,
            images=[SourceImage(external_id=i.product_legacy_id, source_url=i.source_url) for i in ticket.items],
        )
        # The first answer we store for this job uses the quota, whether it was a fresh creation or a
        # replay of a creation we never heard back from.
        progress.spend("job")
        progress.spend("image", len(ticket.items))
        # The service reports the account's balance only here: kept for `check` and resync's estimate.
        progress.save(
            replayed=result.replayed,
            credits_reserved=result.enhancement.credits_reserved,
            remaining_paid_credits=result.remaining_paid_credits,
        )
        return result.enhancement.id

    async def poll(self, ticket: Ticket, progress: base.Progress) -> JobStatus:
        assert ticket.provider_job_id is not None
        try:
            enhancement = await self.client.get_enhancement(ticket.provider_job_id)
        except errors.ServiceUnavailable:
            progress.spend("poll")  # it may have reached the service and been counted
            raise
        progress.spend("poll")
        items = {}
        for index, item in enumerate(enhancement.items):
            if item.status == "completed" and item.result_url:
                items[index] = ItemResult("completed", result_url=item.result_url, external_id=item.external_id)
            elif item.status == "failed":
                items[index] = ItemResult(
                    "failed",
                    error_code=item.error_code or "item_failed",
                    error_message=item.error_message or "the provider could not enhance this image",
                    external_id=item.external_id,
                )
            else:
                items[index] = ItemResult("running", external_id=item.external_id)
        return JobStatus(
            terminal=enhancement.is_terminal,
            items=items,
            credits_used=enhancement.credits_used,
            description=enhancement.status or "",
        )

    async def fresh_results(self, ticket: Ticket, progress: base.Progress) -> dict[int, str]:
        return {}  # result URLs last

    def result_link_expired(self, failure: FetchError) -> bool:
        return False  # result URLs last: a refused one is a failure, not an expiry

    def webhook_url(self, public_url: str) -> str | None:
        return public_url.rstrip("/") + WEBHOOK_PATH

    def verify_webhook(
        self, token: str | None, headers: Mapping[str, str], body: bytes, now: float, skew: float
    ) -> base.WebhookEvent:
        # Signature first, with the skew checked apart so the log says which one failed.
        # An empty key would make the HMAC key public (sha256 of ""): accept nothing then.
        if not self._api_key or not webhooks.verify(self._api_key, headers, body, now=now, tolerance=math.inf):
            raise base.WebhookRefused(401, "bad_signature")
        lowered = {name.lower(): value for name, value in headers.items()}
        if not _within_skew(lowered.get(contract.TIMESTAMP_HEADER.lower()), now, skew):
            raise base.WebhookRefused(401, "stale_timestamp")
        event = parse_event(body)
        if event is None:
            raise base.WebhookRefused(400, "malformed")
        # Present: the signature covers it.
        return base.WebhookEvent(
            event_id=lowered[contract.EVENT_ID_HEADER.lower()],
            provider_job_id=event["enhancement_id"],
            kind=event["type"],
            final=event["type"] == contract.EVENT_ENHANCEMENT_COMPLETED,
        )

    async def describe(self) -> list[tuple[bool, str]]:
        presets = await self.client.list_presets()
        try:
            await self.client.get_enhancement(PROBE_ID)
        except errors.NotFound:
            pass  # the key was accepted
        else:
            return [(False, "provider: unexpected answer to the key check")]
        ids = {p.id for p in presets}
        if self.settings.preset not in ids:
            return [(False, f"provider: preset {self.settings.preset!r} is not offered ({', '.join(sorted(ids))})")]
        mode = "sandbox" if self.client.is_sandbox else "live"
        return [(True, f"provider: ok — AI Gen Studio ({mode} key accepted), preset {self.settings.preset}")]

    async def aclose(self) -> None:
        await self.client.aclose()


def parse_event(raw: bytes) -> dict | None:
    """The event body when it is a JSON object with string `type` and `enhancement_id`, else None."""
    try:
        event = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        return None
    if not isinstance(event, dict):
        return None
    for name in ("type", "enhancement_id"):
        if not isinstance(event.get(name), str) or not event[name]:
            return None
    return event


def _within_skew(timestamp: str | None, now: float, skew: float) -> bool:
    try:
        sent_at = float(timestamp or "")
    except ValueError:
        return False
    return abs(now - sent_at) <= skew  # False for NaN and infinities


def check_key(key: str) -> str | None:
    if not contract.API_KEY_PATTERN.match(key):
        return "not an AI Gen Studio key (expected aigen_test_… or aigen_live_…)"
    return None


def start_sandbox(*, fast: bool = False, port: int = 0, profile: str = "default") -> DemoSandbox:
    from .sandbox import AigenSandbox

    window = 60.0 if fast else 3600.0
    sandbox = AigenSandbox(window_seconds=window, seconds_per_item=0.3 if fast else 2.0, profile=profile)
    server = sandbox.start(port)

    def charges() -> int:
        return sum(k["images_charged"] for k in sandbox.stats()["keys"].values())

    return DemoSandbox(
        base_url=server.url,
        api_key=SANDBOX_KEY,
        stop=server.stop,
        charges=charges,
        settings_lines=(
            'preset = "single_product_white_background"',
            'preservation_level = "strict"',
            f'limits = {{ window = "{window:g}s", jobs = 5, images = 25, polls = 120, active_jobs = 1 }}',
        ),
    )


PLUGIN = ProviderPlugin(
    name="aigenstudio",
    title="AI Gen Studio",
    settings_model=AigenSettings,
    capabilities=capabilities,
    create=AigenProvider,
    default_base_url=contract.BASE_URL,
    check_key=check_key,
    is_sandbox=lambda key, base_url: contract.is_test_key(key),
    start_sandbox=start_sandbox,
)
