"""The pipeline's order, declared once: its steps, how often each runs, which step wakes which, and how
many rounds a step runs while it makes progress. The daemon (sync/scheduler.py) and the one-shot runner
(sync/runtime.py `work_cycle`, which `resync` drives) both read this table; nothing else names the order.

    recovery first:  write_back            (an append in flight at a crash is adopted before discovery looks)
    daemon:          each step on its cadence, and at once when a step before it made progress:
                       discover / discover_products --queued--> submit
                       track --result--> write_back, submit  (a finished job frees quota)
                       write_back runs up to 4 rounds in one go (backup -> write -> verify, one spare)
                     after a step, the steps whose work falls due before their next tick are
                     brought forward (track: the earliest poll; write_back: the earliest waiting image)
    one shot:        write_back, track, submit, write_back (frees quota and finishes images first)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .context import Context
from .discover import discover
from .housekeeping import housekeeping
from .submit import submit
from .track import track
from .writeback import write_back

Step = Callable[[Context], Awaitable[object]]

TICK = "tick"  # [schedule] tick
DISCOVER_EVERY = "discover_every"  # [schedule] discover_every


def made_progress(result: object) -> bool:
    return bool(result)


def queued_images(result: object) -> bool:
    """A discovery pass woke submit only when it queued something (its counts say `queued`)."""
    return isinstance(result, dict) and bool(result.get("queued"))


@dataclass(frozen=True)
class StepOrder:
    name: str
    cadence: str | float  # a [schedule] key, or seconds
    wakes: tuple[str, ...] = ()  # steps run at once when this one made progress
    progress: Callable[[object], bool] = made_progress  # what "made progress" means for this step's result
    rounds: int = 1  # runs in one go while each makes progress
    brings_forward: tuple[str, ...] = ()  # steps rescheduled to when their work falls due, after this one
    daemon_only: bool = False  # run by the daemon beside the table's steps, with its own callable

    def seconds(self, schedule: object) -> float:
        return float(getattr(schedule, self.cadence)) if isinstance(self.cadence, str) else float(self.cadence)


HOUSEKEEPING_EVERY = 600.0  # seconds between prunings of old quota events and webhook ids
# A Shopify product webhook runs "discover_products" at once; otherwise it looks this often (it
# only has work when webhooks arrived while the first full pass had not recorded the baseline yet).
PRODUCT_DISCOVERY_EVERY = 60.0

# In the order the daemon adds its jobs (all due at start, they first run in this order).
STEPS: tuple[StepOrder, ...] = (
    StepOrder("write_back", TICK, rounds=4, brings_forward=("write_back",)),
    StepOrder("discover", DISCOVER_EVERY, wakes=("submit",), progress=queued_images),
    StepOrder("track", TICK, wakes=("write_back", "submit"), brings_forward=("track", "write_back")),
    StepOrder("submit", TICK, brings_forward=("track",)),
    StepOrder("housekeeping", HOUSEKEEPING_EVERY),
    StepOrder(
        "discover_products", PRODUCT_DISCOVERY_EVERY, wakes=("submit",), progress=queued_images, daemon_only=True
    ),
)

# What each table step runs (the daemon-only steps bring their own).
RUNS: dict[str, Step] = {
    "write_back": write_back,
    "discover": discover,
    "track": track,
    "submit": submit,
    "housekeeping": housekeeping,
}

RECOVERY = "write_back"  # run once at start, before any other step
ONE_SHOT_CYCLE: tuple[str, ...] = ("write_back", "track", "submit", "write_back")

BY_NAME: dict[str, StepOrder] = {step.name: step for step in STEPS}


def step(name: str) -> StepOrder:
    return BY_NAME[name]


def scheduled_steps() -> list[tuple[StepOrder, Step]]:
    """The table's steps the scheduler runs with the pipeline's own functions, in order."""
    return [(spec, RUNS[spec.name]) for spec in STEPS if not spec.daemon_only]


async def one_shot_cycle(ctx: Context) -> None:
    """One pass of the work steps in ONE_SHOT_CYCLE's order."""
    for name in ONE_SHOT_CYCLE:
        await RUNS[name](ctx)
