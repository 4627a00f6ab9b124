"""The daemon: APScheduler jobs for discover, submit, track and write back, and its life cycle.

All four jobs share one lock, so steps never interleave: each sees the rows the previous one
committed. On start, write-back runs before the first discovery, so an append that was in flight
at a crash is adopted before discovery could mistake it for a new original.

Signals: SIGTERM/SIGINT stop taking work; the step in progress gets `shutdown_grace` seconds,
then it is cancelled — safe, because every outside call has its intent recorded and is replayed
or reconciled on the next start. SIGHUP reloads the config; an invalid new config is logged and
the daemon keeps running on the old one.

systemd: READY=1 after the first successful call to Shopify, STATUS= with the queue counts,
WATCHDOG=1 from the event loop (a stuck loop stops the pings), STOPPING=1 on the way out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from retouch.plugin.providers.base import WebhookEvent
from retouch.plugin.shopify.errors import ShopifyError
from retouch.storage.models import JobState
from retouch.storage.store import is_locked_error

from .config import ConfigError, Settings, load_settings
from .failures import TracebackOnce, failure_reason
from .logs import configure
from .pipeline import WRITE_BACK_STATES, Context, discover, housekeeping, submit, track, write_back
from .pipeline.context import BASELINE_RECORDED
from .shopify_subscriptions import register_product_webhooks
from .systemd import Notifier, status_line, watchdog_interval, watchdog_loop

log = structlog.get_logger("retouch.daemon")

HEARTBEAT = "daemon_heartbeat"
LAST_ERROR = "daemon_last_error"
# STATUS= and the heartbeat row: counting states scans an index (35 ms at a million images), so
# not every tick.
HEARTBEAT_EVERY = 5.0
HOUSEKEEPING_EVERY = 600.0  # seconds between prunings of old quota events and webhook ids
# A Shopify product webhook runs "discover_products" at once; otherwise it looks this often (it
# only has work when webhooks arrived while the first full pass had not recorded the baseline yet).
PRODUCT_DISCOVERY_EVERY = 60.0
WEBHOOK_DEBOUNCE = 2.0  # seconds: item events of one job arrive in bursts; one poll picks them all up
WRITE_BACK_ROUNDS = 4  # write-back steps in one run: backup, write, verify, and one spare
# Another process (an admin's sqlite3 shell, a backup tool, `retouch resync`) may hold the database's
# write lock for a while. The daemon's statements run in its event loop, so they wait only this long
# (a longer wait would freeze the loop: no webhooks, no metrics, no watchdog ping — and systemd kills
# a daemon whose pings stop for WatchdogSec). Each step first waits, in a thread, until the database
# is writable; a lock taken in the middle of a step makes that step stop with "database is locked",
# which is like a crash at that point (every outside call has its intent recorded), and it runs again.
DAEMON_BUSY_TIMEOUT = 2.0
WRITABLE_CHECK = 1.0  # seconds of each threaded wait for the lock, so a stop request is seen soon

Step = Callable[[Context], Awaitable[object]]


class Daemon:
    def __init__(self, ctx: Context, *, notifier: Notifier | None = None,
                 reopen: Callable[[Settings], Awaitable[None]] | None = None,
                 on_connected: Callable[[], Awaitable[None]] | None = None) -> None:
        self.ctx = ctx
        self.notifier = notifier or Notifier.from_env()
        self.reopen = reopen  # rebuilds the clients when a reload changes where they point
        # Runs once Shopify has answered, before any work (the store claim); it may set `stopping`.
        self.on_connected = on_connected
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.running: set[asyncio.Task] = set()
        self.scheduler: AsyncIOScheduler | None = None
        self.pending_products: set[str] = set()  # product gids Shopify's webhooks named, not yet discovered
        self.ready = False  # READY=1 sent: Shopify answered once (a reload before that must not send it)
        self.tracebacks = TracebackOnce()  # each kind of step failure shows its traceback once
        self.server_failure: str | None = None  # why the HTTP server ended before the daemon was stopping

    # ----- steps ------------------------------------------------------------------------------

    def _steps(self) -> list[tuple[str, Step, float]]:
        schedule = self.ctx.settings.schedule
        return [
            ("write_back", write_back, schedule.tick),
            ("discover", discover, schedule.discover_every),
            ("track", track, schedule.tick),
            ("submit", submit, schedule.tick),
            ("housekeeping", housekeeping, HOUSEKEEPING_EVERY),
        ]

    async def _guarded(self, name: str, step: Step) -> None:
        try:
            await self._run_step(name, step)
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
            # Cancelled by the stop sequence (past its grace, or still waiting for the lock): every
            # outside call has its intent recorded, so the next start resumes it. Not an error, and
            # no traceback for the journal.
            log.debug("step_cancelled", step=name)

    async def _run_step(self, name: str, step: Step) -> None:
        if self.stopping.is_set():
            return
        async with self.lock:
            if self.stopping.is_set():
                return
            task = asyncio.current_task()
            assert task is not None
            self.running.add(task)
            try:
                if not await self._database_writable(name):
                    return
                result = await step(self.ctx)
                # Each write-back step is followed by the next (backup -> write -> verify) in the
                # same run: the job cannot re-schedule itself while it is still running.
                rounds = 1
                while name == "write_back" and result and rounds < WRITE_BACK_ROUNDS and not self.stopping.is_set():
                    result = await step(self.ctx)
                    rounds += 1
                self._follow_up(name, result)
                if name in ("submit", "track"):
                    self._track_when_due()
                if name in ("track", "write_back"):
                    self._write_back_when_due()
            except asyncio.CancelledError:
                raise
            except ShopifyError as exc:
                self._record_error(name, str(exc))
                log.warning("step_failed", step=name, reason=str(exc)[:300])
            except Exception as exc:  # one bad answer must never stop the daemon
                if _database_locked(exc):
                    # Not a crash: the step stopped where the lock met it and runs again next time.
                    # (No last-error row either: writing it would meet the same lock.)
                    log.warning("database_busy", step=name, note="another process holds the database's "
                                "write lock; the step stopped and runs again")
                    return
                reason = failure_reason(exc)
                self._record_error(name, reason)
                if self.tracebacks.first(exc):
                    log.exception("step_crashed", step=name, reason=reason,
                                  note="this kind of failure shows its traceback once; later ones one line each")
                else:
                    log.error("step_crashed", step=name, reason=reason)
            finally:
                self.running.discard(task)

    async def _database_writable(self, name: str) -> bool:
        """Wait, without blocking the event loop, until no other process holds the write lock;
        False if the daemon is asked to stop meanwhile."""
        if self.ctx.store.wait_writable(0):  # the usual case, at once: no thread for it
            return True
        waited_since = None
        while not await asyncio.to_thread(self.ctx.store.wait_writable, WRITABLE_CHECK):
            if waited_since is None:
                waited_since = time.monotonic()
                log.warning("database_busy", step=name, note="another process holds the database's write lock; "
                            "waiting for it")
            if self.stopping.is_set():
                return False
        if waited_since is not None:
            log.info("database_free", step=name, waited=round(time.monotonic() - waited_since, 1))
        return True

    def _follow_up(self, name: str, result: object) -> None:
        """A step that made progress runs the step that takes it further now, not at its next tick:
        a result recorded by track is backed up and written at once, each write-back step is
        followed by the next, and a finished job (or a newly queued image) lets submit go."""
        if self.scheduler is None or not result or self.stopping.is_set():
            return
        if name in ("discover", "discover_products") and not (isinstance(result, dict) and result.get("queued")):
            return
        nexts = {"track": ("write_back", "submit"), "discover": ("submit",), "discover_products": ("submit",)}
        now = datetime.now(self.scheduler.timezone)
        for follower in nexts.get(name, ()):
            self.scheduler.modify_job(follower, next_run_time=now)

    def _track_when_due(self) -> None:
        """Run track when the earliest poll is due, not at the tick after it."""
        if self.scheduler is None or self.stopping.is_set():
            return
        due = min((job.next_poll_at for job in self.ctx.jobs(JobState.SUBMITTED) if job.next_poll_at is not None),
                  default=None)
        track = self.scheduler.get_job("track")
        if due is None or track is None or track.next_run_time is None:
            return
        when = datetime.fromtimestamp(max(due, self.ctx.clock()), self.scheduler.timezone)
        if when < track.next_run_time:
            self.scheduler.modify_job("track", next_run_time=when)

    def _write_back_when_due(self) -> None:
        """Run write-back when its earliest waiting image is due (a media Shopify is still
        processing is looked at again within a second), not at the tick after it."""
        if self.scheduler is None or self.stopping.is_set():
            return
        due = self.ctx.store.next_attempt_due(*WRITE_BACK_STATES)
        job = self.scheduler.get_job("write_back")
        if due is None or job is None or job.next_run_time is None:
            return
        when = datetime.fromtimestamp(max(due, self.ctx.clock()), self.scheduler.timezone)
        if when < job.next_run_time:
            self.scheduler.modify_job("write_back", next_run_time=when)

    def _record_error(self, step: str, message: str) -> None:
        try:
            self.ctx.store.set_meta(LAST_ERROR, f"{datetime.now().astimezone().isoformat(timespec='seconds')} "
                                                f"{step}: {message[:300]}")
        except Exception as exc:
            # The database may be what failed (full disk, read-only mount): say so in one line; the
            # step's own line already carries the reason.
            reason = "database locked by another process" if _database_locked(exc) else failure_reason(exc)
            log.info("last_error_not_recorded", step=step, reason=reason)

    async def _heartbeat(self) -> None:
        """STATUS= for systemd and a heartbeat row for `retouch status`."""
        try:
            counts = self.ctx.store.counts_by_state()
            paused = self.ctx.paused()
            self.notifier.status(status_line(counts, paused["reason"] if paused else None))
            self.ctx.store.set_meta(HEARTBEAT, str(time.time()))
        except Exception as exc:  # every 5 s: one line each, never a traceback (the steps show one)
            reason = "database locked by another process" if _database_locked(exc) else failure_reason(exc)
            log.info("heartbeat_skipped", reason=reason)

    # ----- webhooks ---------------------------------------------------------------------------

    def on_provider_event(self, event: WebhookEvent) -> None:
        """A verified provider webhook: poll that job soon (the status endpoint stays the truth).

        An event that names no job (ProductAI's error payload) brings every running job's poll forward."""
        matched = [job for job in self.ctx.jobs(JobState.SUBMITTED)
                   if event.provider_job_id is None or job.provider_job_id == event.provider_job_id]
        for job in matched:
            # Item events of a many-image job come in bursts: one poll a moment later reads them
            # all. A one-image job, or the event that ends the job, has nothing more to wait for.
            burst = not event.final and len(self.ctx.store.job_images(job.id)) > 1
            due = self.ctx.clock() + (WEBHOOK_DEBOUNCE if burst else 0.0)
            if job.next_poll_at is None or job.next_poll_at > due:
                self.ctx.store.update_job(job.id, next_poll_at=due)
                self._track_when_due()
            log.info("webhook_received", job_id=job.id, provider_job_id=job.provider_job_id, type=event.kind)
        if not matched:
            log.info("webhook_unmatched", provider_job_id=event.provider_job_id, type=event.kind)

    def on_shopify_product(self, product_id: str) -> None:
        """A verified Shopify product webhook: discover that product now (the daemon's loop; the
        HTTP handler calls this and answers at once). Polling stays the safety net."""
        self.pending_products.add(product_id)
        if self.scheduler is not None and not self.stopping.is_set():
            self.scheduler.modify_job("discover_products", next_run_time=datetime.now(self.scheduler.timezone))

    async def _discover_pending(self, ctx: Context) -> object:
        """Discovery of the products webhooks named since the last run."""
        if not self.pending_products or ctx.store.get_meta(BASELINE_RECORDED) is None:
            return None  # before the first full pass records the baseline, a new image cannot be told apart
        ids = sorted(self.pending_products)
        self.pending_products.clear()
        try:
            return await discover(ctx, product_ids=ids, live=True)
        except BaseException:
            self.pending_products.update(ids)  # the next webhook or run tries them again
            raise

    async def _register_shopify_webhooks(self) -> None:
        """Subscribe to product webhooks; a failure is logged and the daemon goes on polling."""
        settings = self.ctx.settings
        if not settings.shopify_webhooks or settings.public_url is None:
            return
        try:
            await register_product_webhooks(self.ctx.shopify, settings.public_url)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ShopifyError) else exc.__class__.__name__
            log.warning("shopify_webhooks_not_registered", reason=reason[:300],
                        note="discovery goes on polling every discover_every")

    # ----- life cycle -------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Wait until Shopify answers once (READY=1 means we can really work), or until stopped."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                shop = await self.ctx.shopify.shop()
                log.info("connected", shop=shop.domain)
                return
            except ShopifyError as exc:
                log.error("connect_failed", reason=str(exc)[:300], retry_in=delay)
                self._record_error("connect", str(exc))  # `retouch status` says why it is not ready
                try:
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                except TimeoutError:
                    delay = min(delay * 2, 60.0)

    def _server_ended(self, task: asyncio.Task) -> None:
        """The HTTP server must live as long as the daemon: without it there are no webhooks and no
        health, so an end before the stop request stops the daemon (exit 1; systemd restarts it)."""
        if self.stopping.is_set() or task.cancelled():
            return
        exc = task.exception()
        self.server_failure = (f"{type(exc).__name__}: {exc}" if exc is not None else "it ended")[:300]
        log.error("http_server_failed", reason=self.server_failure, note="the daemon stops")
        self.stopping.set()

    async def reload(self, path) -> None:
        try:
            settings = load_settings(path)
        except ConfigError as exc:
            log.error("reload_failed", reason=str(exc), keeping="the previous config")
            return
        if self.ready:
            self.notifier.reloading()
        async with self.lock:
            old = self.ctx.settings
            # The HTTP server and the database are opened once: their settings wait for a restart.
            fixed = {"server": old.server, "database_url": old.database_url, "backup_dir": old.backup_dir}
            if any(getattr(settings, name) != value for name, value in fixed.items()):
                log.warning("restart_needed", sections=["server", "storage/backup_dir"],
                            note="these changes take effect when the daemon restarts")
            settings = dataclasses.replace(settings, **fixed)
            configure(settings.log.level, settings.log.format, settings.secrets())
            if self.reopen is not None:
                await self.reopen(settings)
            self.ctx.settings = settings
            if self.scheduler is not None:
                for name, _, every in self._steps():
                    self.scheduler.reschedule_job(name, trigger="interval", seconds=every)
        log.info("reloaded", config=str(settings.path), changed=sorted(_changed_sections(old, settings)))
        if self.ready:
            self.notifier.ready()

    async def run(self, server: Callable[[asyncio.Event], Awaitable[None]] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        reloads: set[asyncio.Task] = set()  # a reference keeps each reload task alive until it ends

        def on_sighup() -> None:
            task = loop.create_task(self.reload(self.ctx.settings.path))
            reloads.add(task)
            task.add_done_callback(reloads.discard)
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        background: list[asyncio.Task] = []
        interval = watchdog_interval()
        if interval:
            background.append(loop.create_task(watchdog_loop(self.notifier, interval, self.stopping)))
        if server is not None:
            serving = loop.create_task(server(self.stopping))
            serving.add_done_callback(self._server_ended)
            background.append(serving)

        await self._connect()
        if not self.stopping.is_set() and self.on_connected is not None:
            await self.on_connected()
        if not self.stopping.is_set():
            # Recovery first: finish or reconcile whatever was in flight before discovery looks.
            await self._guarded("write_back", write_back)
            await self._register_shopify_webhooks()
            self.scheduler = AsyncIOScheduler(event_loop=loop)
            for name, step, every in (*self._steps(),
                                      ("discover_products", self._discover_pending, PRODUCT_DISCOVERY_EVERY)):
                self.scheduler.add_job(self._guarded, "interval", args=(name, step), seconds=every, id=name,
                                       max_instances=1, coalesce=True, misfire_grace_time=None,
                                       next_run_time=datetime.now(self.scheduler.timezone))
            self.scheduler.add_job(self._heartbeat, "interval", seconds=HEARTBEAT_EVERY,
                                   id="heartbeat", max_instances=1, coalesce=True,
                                   next_run_time=datetime.now(self.scheduler.timezone))
            self.scheduler.start()
            self.notifier.ready()
            self.ready = True
            await self._heartbeat()
            log.info("ready", steps=[name for name, _, _ in self._steps()])
            await self.stopping.wait()

        self.notifier.stopping()
        grace = self.ctx.settings.schedule.shutdown_grace
        log.info("stopping", grace=grace)
        if self.scheduler is not None:
            # Pause, not shut down: APScheduler's asyncio executor cancels every job it runs when
            # it shuts down, which would cut the running step off without its grace.
            self.scheduler.pause()
        if self.running:
            _, pending = await asyncio.wait(set(self.running), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
                log.warning("abandoned", steps=len(pending), note="their intent is recorded; resumed on next start")
        if self.scheduler is not None:
            await asyncio.sleep(0)  # runs queued behind the lock see `stopping` and return
            self.scheduler.shutdown(wait=False)  # cancels what still waits (quietly: see _guarded)
        if background:
            await asyncio.wait(background, timeout=5)
        log.info("stopped")


def _database_locked(exc: BaseException) -> bool:
    """"database is locked", alone or as every error of a task group (write-back runs products at once)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_database_locked(inner) for inner in exc.exceptions)
    return is_locked_error(exc)


def _changed_sections(old: Settings, new: Settings) -> set[str]:
    names = ("shop", "provider", "provider_table", "selection", "writeback", "schedule", "server", "log", "review")
    return {name for name in names if getattr(old, name) != getattr(new, name)}
