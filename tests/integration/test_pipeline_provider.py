"""The pipeline against the AI Gen Studio sandbox: batching, idempotency after a crash, 429, 402,
partial completion and quotas. Real clients, real HTTP on loopback, steps driven in-process."""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import PROFILES, PROVIDER_KEY, FakeClock, pipeline_settings, run_async
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.storage.models import ImageState, JobState
from retouch.sync.pipeline import discover, submit, track
from retouch.sync.pipeline.context import PAUSED
from retouch.sync.runtime import open_context, run_until_settled

LIVE_KEY = "aigen_live_TESTSECRETlive77aa"


def key_stats(provider: AigenSandbox, key: str = PROVIDER_KEY) -> dict:
    return provider.stats()["keys"].get(key, {})


def test_batches_hold_at_most_20_images_and_all_get_done(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=5, images_per_product=5, seed=4)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            assert (await discover(ctx))["queued"] == 25
            await run_until_settled(ctx)
            return ctx.store.counts_by_state(), [j.image_count for j in ctx.store.jobs_in_state(JobState.FINISHED)]

    counts, batches = run_async(scenario())
    assert counts == {"done": 25}
    assert batches == [20, 5]
    stats = key_stats(provider)
    assert stats["creations"] == 2 and stats["images_charged"] == 25 and stats["rate_limited"] == 0


def test_crash_between_send_and_record_reuses_the_key(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=2, images_per_product=1, seed=5)
    settings = pipeline_settings(shop, provider, tmp_path)
    # The provider accepts the job, then the answer is lost (as if we crashed before storing it).
    provider.add_fault(endpoint="create", mode="drop_response", count=1)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            assert await submit(ctx) == 0
            (job,) = ctx.store.jobs_in_state(JobState.PENDING)
            ctx.store.update_job(job.id, next_attempt_at=None)  # the retry is due now
            return job.idempotency_key

    key = run_async(scenario())

    async def restart():  # a new process: new clients, same database
        async with open_context(settings) as ctx:
            assert await submit(ctx) == 2
            (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
            assert job.idempotency_key == key
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    assert run_async(restart()) == {"done": 2}
    stats = key_stats(provider)
    assert stats["creations"] == 1 and stats["replays"] == 1
    assert stats["images_charged"] == 2
    assert stats["charged_per_idempotency_key"] == {key: 2}


def test_429_is_honoured_with_retry_after_not_retried_blindly(shop, tmp_path: Path) -> None:
    # The provider allows one job per window; our config (wrongly) believes five. Its windows are
    # aligned to the epoch and its clock stands still half-way through one: a run that crosses the
    # hour cannot start a new window.
    window_start = 1_800_000_000.0  # a multiple of 3600
    strict = AigenSandbox(
        window_seconds=3600, jobs_per_window=1, seconds_per_item=0.1, clock=FakeClock(window_start + 1800)
    )
    server = strict.start()
    try:
        shop.seed(products=1, images_per_product=1, seed=6)
        settings = pipeline_settings(shop, strict, tmp_path)

        async def scenario():
            async with open_context(settings) as ctx:
                await discover(ctx)
                await run_until_settled(ctx)
                for _ in range(3):  # the merchant adds more photos
                    shop.add_product(title="More", tags=[], images=[{"filename": "m.jpg", "alt": "m"}])
                await discover(ctx)
                # The next submission meets the provider's real limit: one 429, then we wait.
                for _ in range(5):
                    await submit(ctx)
                    await track(ctx)
                return ctx.blocked_until() - time.time(), ctx.store.jobs_in_state(JobState.PENDING)

        wait, pending = run_async(scenario())
    finally:
        server.stop()
    stats = strict.stats()["keys"][PROVIDER_KEY]
    assert stats["creations"] == 1
    assert stats["rate_limited"] == 1  # five attempts, one request: the Retry-After was honoured
    # Its Retry-After is the rest of the current window (1800 s), less what the run took since.
    rest_of_window = 1800
    assert rest_of_window - 60 < wait <= rest_of_window
    assert len(pending) == 1 and pending[0].image_count == 3


def test_402_pauses_keeps_images_queued_and_resumes(shop, provider, tmp_path: Path) -> None:
    provider.add_live_key(LIVE_KEY, purchased=200, available=0)
    shop.seed(products=2, images_per_product=1, seed=7)
    settings = pipeline_settings(shop, provider, tmp_path, api_key=LIVE_KEY)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            assert await submit(ctx) == 0  # refused for credits: the next job is smaller (issue 23)
            assert ctx.paused() is None and ctx.store.counts_by_state() == {"discovered": 2}
            assert await submit(ctx) == 0  # even one image is refused: submissions pause
            paused = ctx.paused()
            assert paused and "insufficient_api_credits" in paused["reason"]
            # held in the pending job or the queue, not dropped
            assert ctx.store.counts_by_state() == {"submitted": 1, "discovered": 1}
            assert await submit(ctx) == 0  # still paused: no request
            provider.add_live_key(LIVE_KEY, purchased=200, available=100)
            # The pause's retry time has come (credits_retry would take minutes).
            ctx.store.set_meta(PAUSED, json.dumps({**paused, "retry_at": 0}))
            job = ctx.store.jobs_in_state(JobState.PENDING)[0]
            ctx.store.update_job(job.id, next_attempt_at=None)
            assert await submit(ctx) == 1
            assert ctx.paused() is None
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    assert run_async(scenario()) == {"done": 2}
    stats = key_stats(provider, LIVE_KEY)
    assert stats["insufficient_credits"] == 2
    assert stats["images_charged"] == 2


def incompressible_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), random.Random(8).randbytes(width * height * 3)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("provider", PROFILES, indirect=True)  # production: no status, partially_completed derived
def test_partial_completion_keeps_the_failed_items_reason(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=2, images_per_product=1, seed=8)
    # A good picture Shopify takes (up to 20 MB) but AI Gen Studio does not (over 10 MB): pre-flight
    # lets it through, and the provider fails that one item of the job.
    poster = shop.add_product("poster", images=[{"filename": "poster.png", "data": incompressible_png(2100, 1800)}])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await run_until_settled(ctx)
            (broken,) = ctx.store.images_in_state(ImageState.FAILED)
            return broken, ctx.store.counts_by_state(), ctx.store.jobs_in_state(JobState.FINISHED)

    broken, counts, jobs = run_async(scenario())
    assert counts == {"done": 2, "failed": 1}
    assert broken.media_id == poster["media"][0]["id"] and broken.job_id is not None  # sent, failed there
    assert broken.error_code == "source_too_large" and "10 MB" in broken.error_message
    assert len(jobs) == 1


