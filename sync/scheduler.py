"""The daemon: APScheduler jobs for discover, submit, track and write back, and clean shutdown.

All four jobs share one lock, so steps never interleave: each sees the rows the previous one
committed. On start, write-back runs before the first discovery, so an append that was in flight
at a crash is adopted before discovery could mistake it for a new original.
SIGTERM/SIGINT: the scheduler stops taking work, the step in progress gets `shutdown_grace`
seconds to finish, then it is cancelled — safe, because every outside call has its intent
recorded and is replayed or reconciled on the next start.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from retouch.plugin.shopify.errors import ShopifyError

from .pipeline import Context, discover, submit, track, write_back

log = structlog.get_logger("retouch.daemon")


class Daemon:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.running: set[asyncio.Task] = set()

    async def _guarded(self, name: str, step: Callable[[Context], Awaitable[object]]) -> None:
        if self.stopping.is_set():
            return
        async with self.lock:
            if self.stopping.is_set():
                return
            task = asyncio.current_task()
            assert task is not None
            self.running.add(task)
            try:
                await step(self.ctx)
            except asyncio.CancelledError:
                raise
            except ShopifyError as exc:
                log.warning("step_failed", step=name, reason=str(exc)[:300])
            except Exception:  # one bad answer must never stop the daemon
                log.exception("step_crashed", step=name)
            finally:
                self.running.discard(task)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        schedule = self.ctx.settings.schedule
        scheduler = AsyncIOScheduler(event_loop=loop)
        steps: list[tuple[str, Callable[[Context], Awaitable[object]], float]] = [
            ("write_back", write_back, schedule.tick),
            ("discover", discover, schedule.discover_every),
            ("track", track, schedule.tick),
            ("submit", submit, schedule.tick),
        ]
        # Recovery first: finish or reconcile whatever was in flight before discovery looks.
        await self._guarded("write_back", write_back)
        for name, step, every in steps:
            scheduler.add_job(self._guarded, "interval", args=(name, step), seconds=every, id=name,
                              max_instances=1, coalesce=True, misfire_grace_time=None,
                              next_run_time=_now(scheduler))
        scheduler.start()
        log.info("started", steps=[s[0] for s in steps])
        await self.stopping.wait()
        log.info("stopping", grace=schedule.shutdown_grace)
        scheduler.shutdown(wait=False)
        if self.running:
            done, pending = await asyncio.wait(set(self.running), timeout=schedule.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        log.info("stopped")


def _now(scheduler: AsyncIOScheduler):
    from datetime import datetime

    return datetime.now(scheduler.timezone)
