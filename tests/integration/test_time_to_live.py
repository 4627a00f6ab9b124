"""What keeps a new photo's way to the store short: a job is polled when it should be done (not at
the poll quota's even spread), a webhook that ends a job is acted on at once, and write-back takes
an image from enhanced to done in one run, looking again as soon as Shopify may be ready.
The sandboxes are real; the steps are driven in-process so each decision can be read back."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from conftest import pipeline_settings, run_async
from lifecycle_kit import put_in_state
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.providers.base import WebhookEvent
from retouch.storage.models import ImageState, JobState
from retouch.sync.config import load_settings
from retouch.sync.decisions import verify_delay
from retouch.sync.pipeline import discover, submit, track, write_back
from retouch.sync.runtime import open_context
from retouch.sync.scheduler import WEBHOOK_DEBOUNCE, Daemon

DOCUMENTED = 'window = "1h", jobs = 5, images = 25, polls = 120, active_jobs = 1'
WEBHOOKS = '[server]\nlisten = "127.0.0.1:9"\npublic_url = "https://retouch.example.com"\nsafety_poll_every = "1h"\n'


def shipped_polling(shop, provider, tmp_path: Path, poll_every: str | None = None, **options):
    """The tests' config with [schedule] poll_every unset (the shipped default) or set to `poll_every`."""
    pipeline_settings(shop, provider, tmp_path, limits=DOCUMENTED, **options)
    path = tmp_path / "config.toml"
    line = f'poll_every = "{poll_every}"' if poll_every else ""
    path.write_text(path.read_text().replace('poll_every = "0.3s"', line))
    return load_settings(path)


def test_poll_spacing_follows_the_quota_not_an_even_spread(shop, provider, tmp_path: Path) -> None:
    settings = shipped_polling(shop, provider, tmp_path)
    assert settings.poll_floor == 30.0  # 120 polls an hour, spread evenly
    assert settings.poll_spacing == settings.schedule.tick  # but a job is looked at when it should be done
    assert shipped_polling(shop, provider, tmp_path, "45s").poll_spacing == 45.0  # the owner's word wins


def test_a_job_is_first_polled_at_its_expected_end_not_after_the_quotas_spread(shop, tmp_path: Path) -> None:
    fast = AigenSandbox(seconds_per_item=0.2)
    server = fast.start()
    try:
        shop.seed(products=1, images_per_product=1, seed=31)
        settings = shipped_polling(shop, fast, tmp_path)

        async def scenario():
            async with open_context(settings) as ctx:
                await discover(ctx)
                # The clock stands still during submit, so a stalled CI machine cannot stretch the
                # measured delay: next_poll_at is exactly "now" plus the chosen first-poll delay.
                before = time.time()
                ctx.clock = lambda: before
                assert await submit(ctx) == 1
                (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
                assert ctx.settings.poll_floor == 30.0
                return job.next_poll_at - before

        first_poll_in = run_async(scenario())
    finally:
        server.stop()
    # Nothing learned yet: one tick (0.2 s here), not the 30 s of 120 polls spread over an hour.
    assert first_poll_in == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("images", "kind", "final", "debounced"),
    [
        (1, "enhancement.item.completed", False, False),  # a one-image job: nothing more to wait for
        (2, "enhancement.completed", True, False),  # the job is over
        (2, "enhancement.item.completed", False, True),  # more items may follow in the same burst
    ],
)
def test_a_webhook_is_debounced_only_when_more_events_of_the_job_may_follow(
    shop, tmp_path: Path, images: int, kind: str, final: bool, debounced: bool
) -> None:
    slow = AigenSandbox(seconds_per_item=30)
    server = slow.start()
    try:
        shop.seed(products=1, images_per_product=images, seed=32)
        settings = pipeline_settings(shop, slow, tmp_path, extra=WEBHOOKS)

        async def scenario():
            async with open_context(settings) as ctx:
                daemon = Daemon(ctx)
                await discover(ctx)
                assert await submit(ctx) == images
                (job,) = ctx.store.jobs_in_state(JobState.SUBMITTED)
                assert len(ctx.store.job_images(job.id)) == images
                ctx.store.update_job(job.id, next_poll_at=time.time() + 3600)  # the safety poll, far away
                # The clock stands still while the event is handled, so a stalled CI machine
                # cannot widen the measured wait (it once read 1.1 s for a 0 s answer).
                arrived = time.time()
                ctx.clock = lambda: arrived
                daemon.on_provider_event(
                    WebhookEvent(event_id="evt_1", provider_job_id=job.provider_job_id, kind=kind, final=final)
                )
                return ctx.store.job(job.id).next_poll_at - arrived

        wait = run_async(scenario())
    finally:
        server.stop()
    assert wait == pytest.approx(WEBHOOK_DEBOUNCE if debounced else 0.0)


