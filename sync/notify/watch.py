"""The daemon's notification loop: observe (the database, the clients' requests), decide (decide.py),
send (send.py). It runs beside the pipeline on the event loop and never stops it: a failing notifier
is one warning per burst; the blocking send runs in a thread with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import structlog

from retouch.plugin.shopify.errors import ShopifyError
from retouch.storage.models import ImageState

from ..budget import spent_since
from ..logs import REDACTOR
from ..pipeline.context import BLOCKED_UNTIL, Context
from . import send as sender
from .decide import Event, Message, Outbox, Reach, daily_due, daily_line, failure_line, paused_event, unreachable_events

log = structlog.get_logger("retouch.notify")

DAILY_SENT = "notify_daily_sent"  # meta: the local date of the last daily summary
TICK = 1.0  # seconds between looks
FAILURES_PER_LOOK = 500
NOTIFY_FLUSH = 5.0  # seconds a stopping daemon gives the messages still waiting


class Notifications:
    def __init__(self, ctx: Context, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.outbox = Outbox()
        self.told_pause: str | None = None
        self.alerted: frozenset[str] = frozenset()
        # Failures from now on: a restart does not announce old ones again.
        self.failures_after = datetime.now(timezone.utc)
        self.reach: dict[str, list[Any]] = {}  # service -> [first request unanswered, last answer]
        self.hooked: dict[str, Any] = {}  # service -> the httpx client its hooks are on
        self.titles: dict[str, str] = {}
        self._sender: tuple[tuple[str, ...], Any] | None = None

    @property
    def settings(self):
        return self.ctx.settings.notify

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never the pipeline's problem
                log.warning("notify_look_failed", reason=f"{exc.__class__.__name__}: {exc}"[:300])
            try:
                await asyncio.wait_for(stopping.wait(), timeout=TICK)
            except TimeoutError:
                pass
        if self.settings.urls:  # stopping: what is waiting goes now, not never
            await self._send(self.outbox.due(float("inf"), 0.0, self.settings.max_lines), timeout=NOTIFY_FLUSH / 2)

    async def look(self) -> None:
        notify = self.settings
        if not notify.urls:
            return
        self._watch("Shopify", self.ctx.shopify)
        self._watch(self.ctx.settings.plugin.title, self.ctx.provider)
        now = self.clock()
        events: list[Event] = []
        if "failed" in notify.events:
            events += await self._failures()
        if "paused" in notify.events:
            paused = self.ctx.paused()
            event, self.told_pause = paused_event(
                paused,
                float(self.ctx.store.get_meta(BLOCKED_UNTIL) or 0),
                now,
                notify.unreachable_after,
                self.told_pause,
            )
            events += [event] if event else []
        if "unreachable" in notify.events:
            reach = {name: Reach(seen[0], seen[1]) for name, seen in self.reach.items()}
            found, self.alerted = unreachable_events(reach, now, notify.unreachable_after, self.alerted)
            events += found
        if "daily" in notify.events:
            local = datetime.fromtimestamp(now).astimezone()
            if daily_due(local, notify.daily_at, self.ctx.store.get_meta(DAILY_SENT)):
                self.ctx.store.set_meta(DAILY_SENT, local.date().isoformat())
                events.append(Event("daily", self._daily(now)))
        self.outbox.add(events, now)
        await self._send(self.outbox.due(now, notify.group_for, notify.max_lines))

    async def _failures(self) -> list[Event]:
        store = self.ctx.store
        rows = store.changed_into_since(ImageState.FAILED, self.failures_after, FAILURES_PER_LOOK)
        if not rows:
            return []
        self.failures_after = rows[-1].updated_at
        room = self.settings.max_lines - len(self.outbox.waiting.get("failed", []))
        events = []
        for n, image in enumerate(rows):
            # Titles for the lines that will be shown; the rest only count towards "and N more".
            title = await self._title(image.product_id) if n < room else image.product_id
            events.append(Event("failed", failure_line(title, image.error_message or image.error_code or "failed")))
        return events

    async def _title(self, product_id: str) -> str:
        if product_id not in self.titles:
            try:
                product = await self.ctx.shopify.get_product(product_id)
            except (ShopifyError, TimeoutError):
                return product_id
            if len(self.titles) > 1000:
                self.titles.clear()
            self.titles[product_id] = product.title if product else product_id
        return self.titles[product_id]

    def _daily(self, now: float) -> str:
        store, settings = self.ctx.store, self.ctx.settings
        since = datetime.fromtimestamp(now - 86400, timezone.utc)
        _images, credits = spent_since(settings, store, now - 86400)
        return daily_line(
            store.count_changed_into_since(ImageState.DONE, since),
            store.count_changed_into_since(ImageState.FAILED, since),
            credits,
            settings.capabilities.credit_unit,
        )

    def _watch(self, name: str, client: Any) -> None:
        """Hooks on the client's requests: when it last asked, when it last got an answer (not a 5xx)."""
        http = getattr(client, "_http", None)
        if http is None or self.hooked.get(name) is http:
            return
        self.hooked[name] = http
        seen = self.reach.setdefault(name, [None, self.clock()])

        async def on_request(_request: Any) -> None:
            if seen[0] is None:
                seen[0] = self.clock()

        async def on_response(response: Any) -> None:
            if response.status_code < 500:
                seen[0], seen[1] = None, self.clock()

        http.event_hooks["request"].append(on_request)
        http.event_hooks["response"].append(on_response)

    async def _send(self, messages: list[Message], timeout: float | None = None) -> None:
        if not messages:
            return
        urls = self.settings.urls
        key = tuple(url.get_secret_value() for url in urls)
        if self._sender is None or self._sender[0] != key:
            self._sender = (key, sender.build(urls)[0])
        failed = []
        for message in messages:
            clean = Message(message.kind, REDACTOR.scrub(message.title), REDACTOR.scrub(message.body))
            if await sender.send(self._sender[1], clean, timeout or self.settings.timeout):
                log.info("notified", kind=message.kind, lines=clean.body.count("\n") + 1)
            else:
                failed.append(message.kind)
        if failed:
            log.warning(
                "notify_failed",
                kinds=failed,
                note="a notifier refused or did not answer in time; the pipeline goes on (check [notify] urls)",
            )
