"""The submit step's plan (sync/pipeline/submit_plan.py): which images go in the next job under the
quota, the day's budget and the balance's last refusal — without I/O."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from retouch.sync.pipeline.submit_plan import Hold, JobFacts, PauseForDay, Send, plan_job

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc).timestamp()


def queued(*rules: str | None, age: float = 10.0) -> list[SimpleNamespace]:
    created = datetime.fromtimestamp(T0 - age, timezone.utc)
    return [SimpleNamespace(id=n, rule=rule, created_at=created) for n, rule in enumerate(rules, 1)]


def facts(**changes) -> JobFacts:
    base = dict(now=T0, allowed=10, images_available=25, jobs_available=5, max_batch=10, max_hold=720.0)
    return JobFacts(**{**base, **changes})


def ids(plan) -> list[int]:
    assert isinstance(plan, Send), plan
    return [image.id for image in plan.images]


def test_a_job_takes_what_the_quota_allows() -> None:
    assert ids(plan_job(queued(*[None] * 12), facts())) == list(range(1, 11))
    assert ids(plan_job(queued(*[None] * 12), facts(allowed=4))) == [1, 2, 3, 4]
    assert plan_job(queued(None), facts(allowed=0)) == Hold("quota")


def test_a_small_job_waits_for_more_images_while_jobs_are_scarcer_than_images() -> None:
    # 2 jobs and 25 images left: a one-image job now would cost a job the window needs.
    few = facts(images_available=25, jobs_available=2, allowed=1)
    assert plan_job(queued(None, age=10.0), few) == Hold("quota")
    assert ids(plan_job(queued(None, age=800.0), few)) == [1]  # waited past max_hold: it goes


def test_the_days_budget_caps_the_job_or_pauses_for_the_day() -> None:
    assert ids(plan_job(queued(*[None] * 8), facts(budget_left=3))) == [1, 2, 3]
    assert plan_job(queued(None), facts(budget_left=0, budget_spent="today: 12 of 12 credits")) == PauseForDay(
        "today: 12 of 12 credits"
    )
    assert plan_job(queued(None), facts(allowed=0, budget_left=0)) == Hold("quota")  # the quota speaks first


def test_the_balances_last_refusal_caps_the_job() -> None:
    assert ids(plan_job(queued(*[None] * 8), facts(credit_cap="2"))) == [1, 2]
    assert ids(plan_job(queued(*[None] * 3), facts(credit_cap="junk"))) == [1, 2, 3]  # unreadable: no cap


def test_one_job_one_rule_the_oldest_images() -> None:
    plan = plan_job(queued("a", None, "a", "b", "a"), facts())
    assert ids(plan) == [1, 3, 5] and plan.rule == "a"
    assert ids(plan_job(queued("a", None, "a", "b", "a"), facts(allowed=2))) == [1, 3]
