"""`retouch status`: what the daemon is doing, read from the database only (safe while it runs)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from retouch.plugin.providers.quota import KINDS, QuotaLedger
from retouch.storage.backups import disk_usage
from retouch.storage.models import PENDING_STATES, ImageState, JobState
from retouch.storage.store import Store

from ..budget import budget_today, spent_since
from ..config import Settings
from ..decisions import last_midnight, queue_eta_seconds
from ..metrics import images_per_window, ledger_images_left
from ..pipeline.context import BLOCKED_UNTIL, LAST_DISCOVERY, PAUSED
from ..queue_facts import pending_waits, quota_used_up
from ..rules import label_of
from ..scheduler import HEARTBEAT, LAST_ERROR
from ..systemd import is_held
from ..waiting import group_line, grouped, queue_wait
from .backups import human_size


def collect_status(settings: Settings, now: float | None = None, store: Store | None = None) -> dict:
    """`store`: one already open (the daemon's own, for the review page: a second connection closed in
    the daemon's process would drop its SQLite locks); None opens one for this call."""
    now = time.time() if now is None else now
    own = store is None
    store = Store(settings.database_url) if store is None else store
    try:
        counts = store.counts_by_state()
        limits = settings.capabilities.quota
        ledger = QuotaLedger(limits, store.quota_events(settings.provider.name, since=now - limits.window))
        in_flight = store.jobs_in_state(JobState.PENDING, JobState.SUBMITTED)
        queued = counts.get(ImageState.DISCOVERED, 0)
        last = store.get_meta(LAST_DISCOVERY)
        paused = store.get_meta(PAUSED)
        blocked = float(store.get_meta(BLOCKED_UNTIL) or 0)
        heartbeat = store.get_meta(HEARTBEAT)
        # A pause or a 429 comes before the quota's own pace: the ETA counts it (issue 23).
        eta, waits_for = queue_wait(
            queued=queued,
            now=now,
            paused=_loads(paused),
            blocked_until=blocked,
            quota_free_at=ledger.next_submit_at(now, active_jobs=0) if quota_used_up(ledger, now) else None,
            quota_eta=queue_eta_seconds(queued, *images_per_window(limits), ledger_images_left(ledger, now)),
        )
        return {
            "database": str(settings.database_path),
            "provider": settings.provider.name,
            "mode": "sandbox" if settings.provider_is_sandbox else "live",
            "daemon": {
                "pid": is_held(settings.database_path),
                "last_heartbeat": _iso(float(heartbeat)) if heartbeat else None,
                "last_error": store.get_meta(LAST_ERROR),
            },
            "counts": {state.value: counts.get(state.value, 0) for state in ImageState},
            "pending": sum(counts.get(s.value, 0) for s in PENDING_STATES),
            "jobs_in_flight": [
                {
                    "job_id": j.id,
                    "provider": j.provider,
                    "state": j.state,
                    "provider_job_id": j.provider_job_id,
                    "images": j.image_count,
                    "error": j.error_message,
                }
                for j in in_flight
            ],
            "last_discovery": _iso(float(last)) if last else None,
            "quota_left": {kind: ledger.available(kind, now) for kind in KINDS if limits.limited(kind)},
            "queue_eta_seconds": eta,
            "queue_waits_for": waits_for,
            "credits_spent": {
                "today": spent_since(settings, store, last_midnight(now), pending=False)[1],
                "total": spent_since(settings, store, 0.0, pending=False)[1],
                "unit": settings.capabilities.credit_unit,
            },
            "waiting": [
                {
                    "line": group_line(g),
                    "reason": g.reason,
                    "until": _iso(g.until) if g.until else None,
                    "images": g.images,
                    "products": g.products,
                }
                for g in grouped(pending_waits(settings, store, now))
            ],
            "paused": _loads(paused),
            "budget": budget_today(settings, store, now)[1] or None,
            "rate_limited_until": _iso(blocked) if blocked > now else None,
            "backups": _backups(settings),
            "rules": _rules(store),
            "recent_failures": [
                {
                    "product_id": i.product_id,
                    "media_id": i.media_id,
                    "state": i.state,
                    "error_code": i.error_code,
                    "error_message": i.error_message,
                }
                for i in store.recent_failures(10)
            ],
        }
    finally:
        if own:
            store.close()


def _rules(store: Store) -> dict[str, int]:
    """Images waiting to be sent or in flight, per [[rules]] rule that decided them."""
    counts: dict[str, int] = {}
    for recorded_rule, count in store.pending_by_rule(PENDING_STATES).items():
        label = label_of(recorded_rule)
        if label:
            counts[label] = counts.get(label, 0) + count
    return counts


def _backups(settings: Settings) -> dict:
    """The disk the originals use, and what is left on their filesystem ([backup] keep, `retouch backups`)."""
    used, free = disk_usage(settings.backup_dir)
    return {"directory": str(settings.backup_dir), "bytes": used, "free_bytes": free}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _loads(value: str | None) -> Any:
    import json

    return json.loads(value) if value else None


def print_status(report: dict) -> None:
    console = Console()
    daemon = report["daemon"]
    running = f"running (pid {daemon['pid']})" if daemon["pid"] else "[bold red]not running[/]"
    console.print(f"daemon: {running}   last heartbeat: {daemon['last_heartbeat'] or 'never'}")
    console.print(f"database: {report['database']}")
    if daemon["last_error"]:
        console.print(f"last error: {daemon['last_error']}")
    table = Table(title=f"retouch ({report['mode']})", show_header=True)
    table.add_column("state")
    table.add_column("images", justify="right")
    for state, count in report["counts"].items():
        if count:
            table.add_row(state, str(count))
    console.print(table)
    console.print(
        f"pending: {report['pending']}   jobs in flight: {len(report['jobs_in_flight'])}   "
        f"last discovery: {report['last_discovery'] or 'never'}"
    )
    words = {"image": "images", "job": "jobs", "poll": "polls", "request": "requests"}
    left = ", ".join(f"{n} {words[kind]}" for kind, n in report["quota_left"].items()) or "not limited"
    console.print(
        f"provider: {report['provider']}   quota left this window: {left}   "
        f"queue ETA: {report['queue_eta_seconds'] / 60:.0f} min"
        + (f" ({report['queue_waits_for']})" if report["queue_waits_for"] else ""),
        highlight=False,
    )
    spent = report["credits_spent"]
    console.print(
        f"credits spent: {spent['today']:g} {spent['unit']} today, {spent['total']:g} in total", highlight=False
    )
    if report["budget"]:
        console.print(f"budget {report['budget']}")
    if report["paused"]:
        console.print(f"[bold red]submissions paused:[/] {report['paused']['reason']}")
    if report["waiting"]:
        console.print("waiting:")
        for group in report["waiting"]:
            console.print(f"  {group['line']}", highlight=False, markup=False, soft_wrap=True)
    if report["rate_limited_until"]:
        console.print(f"rate limited until {report['rate_limited_until']}")
    if report["rules"]:
        console.print(
            "pending by rule: " + ", ".join(f"{label}: {n}" for label, n in report["rules"].items()), highlight=False
        )
    backups = report["backups"]
    console.print(
        f"backups: {human_size(backups['bytes'])} in {backups['directory']}   "
        f"free there: {human_size(backups['free_bytes'])}",
        highlight=False,
    )
    for failure in report["recent_failures"]:
        console.print(
            f"[red]{failure['state']}[/] {failure['product_id']} {failure['media_id']}: "
            f"{failure['error_code']} {failure['error_message'] or ''}"
        )