def test_quotas_are_never_exceeded(shop, tmp_path: Path) -> None:
    window = 3.0
    tight = AigenSandbox(
        window_seconds=window, jobs_per_window=5, images_per_window=8, polls_per_window=6, seconds_per_item=0.05
    )
    server = tight.start()
    try:
        shop.seed(products=10, images_per_product=2, seed=9)
        settings = pipeline_settings(
            shop, tight, tmp_path, limits=f'window = "{window}s", jobs = 5, images = 8, polls = 6, active_jobs = 1'
        )

        async def scenario():
            async with open_context(settings) as ctx:
                await discover(ctx)
                await run_until_settled(ctx)
                return ctx.store.counts_by_state()

        counts = run_async(scenario())
    finally:
        server.stop()
    stats = tight.stats()["keys"][PROVIDER_KEY]
    assert counts == {"done": 20}
    assert stats["rate_limited"] == 0
    assert stats["images_charged"] == 20


async def submit_and_lose_the_answer(ctx, provider: AigenSandbox):
    """Queue the store's images and send one job that the provider accepts but whose answer is lost."""
    provider.add_fault(endpoint="create", mode="drop_response", count=1)
    await discover(ctx)
    assert await submit(ctx) == 0
    (job,) = ctx.store.jobs_in_state(JobState.PENDING)
    return job


def test_a_retry_sends_the_body_it_first_sent_even_after_a_config_change(shop, provider, tmp_path: Path) -> None:
    """The owner changes the preset between a lost answer and the retry: the retry still sends the
    first body under its key, so the provider replays the job instead of answering 409."""
    import dataclasses

    shop.seed(products=2, images_per_product=1, seed=10)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            job = await submit_and_lose_the_answer(ctx, provider)
            ctx.store.update_job(job.id, next_attempt_at=None)
            ctx.settings = dataclasses.replace(
                settings,
                provider_table=settings.provider_table.model_copy(update={"preset": "marketplace_clean_catalog"}),
            )
            assert await submit(ctx) == 2
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    assert run_async(scenario()) == {"done": 2}
    stats = key_stats(provider)
    assert stats["creations"] == 1 and stats["replays"] == 1 and stats["images_charged"] == 2


