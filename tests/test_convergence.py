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

CI = settings(max_examples=12, stateful_step_count=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])


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
    machine = type(f"Convergence_{mode}", (ConvergenceMachine,), {
        "shop": shop, "provider": provider, "root": tmp_path, "mode": mode})
    run_state_machine_as_test(machine, settings=CI)
