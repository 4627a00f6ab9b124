"""Every provider job has a deadline (`[provider] max_job_age`), and ProductAI's FAILED / TIMEOUT end a
job at once. The pipeline in-process against the ProductAI sandbox (production profile) on loopback,
its clock a fake one the test moves from poll to poll: nothing sleeps through the schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import PRODUCTAI_KEY, PRODUCTAI_TABLE, FakeClock, provider_config_text, run_async, wait_for
from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.storage.models import ImageState, JobState
from retouch.sync.config import ConfigError, load_settings
from retouch.sync.deadline_decisions import (
    PROVIDER_TIMEOUT,
    expire_after_failed_poll,
    is_overdue,
    poll_at_or_before_deadline,
    timeout_message,
)
from retouch.sync.pipeline import discover, submit, track
from retouch.sync.runtime import open_context

# --- the pure decisions ---------------------------------------------------------------------------


def test_a_job_is_overdue_from_its_deadline_on() -> None:
    assert not is_overdue(age=599.9, max_job_age=600)
    assert is_overdue(age=600, max_job_age=600) and is_overdue(age=10_000, max_job_age=600)


def test_the_next_poll_is_never_after_the_deadline() -> None:
    assert poll_at_or_before_deadline(1_500.0, submitted_at=1_000.0, max_job_age=600) == 1_500.0
    assert poll_at_or_before_deadline(1_700.0, submitted_at=1_000.0, max_job_age=600) == 1_600.0


@pytest.mark.parametrize(
    "overdue,rate_limited,expire",
    [(False, False, False), (False, True, False), (True, True, False), (True, False, True)],
)
def test_a_failed_last_poll_ends_the_job_unless_it_was_a_429(overdue: bool, rate_limited: bool, expire: bool) -> None:
    assert expire_after_failed_poll(overdue=overdue, rate_limited=rate_limited) is expire


def test_the_timeout_message_names_the_age_and_the_last_status() -> None:
    message = timeout_message(max_job_age=7200, last_status="RUNNING")
    assert "max_job_age (2h)" in message and "RUNNING" in message and "retouch retry" in message


# --- against the sandbox --------------------------------------------------------------------------


@pytest.fixture
def production_pai():
    servers = []

    def start(**options) -> ProductAISandbox:
        # A budget the fake clock cannot trip: the sandbox counts in real time, the test's polls in fake time.
        sandbox = ProductAISandbox(
            **{
                "keys": {PRODUCTAI_KEY: 100_000},
                "job_seconds": 0.3,
                "rate_limit_scope": "key",
                "requests_per_window": 10_000,
                "profile": "production",
                **options,
            }
        )
        servers.append(sandbox.start())
        return sandbox

    yield start
    for server in servers:
        server.stop()


def settings_for(shop, tmp_path: Path, sandbox: ProductAISandbox, provider_extra: str = ""):
    text = provider_config_text(
        shop,
        tmp_path,
        provider="productai",
        base_url=sandbox.base_url,
        api_key=PRODUCTAI_KEY,
        table=PRODUCTAI_TABLE,
        new_only=False,
    )
    text = text.replace('timeout = "5s"\n', 'timeout = "5s"\n' + provider_extra)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path)


async def _poll_until_over(ctx, clock: FakeClock, limit: int = 200) -> list[float]:
    """Move the clock to each poll the pipeline schedules and let it poll; the times of the polls."""
    times: list[float] = []
    for _ in range(limit):
        jobs = ctx.store.jobs_in_state(JobState.SUBMITTED)
        if not jobs:
            return times
        clock.now = max(clock.now, jobs[0].next_poll_at or clock.now)
        if await track(ctx):
            times.append(clock.now)
    raise AssertionError(f"the job was still being polled after {limit} polls")


@pytest.mark.parametrize("ending,code", [("FAILED", "productai_failed"), ("TIMEOUT", "productai_timeout")])
def test_a_failed_or_timed_out_job_ends_failed_with_the_reason_after_one_poll(
    ending, code, shop, production_pai, tmp_path: Path
) -> None:
    sandbox = production_pai(give_up_seconds=0.5, job_seconds=60.0) if ending == "TIMEOUT" else production_pai()
    if ending == "FAILED":
        sandbox.add_fault("generate", mode="fail")
    shop.seed(products=1, images_per_product=1, seed=61)
    settings = settings_for(shop, tmp_path, sandbox)
    clock = FakeClock()

    async def scenario():
        async with open_context(settings) as ctx:
            ctx.clock = clock
            await discover(ctx)
            assert await submit(ctx) == 1
            (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
            wait_for(lambda: sandbox.job(int(job.provider_job_id))["status"] == ending, 30, what=f"the job {ending}")
            times = await _poll_until_over(ctx, clock)
            for _ in range(3):  # nothing is sent again by itself
                assert await submit(ctx) == 0
            return times, ctx.store.images_in_state(ImageState.FAILED), ctx.store.job(job.id)

    times, (image,), job = run_async(scenario())
    assert len(times) == 1 and job.polls == 1
    assert (image.error_code, image.error_message) == (code, f"ProductAI ended this job with {ending}")
    assert key_requests(sandbox) == {"generate": 1, "job": 1}


def key_requests(sandbox: ProductAISandbox) -> dict:
    return {k: v for k, v in sandbox.stats()["keys"][PRODUCTAI_KEY]["requests"].items() if v}


def test_a_job_that_never_finishes_ends_at_its_deadline_within_its_poll_schedule(
    shop, production_pai, tmp_path: Path
) -> None:
    sandbox = production_pai(job_seconds=100_000.0)  # never done while the test runs
    shop.seed(products=1, images_per_product=1, seed=62)
    settings = settings_for(shop, tmp_path, sandbox, provider_extra='max_job_age = "10m"\n')
    assert settings.max_job_age == 600.0
    clock = FakeClock()

    async def scenario():
        async with open_context(settings) as ctx:
            ctx.clock = clock
            await discover(ctx)
            assert await submit(ctx) == 1
            (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
            sent_at = clock.now
            times = await _poll_until_over(ctx, clock)
            for _ in range(3):
                clock.advance(3600)
                assert await submit(ctx) == 0 and await track(ctx) == 0
            return sent_at, times, ctx.store.images_in_state(ImageState.FAILED), ctx.store.job(job.id)

    sent_at, times, (image,), job = run_async(scenario())
    deadline = sent_at + 600.0
    # The last poll is the one at the deadline; every poll before it kept the provider's floor; none
    # came after it.
    assert abs(times[-1] - deadline) < 0.01 and all(t < deadline for t in times[:-1])
    floor = settings.poll_floor
    assert all(later - earlier >= floor - 1e-6 for earlier, later in zip(times, times[1:]))
    # The schedule's spacing doubles with the job's age: few polls for a job of unknown length.
    assert len(times) <= 10, times
    assert key_requests(sandbox) == {"generate": 1, "job": len(times)}
    assert (job.state, job.error_code, job.polls) == ("failed", PROVIDER_TIMEOUT, len(times))
    assert image.error_code == PROVIDER_TIMEOUT and "max_job_age (10m)" in image.error_message
    assert image.paid_attempts == 1  # the one generate: not sent again by itself


def test_max_job_age_defaults_to_the_providers_own_and_is_checked(shop, tmp_path: Path) -> None:
    class Offline:
        base_url = "http://127.0.0.1:9/v1"

    assert settings_for(shop, tmp_path, Offline).max_job_age == 3600.0  # ProductAI's declared default
    assert settings_for(shop, tmp_path, Offline, 'max_job_age = "90m"\n').max_job_age == 5400.0
    with pytest.raises(ConfigError) as caught:
        settings_for(shop, tmp_path, Offline, 'max_job_age = "soon"\n')
    assert str(caught.value).startswith("[provider] max_job_age: ")


def test_an_upscale_unfinished_at_the_deadline_leaves_the_generated_image(shop, production_pai, tmp_path: Path) -> None:
    sandbox = production_pai(upscale_seconds=100_000.0)  # the generate is quick, the upscale never ends
    shop.seed(products=1, images_per_product=1, seed=63)
    settings = settings_for(shop, tmp_path, sandbox, provider_extra='max_job_age = "10m"\n')
    settings = load_settings(_with_upscale(settings.path))
    clock = FakeClock()

    async def scenario():
        async with open_context(settings) as ctx:
            ctx.clock = clock
            await discover(ctx)
            assert await submit(ctx) == 1
            (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
            wait_for(lambda: sandbox.job(int(job.provider_job_id))["status"] == "COMPLETED", 30, what="generated")
            await _poll_until_over(ctx, clock)
            return ctx.store.job(job.id), ctx.store.images_in_state(ImageState.ENHANCED)

    job, (image,) = run_async(scenario())
    assert job.state == "finished"  # ended by its result, not by provider_timeout
    assert image.result_url and image.result_url.endswith(f"/{json_state(job)['generate_id']}.png")
    assert {k: v for k, v in sandbox.stats()["keys"][PRODUCTAI_KEY]["jobs_started"].items() if v} == {
        "generate": 1,
        "upscale": 1,
    }  # the upscale was paid once, and nothing more after the deadline


def _with_upscale(path: Path) -> Path:
    path.write_text(path.read_text().replace(PRODUCTAI_TABLE, PRODUCTAI_TABLE + "upscale = true\n"))
    return path


def json_state(job) -> dict:
    return json.loads(job.provider_state or "{}")
