"""What every pipeline step works with: settings, the store, the backups, Shopify and the provider."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from retouch.plugin.providers.base import Capabilities, Provider
from retouch.plugin.providers.fetch import ResultFetcher
from retouch.plugin.providers.quota import QuotaLedger, QuotaLimits
from retouch.plugin.shopify.client import ShopifyClient
from retouch.storage.backups import BackupStore
from retouch.storage.models import JobState
from retouch.storage.store import Store

from ..budget import budget_today
from ..config import Settings

# Meta keys
CURSOR = "discovery_cursor"
BASELINE_RECORDED = "baseline_recorded"
LAST_DISCOVERY = "last_discovery_at"
PAUSED = "provider_paused"  # JSON {"reason", "since", "retry_at"}: no credits, bad key
BLOCKED_UNTIL = "provider_blocked_until"  # wall-clock seconds: a 429 on create asked us to wait
SECONDS_PER_ITEM = "provider_seconds_per_item"  # learned from finished jobs, to time the first poll


@dataclass
class Context:
    settings: Settings
    store: Store
    backups: BackupStore
    shopify: ShopifyClient
    provider: Provider
    clock: Callable[[], float] = time.time
    log: structlog.stdlib.BoundLogger = field(default_factory=lambda: structlog.get_logger("retouch.pipeline"))
    # Views of this context for providers a reload switched away from while they had jobs in
    # flight: each finishes its own jobs (pipeline/retired.py).
    retired: list[Context] = field(default_factory=list)
    # Provider results are downloaded through their own seam (plugin/providers/fetch.py), not Shopify's.
    results: ResultFetcher = field(default_factory=ResultFetcher)

    @property
    def capabilities(self) -> Capabilities:
        return self.provider.capabilities

    @property
    def limits(self) -> QuotaLimits:
        return self.provider.capabilities.quota

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def ledger(self) -> QuotaLedger:
        """The provider quota as used over the last window, rebuilt from the DB (it survives restarts)."""
        now = self.clock()
        ledger = QuotaLedger(self.limits, self.store.quota_events(self.provider_name, since=now - self.limits.window))
        blocked = self.blocked_until()
        if blocked > now:
            # A 429 holds submissions; where every request shares one budget, polls too.
            ledger.block_until(blocked, kind="request" if self.limits.limited("request") else "job")
        return ledger

    def context_of(self, name: str) -> Context | None:
        """The context of provider `name`: this one, or a retired one still finishing its jobs."""
        if name == self.provider_name:
            return self
        return next((view for view in self.retired if view.provider_name == name), None)

    def jobs(self, *states: JobState) -> list:
        """This provider's jobs in these states (jobs of a provider used before are not ours to drive)."""
        return [job for job in self.store.jobs_in_state(*states) if job.provider == self.provider_name]

    def active_jobs(self) -> int:
        return len(self.jobs(JobState.SUBMITTED))

    def blocked_until(self) -> float:
        value = self.store.get_meta(BLOCKED_UNTIL)
        return float(value) if value else 0.0

    def seconds_per_item(self) -> float | None:
        value = self.store.get_meta(SECONDS_PER_ITEM)
        return float(value) if value else None

    def learn_seconds_per_item(self, observed: float) -> None:
        """Exponential moving average of how long the provider takes per image."""
        previous = self.seconds_per_item()
        value = observed if previous is None else 0.7 * previous + 0.3 * observed
        self.store.set_meta(SECONDS_PER_ITEM, f"{value:.3f}")

    def budget_left(self, now: float) -> tuple[int | None, str]:
        """How many more images may go today under [budget], and a line saying where the day stands."""
        return budget_today(self.settings, self.store, now)

    def paused(self) -> dict | None:
        value = self.store.get_meta(PAUSED)
        return json.loads(value) if value else None