def test_409_idempotency_conflict_fails_the_job_loudly_with_the_reason(shop, provider, tmp_path: Path) -> None:
    """A key replayed with another body can only be a bug now (the body is stored with the key):
    the job fails with the reason, loudly, and is never resent."""
    from structlog.testing import capture_logs

    shop.seed(products=2, images_per_product=1, seed=10)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            job = await submit_and_lose_the_answer(ctx, provider)
            options = json.loads(job.options)
            # The bug this guards against: a stored body that no longer matches what was sent.
            ctx.store.update_job(
                job.id, next_attempt_at=None, options=json.dumps({**options, "preset": "marketplace_clean_catalog"})
            )
            with capture_logs() as events:
                assert await submit(ctx) == 0
                assert await submit(ctx) == 0  # a failed job is not sent again
            return ctx.store.job(job.id), ctx.store.job_images(job.id), events

    job, images, events = run_async(scenario())
    assert job.state == JobState.FAILED and job.error_code == "idempotency_conflict"
    assert [i.state for i in images] == ["failed", "failed"]
    assert all(i.error_code == "idempotency_conflict" and i.error_message for i in images)
    rejected = [e for e in events if e["event"] == "job_rejected"]
    assert len(rejected) == 1 and rejected[0]["log_level"] == "error"
    assert sorted(rejected[0]["media_ids"]) == sorted(i.media_id for i in images)
    stats = key_stats(provider)
    assert stats["creations"] == 1 and stats["images_charged"] == 2  # the conflict charged nothing


def test_a_webhook_during_a_poll_is_not_overwritten_by_the_safety_poll(shop, tmp_path: Path) -> None:
    """With webhooks, a poll that finds the job still running schedules the next one an hour away;
    a webhook that arrived while that poll was in flight must still bring the next poll forward."""
    import asyncio

    from retouch.plugin.providers.base import WebhookEvent
    from retouch.sync.scheduler import WEBHOOK_DEBOUNCE, Daemon

    slow = AigenSandbox(seconds_per_item=30)  # the job is still running at every poll of this test
    server = slow.start()
    try:
        shop.seed(products=1, images_per_product=1, seed=12)
        settings = pipeline_settings(
            shop,
            slow,
            tmp_path,
            extra='[server]\nlisten = "127.0.0.1:9"\n'
            'public_url = "https://retouch.example.com"\nsafety_poll_every = "1h"\n',
        )

        async def scenario():
            async with open_context(settings) as ctx:
                daemon = Daemon(ctx)
                await discover(ctx)
                assert await submit(ctx) == 1
                (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
                ctx.store.update_job(job.id, next_poll_at=None)
                slow.add_fault(endpoint="status", mode="hang", seconds=1.0)
                polling = asyncio.create_task(track(ctx))
                await asyncio.sleep(0.3)  # the poll is in flight
                daemon.on_provider_event(
                    WebhookEvent(
                        event_id="evt_1", provider_job_id=job.provider_job_id, kind="enhancement.item.completed"
                    )
                )
                assert await polling == 1
                return ctx.store.job(job.id).next_poll_at - time.time()

        wait = run_async(scenario())
    finally:
        server.stop()
    assert wait <= WEBHOOK_DEBOUNCE  # not the hour of the safety poll


def test_a_submit_with_nothing_queued_does_not_read_the_quota(shop, provider, tmp_path: Path) -> None:
    """Submit runs every tick, and most ticks have nothing to send: it stops at the empty queue,
    before rebuilding the quota ledger and counting active jobs (bench/overhead.py: idle CPU)."""
    settings = pipeline_settings(shop, provider, tmp_path)
    reads: list[str] = []

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            ctx.store.quota_events = lambda *args, **kwargs: reads.append("quota_events") or []
            jobs_in_state = ctx.store.jobs_in_state
            ctx.store.jobs_in_state = lambda *states: reads.append(f"jobs {sorted(states)}") or jobs_in_state(*states)
            return await submit(ctx)

    assert run_async(scenario()) == 0
    assert reads == [f"jobs {[JobState.PENDING]}"]  # only the check for a job whose send must be finished
