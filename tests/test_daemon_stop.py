"""Stopping the daemon (SIGTERM sets `stopping`): the step in flight keeps its `shutdown_grace`.

Found by bench/fault_matrix.py: apscheduler's shutdown cancels every running job at once, so a
stop cut the step in progress short (its work lost until the next start) and logged a traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from conftest import pipeline_settings, run_async
from retouch.sync.runtime import open_context
from retouch.sync.scheduler import Daemon


def test_a_stop_lets_the_step_in_flight_finish(shop, provider, tmp_path: Path, caplog) -> None:
    shop.seed(products=2, images_per_product=1, seed=70)
    settings = pipeline_settings(shop, provider, tmp_path)
    # Discovery's page of products is slow: the stop comes while it is on its way.
    shop.add_fault(mode="hang", seconds=1.0, operation="ProductsPage")

    async def scenario():
        async with open_context(settings) as ctx:
            daemon = Daemon(ctx)
            running = asyncio.create_task(daemon.run())
            while not shop.faults_served().get("hang"):
                await asyncio.sleep(0.02)
            daemon.stopping.set()
            await asyncio.wait_for(running, 30)
            return ctx.store.counts_by_state()

    with caplog.at_level(logging.ERROR, logger="apscheduler"):
        counts = run_async(scenario())
    assert counts == {"discovered": 2}  # discovery finished within its grace: its work is kept
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []  # and no traceback
