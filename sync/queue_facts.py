"""Read, from the database, the facts the submit step decides with (sync/pipeline/submit.py), so `status`
and the resync progress bar can say why each image waits (the words are decided in sync/waiting.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from retouch.plugin.providers.quota import QuotaLedger
from retouch.storage.models import PENDING_STATES, ImageState, JobState, epoch
from retouch.storage.store import Store

from .budget import budget_today
from .config import Settings
from .decisions import next_midnight, submit_size
from .metrics import images_per_window, ledger_images_left
from .pipeline.context import BLOCKED_UNTIL, PAUSED
from .waiting import ImageWait, QueueFacts, image_waits


def queue_facts(settings: Settings, store: Store, now: float) -> QueueFacts:
    limits = settings.capabilities.quota
    ledger = QuotaLedger(limits, store.quota_events(settings.provider.name, since=now - limits.window))
    paused = store.get_meta(PAUSED)
    blocked = float(store.get_meta(BLOCKED_UNTIL) or 0)
    active = sum(1 for job in store.jobs_in_state(JobState.SUBMITTED) if job.provider == settings.provider.name)
    due = store.images_in_state(ImageState.DISCOVERED, due_by=now, has_source=True, limit=max(1, limits.max_batch))
    allowed = ledger.batch_size(len(due), now, active)
    max_hold = limits.window / limits.limit("job")
    hold_until = None
    if (
        due
        and allowed
        and not submit_size(
            allowed,
            images_available=ledger.available("image", now),
            jobs_available=ledger.available("job", now),
            max_batch=limits.max_batch,
            max_hold=max_hold,
            oldest_wait=now - epoch(due[0].created_at),
        )
    ):
        hold_until = epoch(due[0].created_at) + max_hold
    slot_busy = active >= limits.max_active
    used_up = quota_used_up(ledger, now)
    per_window, window = images_per_window(limits)
    return QueueFacts(
        now=now,
        tick=settings.schedule.tick,
        provider=settings.plugin.title,
        paused=json.loads(paused) if paused else None,
        blocked_until=blocked,
        go_now=0 if used_up or slot_busy else ledger_images_left(ledger, now),
        quota_free_at=ledger.next_submit_at(now, active_jobs=0) if used_up else None,
        slot_busy=slot_busy,
        per_window=per_window,
        window=window,
        hold_until=hold_until,
        budget_left=budget_today(settings, store, now)[0],
        next_midnight=next_midnight(now),
    )


def quota_used_up(ledger: QuotaLedger, now: float) -> bool:
    """No image or no job may go now under the provider's quota window."""
    return any(ledger.limits.limited(kind) and ledger.available(kind, now) <= 0 for kind in ("image", "job"))


def pending_waits(
    settings: Settings, store: Store, now: float, image_ids: Iterable[int] | None = None
) -> list[ImageWait]:
    """Why each pending image (of `image_ids`, or all) waits. Their places in line count every queued image."""
    waits = image_waits(store.images_in_state(*PENDING_STATES), queue_facts(settings, store, now))
    if image_ids is None:
        return waits
    wanted = set(image_ids)
    return [wait for wait in waits if wait.image_id in wanted]