def test_aigen_marks_only_the_job_event_as_final(provider) -> None:
    import hashlib
    import hmac
    import json

    from conftest import PROVIDER_KEY
    from retouch.plugin.providers.aigenstudio.plugin import AigenProvider, AigenSettings
    from retouch.plugin.providers.base import ProviderConfig

    plugin = AigenProvider(
        ProviderConfig(
            api_key=PROVIDER_KEY,
            base_url=provider.base_url,
            timeout=5.0,
            public_url="https://retouch.example.com",
            settings=AigenSettings(),
        )
    )
    secret = hashlib.sha256(PROVIDER_KEY.encode()).hexdigest().encode()

    def deliver(kind: str) -> WebhookEvent:
        body = json.dumps(
            {"type": kind, "enhancement_id": "enh_1", "item": {"external_id": "1", "status": "completed"}}
        ).encode()
        stamp, event_id = str(int(time.time())), f"evt_{kind}"
        signature = hmac.new(secret, f"{stamp}.{event_id}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"X-Aigen-Signature": f"v1={signature}", "X-Aigen-Timestamp": stamp, "X-Aigen-Event-Id": event_id}
        return plugin.verify_webhook(None, headers, body, now=time.time(), skew=300.0)

    assert deliver("enhancement.completed").final
    assert not deliver("enhancement.item.completed").final


def test_one_write_back_run_takes_an_image_from_enhanced_to_live(shop, provider, tmp_path: Path) -> None:
    """backup -> write -> verify follow each other in one run (the write-back job cannot re-schedule
    itself while it runs, so a follow-up would wait a whole tick per step)."""
    shop.seed(products=1, images_per_product=1, seed=33)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await submit(ctx)
            for _ in range(100):
                await track(ctx)
                if ctx.store.images_in_state(ImageState.ENHANCED):
                    break
                time.sleep(0.05)
            daemon = Daemon(ctx)
            await daemon._guarded("write_back", write_back)
            return [i.state for i in ctx.store.images_in_state(*ImageState)]

    states = run_async(scenario())
    # Written, and READY already or waiting a fraction of a second for Shopify: never still backed up.
    assert states in (["done"], ["written"])


def test_write_back_runs_when_its_earliest_image_is_due(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=1, images_per_product=1, seed=34)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            daemon = Daemon(ctx)
            daemon.scheduler = AsyncIOScheduler()
            later = datetime.now(daemon.scheduler.timezone) + timedelta(hours=1)
            daemon.scheduler.add_job(lambda: None, "interval", hours=1, id="write_back", next_run_time=later)
            daemon.scheduler.start(paused=True)
            try:
                (image,) = ctx.store.images_in_state(ImageState.DISCOVERED)
                due = time.time() + 60  # far enough ahead that a stalled CI machine cannot pass it
                put_in_state(ctx.store, image.id, ImageState.WRITTEN, next_attempt_at=due)
                assert ctx.store.next_attempt_due(ImageState.WRITTEN) == due
                daemon._write_back_when_due()
                return due, daemon.scheduler.get_job("write_back").next_run_time.timestamp()
            finally:
                daemon.scheduler.shutdown(wait=False)

    due, runs_at = run_async(scenario())
    assert abs(runs_at - due) < 0.01  # not an hour later


def test_next_attempt_due_reads_now_for_an_image_with_no_wait(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=1, images_per_product=2, seed=35)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario():
        async with open_context(settings) as ctx:
            assert ctx.store.next_attempt_due(ImageState.WRITTEN) is None
            await discover(ctx)
            first, second = ctx.store.images_in_state(ImageState.DISCOVERED)
            put_in_state(ctx.store, first.id, ImageState.WRITTEN, next_attempt_at=time.time() + 60)
            put_in_state(ctx.store, second.id, ImageState.WRITTEN, next_attempt_at=None)
            return ctx.store.next_attempt_due(ImageState.WRITTEN)

    assert run_async(scenario()) == 0.0


@pytest.mark.parametrize(
    ("age", "tick", "expected"),
    [
        (0.0, 2.0, 0.25),
        (0.3, 2.0, 0.25),
        (1.0, 2.0, 0.5),
        (3.0, 2.0, 1.5),
        (60.0, 2.0, 2.0),
        (60.0, 0.1, 0.25),
    ],
)
def test_verify_delay_looks_again_soon_then_at_most_every_tick(age: float, tick: float, expected: float) -> None:
    assert verify_delay(age, tick) == expected
