"""The pipeline's order is one table (sync/pipeline/order.py), read by the daemon and the one-shot runner."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from retouch.sync.pipeline import order
from retouch.sync.pipeline.order import (
    BY_NAME,
    ONE_SHOT_CYCLE,
    RECOVERY,
    RUNS,
    STEPS,
    queued_images,
    scheduled_steps,
)


def test_the_table_is_consistent() -> None:
    names = [spec.name for spec in STEPS]
    assert len(names) == len(set(names)) == len(BY_NAME)
    for spec in STEPS:
        assert set(spec.wakes) <= set(names), spec.name  # a step wakes only steps that exist
        assert spec.name not in spec.wakes, spec.name  # rounds, not waking itself, repeat a step
        assert set(spec.brings_forward) <= set(names), spec.name
        assert spec.rounds >= 1
        assert (spec.name in RUNS) != spec.daemon_only, spec.name  # each step runs something, once
    assert set(ONE_SHOT_CYCLE) <= set(RUNS) and RECOVERY in RUNS
    # Write-back finishes what track recorded and frees quota: first in a cycle, first at start, and last.
    assert ONE_SHOT_CYCLE[0] == RECOVERY == names[0] == ONE_SHOT_CYCLE[-1] == "write_back"
    # Every step that can queue or finish work wakes what takes it further.
    assert BY_NAME["discover"].wakes == BY_NAME["discover_products"].wakes == ("submit",)
    assert BY_NAME["track"].wakes == ("write_back", "submit")
    assert BY_NAME["write_back"].rounds == 4  # backup, write, verify, and one spare


def test_cadence_comes_from_the_schedule_or_the_table() -> None:
    schedule = SimpleNamespace(tick=0.2, discover_every=30.0)
    assert {spec.name: spec.seconds(schedule) for spec in STEPS} == {
        "write_back": 0.2,
        "discover": 30.0,
        "track": 0.2,
        "submit": 0.2,
        "housekeeping": 600.0,
        "discover_products": 60.0,
    }
    assert [spec.name for spec, _ in scheduled_steps()] == ["write_back", "discover", "track", "submit", "housekeeping"]


def test_discovery_wakes_submit_only_when_it_queued() -> None:
    assert queued_images({"queued": 2}) and not queued_images({"baseline": 5}) and not queued_images(None)


def test_the_daemon_and_the_one_shot_runner_read_the_table(monkeypatch) -> None:
    from retouch.sync.runtime import work_cycle
    from retouch.sync.scheduler import Daemon

    ran: list[str] = []

    def recorder(name: str):
        async def step(_ctx) -> None:
            ran.append(name)

        return step

    monkeypatch.setattr(order, "RUNS", {name: recorder(name) for name in RUNS})
    monkeypatch.setattr(order, "ONE_SHOT_CYCLE", ("track", "submit"))
    asyncio.run(work_cycle(SimpleNamespace()))
    assert ran == ["track", "submit"]

    monkeypatch.setattr(order, "STEPS", (order.StepOrder("submit", 5.0), order.StepOrder("track", "tick")))
    daemon = Daemon.__new__(Daemon)
    daemon.ctx = SimpleNamespace(settings=SimpleNamespace(schedule=SimpleNamespace(tick=0.5)))
    assert [(name, every) for name, _, every in daemon._steps()] == [("submit", 5.0), ("track", 0.5)]
