"""The soak harness works (bench/soak.py at a small size, the real daemon against the sandboxes with
faults on): what holds at any size is checked, not figures or times — nothing crashed, every promise
held, work went through, faults were really injected, and the file descriptors and asyncio tasks did
not grow with the images processed (beyond a small slack: a pooled connection or a step's tasks alive
at the moment of a sample). Memory is reported, not asserted: 30 s is too short to judge a 10% trend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from proof import rows_from  # noqa: E402
from soak import FD_SLACK, FIGURES, TASK_SLACK, Figures, Sample  # noqa: E402


def test_a_small_soak_holds_every_promise_and_leaks_no_fds_or_tasks() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--seconds",
            "25",
            "--batch",
            "8",
            "--arrive-every",
            "2.5",
            "--window",
            "5",
            "--fault-rate",
            "0.2",
            "--sample-every",
            "2",
            "--drain-timeout",
            "180",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = done.stdout + done.stderr
    [row] = rows_from(done.stdout)
    figures = json.loads(next(line for line in done.stdout.splitlines() if line.startswith(FIGURES))[len(FIGURES) :])
    assert row.suite == "soak" and row.command.startswith(".venv/bin/python bench/soak.py")
    assert (row.crashes, row.duplicates, row.double_charges, row.originals_lost) == (0, 0, 0, 0), row
    assert figures["problems"] == [], figures["problems"]
    assert figures["images"] >= 40 and figures["states"].get("done", 0) > 0, figures["states"]  # 10 arrivals of 8
    assert figures["faults"]["provider"] > 0 and figures["faults"]["shopify_http"] > 0, figures["faults"]
    loaded = figures["samples"][figures["warm_samples"] :]
    assert len(loaded) >= 4, figures["samples"]
    assert all(s["tasks"] is not None for s in loaded), "the metrics endpoint gave no retouch_asyncio_tasks"
    # The floor of each count at the start and the end (what is in flight at a sample comes on top).
    judged = Figures(
        seconds=figures["seconds"],
        images=figures["images"],
        faults=figures["faults"],
        samples=[Sample(**sample) for sample in figures["samples"]],
        warm_samples=figures["warm_samples"],
    )
    assert judged.figure("fds", "end") <= judged.figure("fds", "start") + FD_SLACK, loaded
    assert judged.figure("tasks", "end") <= judged.figure("tasks", "start") + TASK_SLACK, loaded
    assert done.returncode == 0 or figures["flatness"], output[-3000:]
