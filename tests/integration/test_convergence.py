"""Convergence under faults (issue 6, suite 2), at CI size: see tests/convergence_machine.py.

Hypothesis runs the state machine with a fixed seed (derandomize), so a CI failure is the same
failure on a laptop; bench/convergence.py runs the same machine with many more examples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from convergence_machine import ConvergenceMachine, make_sandboxes

CI = settings(
    max_examples=12,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[tuple]:
    # Hundreds of pipeline steps: their info lines would cost more than the steps (restored after).
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    shop, provider, stops = make_sandboxes()
    yield shop, provider
    for stop in stops:
        stop()
    structlog.configure(**saved)


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_the_pipeline_converges_under_faults(sandboxes, tmp_path: Path, mode: str) -> None:
    shop, provider = sandboxes
    machine = type(
        f"Convergence_{mode}",
        (ConvergenceMachine,),
        {"shop": shop, "provider": provider, "root": tmp_path, "mode": mode},
    )
    run_state_machine_as_test(machine, settings=CI)


# Issue 19: reloads that flip `[writeback] mode` (at any moment, and mid-write) and full passes over
# the catalog, among the merchant's edits, faults and crashes; each image is checked in the mode its
# write started in (fewer examples: the two runs above cover the rest). At this size (and at 20
# examples of 30 steps) the machine did not happen upon the reported bug by itself; the bug's own
# sequence is tests/integration/test_intent.py.
RELOADS = settings(CI, max_examples=8)


def test_the_pipeline_converges_when_a_reload_flips_the_mode(sandboxes, tmp_path: Path) -> None:
    shop, provider = sandboxes
    machine = type(
        "Convergence_reloads",
        (ConvergenceMachine,),
        {"shop": shop, "provider": provider, "root": tmp_path, "mode": "append", "reloads": True},
    )
    run_state_machine_as_test(machine, settings=RELOADS)
