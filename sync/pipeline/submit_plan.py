"""Which queued images go in the next job, decided without I/O: `plan_job(queued, facts) -> action`.

The submit step (pipeline/submit.py) reads the facts — the oldest queued images, what the quota
allows now, what today's budget leaves, the job size the balance last accepted — and executes the
action: `Hold` (nothing goes this tick), `PauseForDay` (the daily budget is spent) or `Send` (these
images, in one job). Pre-flight of the sources, the job's key and the request stay in the executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from retouch.storage.models import epoch

from ..credit_split import capped_size
from ..decisions import submit_size


@dataclass(frozen=True)
class JobFacts:
    now: float
    allowed: int  # images the quota lets one job carry now (QuotaLedger.batch_size)
    images_available: int  # images left in the quota's window
    jobs_available: int  # jobs left in the quota's window
    max_batch: int
    max_hold: float  # seconds a small job may wait for more images (window / jobs)
    budget_left: int | None = None  # images today's [budget] still allows; None: no cap
    budget_spent: str = ""  # "today: 10 of 12 credits", for the pause's reason
    credit_cap: str | None = None  # the job size the balance last accepted (credit_split.py), as stored


@dataclass(frozen=True)
class Hold:
    reason: str  # "quota": waiting for quota, or for more images to fill a job


@dataclass(frozen=True)
class PauseForDay:
    spent: str


@dataclass(frozen=True)
class Send:
    images: tuple[Any, ...]  # the rows, oldest first, all queued under one [[rules]] decision
    rule: str | None


JobAction = Union[Hold, PauseForDay, Send]


def plan_job(queued: Sequence[Any], facts: JobFacts) -> JobAction:
    """The next job from `queued` (oldest first, non-empty): the quota sizes it (decisions.submit_size),
    the day's budget and the balance's last refusal cap it, and it takes only the images queued under
    the oldest one's rule (one job, one set of options)."""
    size = submit_size(
        facts.allowed,
        images_available=facts.images_available,
        jobs_available=facts.jobs_available,
        max_batch=facts.max_batch,
        max_hold=facts.max_hold,
        oldest_wait=facts.now - epoch(queued[0].created_at),
    )
    if size == 0:
        return Hold("quota")
    if facts.budget_left == 0:
        return PauseForDay(facts.budget_spent)
    if facts.budget_left is not None:
        size = min(size, facts.budget_left)
    size = capped_size(size, facts.credit_cap)
    rule = queued[0].rule
    return Send(tuple(image for image in queued if image.rule == rule)[:size], rule)
