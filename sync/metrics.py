"""Prometheus metrics for `GET /metrics`, read at scrape time so nothing else needs instrumenting.

Two custom collectors do the reading:
- `StoreCollector` asks the database (the same numbers `retouch status` shows): images per state,
  jobs in flight, queue ETA, provider quota left in the current window, whether submissions are paused;
- `ClientCollector` turns the two clients' cumulative counters (Shopify's `ClientStats`, the
  provider client's requests by outcome) into counters. A client is rebuilt on a config reload, so
  these may drop back to zero; Prometheus treats that as a counter reset.

- `LoopCollector` counts the daemon's asyncio tasks (a leak of tasks shows as a gauge that grows).

Credits used come from the database: the provider reports them per finished job, and the job row keeps them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from retouch.plugin.providers.quota import KINDS, QuotaLedger, QuotaLimits
from retouch.plugin.shopify.client import ClientStats
from retouch.storage.models import ImageState, JobState
from retouch.storage.store import Store

from .decisions import queue_eta_seconds
from .pipeline.context import PAUSED

RATE_LIMITED = "rate_limited"  # the provider outcome that also counts in retouch_provider_rate_limited_total


class StoreCollector:
    """Gauges computed from the database at every scrape."""

    def __init__(
        self, store: Store, provider: str, limits: QuotaLimits, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.provider = provider
        self.limits = limits
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        counts = self.store.counts_by_state()

        images = GaugeMetricFamily("retouch_images", "Images tracked, by state.", labels=["state"])
        # Every known state is always present (0 included), so a state that empties shows as 0, not as a gap.
        for state in [*ImageState, *sorted(set(counts) - set(ImageState))]:
            images.add_metric([str(state)], counts.get(str(state), 0))
        yield images

        in_flight = self.store.jobs_in_state(JobState.PENDING, JobState.SUBMITTED)
        yield GaugeMetricFamily(
            "retouch_jobs_in_flight", "Provider jobs sent or being sent and not finished.", value=len(in_flight)
        )

        ledger = QuotaLedger(self.limits, self.store.quota_events(self.provider, since=now - self.limits.window))
        quota = GaugeMetricFamily(
            "retouch_provider_quota_left",
            "Provider quota left in the current window, by kind (limited kinds only).",
            labels=["kind"],
        )
        for kind in KINDS:
            if self.limits.limited(kind):
                quota.add_metric([kind], ledger.available(kind, now))
        yield quota

        queued = counts.get(ImageState.DISCOVERED, 0)
        eta = queue_eta_seconds(queued, *images_per_window(self.limits), ledger_images_left(ledger, now))
        yield GaugeMetricFamily(
            "retouch_queue_eta_seconds",
            "Estimated seconds until every queued image is submitted, at the quota.",
            value=eta,
        )

        yield GaugeMetricFamily(
            "retouch_provider_paused",
            "1 while submissions are paused (no credits, rejected key).",
            value=1 if self.store.get_meta(PAUSED) else 0,
        )

        yield CounterMetricFamily(
            "retouch_provider_credits_used",
            "Credits the provider charged for finished jobs.",
            value=self.store.credits_used(self.provider),
        )


class ClientCollector:
    """Counters copied from the clients' own tallies (each absent until its client exists)."""

    def __init__(self, shopify: Callable[[], ClientStats | None], provider: Callable[[], Counter[str] | None]) -> None:
        self.shopify = shopify
        self.provider = provider

    def collect(self) -> Iterator[Metric]:
        stats = self.shopify()
        if stats is not None:
            yield CounterMetricFamily(
                "retouch_shopify_requests", "HTTP requests sent to Shopify (each attempt).", value=stats.requests
            )
            yield CounterMetricFamily(
                "retouch_shopify_throttled", "Shopify answers that were THROTTLED.", value=stats.throttled
            )
            retries = CounterMetricFamily(
                "retouch_shopify_retries", "Shopify requests retried, by reason.", labels=["reason"]
            )
            for reason, count in sorted(stats.retries.items()):
                retries.add_metric([reason], count)
            yield retries
        outcomes = self.provider()
        if outcomes is not None:
            requests = CounterMetricFamily(
                "retouch_provider_requests", "Requests to the enhancement provider, by outcome.", labels=["outcome"]
            )
            for outcome, count in sorted(outcomes.items()):
                requests.add_metric([outcome], count)
            yield requests
            yield CounterMetricFamily(
                "retouch_provider_rate_limited", "Provider requests answered 429.", value=outcomes.get(RATE_LIMITED, 0)
            )


class LoopCollector:
    """The event loop's tasks, counted at scrape time (the scrape runs in a worker thread, hence
    the loop is given, not looked up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "retouch_asyncio_tasks",
            "asyncio tasks alive in the daemon's event loop.",
            value=len(asyncio.all_tasks(self.loop)),
        )


def images_per_window(limits: QuotaLimits) -> tuple[int, float]:
    """How many images the quota lets through per window (the tightest of its limits)."""
    per_window = min(limits.limit("image"), limits.limit("job") * limits.max_batch, limits.limit("request"))
    return per_window, limits.window


def ledger_images_left(ledger: QuotaLedger, now: float) -> int:
    limits = ledger.limits
    return min(
        ledger.available("image", now),
        ledger.available("job", now) * limits.max_batch,
        ledger.available("request", now),
    )


def build_registry(
    store: Store,
    provider: str,
    limits: QuotaLimits,
    shopify_stats: Callable[[], ClientStats | None],
    provider_stats: Callable[[], Counter[str] | None],
    clock: Callable[[], float] = time.time,
    loop: asyncio.AbstractEventLoop | None = None,
) -> CollectorRegistry:
    """A registry of its own (not the process-global one), with every retouch metric in it."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, provider, limits, clock))
    registry.register(ClientCollector(shopify_stats, provider_stats))
    if loop is not None:
        registry.register(LoopCollector(loop))
    return registry
