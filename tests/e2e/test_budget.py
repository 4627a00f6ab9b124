"""[budget] daily caps and `resync --max-credits`: never exceeded, counted from what the provider
reports; when reached, submissions pause until the next day and say so."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from conftest import (
    PRODUCTAI_KEY,
    PRODUCTAI_TABLE,
    PROVIDER_KEY,
    cli,
    pipeline_settings,
    provider_config_text,
    run_async,
    wait_for,
)
from retouch.storage.models import ImageState, JobState
from retouch.sync.config import load_settings
from retouch.sync.credit_split import after_refusal, capped_size
from retouch.sync.decisions import budget_left, last_midnight, next_midnight
from retouch.sync.pipeline import discover
from retouch.sync.runtime import open_context, work_cycle
from retouch.sync.waiting import queue_wait


@pytest.fixture(autouse=True)
def away_from_midnight() -> None:
    """The budget's day ends at local midnight, and these tests count today's jobs by the real
    clock: a test that crossed midnight would count two days. One that would start within two
    minutes of it waits until it has passed."""
    wait = next_midnight(time.time()) - time.time()
    if wait < 120:
        time.sleep(wait + 1)


pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def test_budget_left_takes_the_tighter_cap() -> None:
    assert budget_left(images_today=0, credits_today=0, max_images=None, max_credits=None, credits_per_image=5) is None
    assert budget_left(images_today=2, credits_today=10, max_images=3, max_credits=None, credits_per_image=5) == 1
    assert budget_left(images_today=2, credits_today=10, max_images=None, max_credits=24, credits_per_image=5) == 2
    assert budget_left(images_today=2, credits_today=10, max_images=3, max_credits=24, credits_per_image=5) == 1
    assert budget_left(images_today=5, credits_today=25, max_images=3, max_credits=20, credits_per_image=5) == 0
    assert budget_left(images_today=0, credits_today=0, max_images=None, max_credits=15, credits_per_image=5) == 3


def test_the_day_starts_at_local_midnight() -> None:
    now = 1_800_000_000.0
    start, end = last_midnight(now), next_midnight(now)
    assert start <= now < end and 23 * 3600 <= end - start <= 25 * 3600  # 23 or 25 h on a DST change
    assert last_midnight(end) == end


IN_FLIGHT = (ImageState.SUBMITTED, ImageState.ENHANCED, ImageState.BACKED_UP, ImageState.WRITTEN)


def drive(settings, *, clock=None, timeout: float = 90) -> dict:
    """Discover, then run work cycles in-process until nothing is in flight and the queue is either
    empty or held by a pause; return the image states and the pause."""

    async def scenario():
        async with open_context(settings) as ctx:
            if clock is not None:
                ctx.clock = clock
            await discover(ctx)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                await work_cycle(ctx)
                queued = ctx.store.images_in_state(ImageState.DISCOVERED)
                paused = ctx.paused()
                held = paused is not None and paused["retry_at"] > ctx.clock()
                if not ctx.store.images_in_state(*IN_FLIGHT) and (not queued or held):
                    break
                await asyncio.sleep(0.2)
            states = {i.media_id: i.state for i in ctx.store.images_in_state(*ImageState)}
            return {"states": states, "paused": ctx.paused()}

    return run_async(scenario(), timeout=timeout + 30)


LIVE_KEY = "aigen_live_budget_tests_key"


def charged(provider, key: str = PROVIDER_KEY) -> int:
    return provider.stats()["keys"][key]["images_charged"]


def test_max_images_per_day_pauses_until_the_next_day(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=5, images_per_product=1, seed=31)
    settings = pipeline_settings(shop, provider, tmp_path, extra="[budget]\nmax_images_per_day = 3\n")
    today = drive(settings)
    states = list(today["states"].values())
    assert states.count("done") == 3 and states.count("discovered") == 2  # the rest stay queued
    assert charged(provider) == 3
    assert "daily budget reached (today: 3 of 3 images)" in today["paused"]["reason"]
    assert today["paused"]["retry_at"] == next_midnight(today["paused"]["since"])

    ahead = next_midnight(today["paused"]["since"]) + 60 - time.time()  # the clock says: tomorrow
    later = drive(settings, clock=lambda: time.time() + ahead)
    assert list(later["states"].values()).count("done") == 5
    assert charged(provider) == 5 and later["paused"] is None


def test_max_credits_per_day_counts_the_providers_credits(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=4, images_per_product=1, seed=32)
    # A live key (a sandbox key is free: the provider reports 0 credits). AI Gen Studio charges 5
    # credits an image, so 12 credits a day pay for 2 images.
    provider.add_live_key(LIVE_KEY, purchased=500, available=500)
    settings = pipeline_settings(
        shop, provider, tmp_path, api_key=LIVE_KEY, extra="[budget]\nmax_credits_per_day = 12\n"
    )
    result = drive(settings)
    assert list(result["states"].values()).count("done") == 2 and charged(provider, LIVE_KEY) == 2
    assert provider.stats()["keys"][LIVE_KEY]["credits"]["used"] == 10
    assert "today: 10 of 12 credits" in result["paused"]["reason"]
    status = cli("status", "--json", config=settings.path)
    assert json.loads(status.stdout)["budget"] == "today: 10 of 12 credits"
    assert "budget today: 10 of 12 credits" in cli("status", config=settings.path).stdout


def test_max_credits_per_day_in_productai_tokens(shop, productai, tmp_path: Path) -> None:
    shop.seed(products=4, images_per_product=1, seed=33)
    config = tmp_path / "config.toml"
    config.write_text(
        provider_config_text(
            shop,
            tmp_path,
            provider="productai",
            base_url=productai.base_url,
            api_key=PRODUCTAI_KEY,
            table=PRODUCTAI_TABLE,
            new_only=False,
            extra="[budget]\nmax_credits_per_day = 7\n",
        )
    )
    result = drive(load_settings(config))
    # kontext-pro: 3 tokens an image, so 7 tokens pay for 2.
    assert list(result["states"].values()).count("done") == 2
    assert productai.stats()["keys"][PRODUCTAI_KEY]["tokens_spent"] == 6
    assert "today: 6 of 7 tokens" in result["paused"]["reason"]


def test_resync_max_credits_sends_only_what_it_pays_for(shop, provider, write_config, tmp_path: Path) -> None:
    shop.seed(products=4, images_per_product=1, seed=34)
    config = write_config()
    assert cli("resync", "--all", "--yes", "--max-credits", "10", config=config).returncode == 0
    states = [row["state"] for row in json.loads(cli("status", "--json", config=config).stdout)["recent_failures"]]
    assert states == []  # nothing failed
    db_states = run_async(_states(load_settings(config)))
    assert sorted(db_states.values()) == ["done", "done", "skipped", "skipped"]
    assert charged(provider) == 2
    dry = cli("resync", "--all", "--dry-run", "--max-credits", "5", config=config)
    assert "1 image(s) of 2 (--max-credits 5) would be sent" in dry.stdout


async def _states(settings) -> dict[str, str]:
    async with open_context(settings) as ctx:
        return {i.media_id: i.state for i in ctx.store.images_in_state(*ImageState)}


def test_resync_max_credits_refuses_beside_a_running_daemon(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    config = write_config()
    daemon(config)

    def daemon_pid() -> int | None:
        status = cli("status", "--json", config=config)
        return json.loads(status.stdout)["daemon"]["pid"] if status.returncode == 0 else None

    wait_for(daemon_pid, 30, what="the daemon to hold its database")
    done = cli("resync", "--all", "--yes", "--max-credits", "10", config=config)
    assert done.returncode == 2 and "[budget] max_credits_per_day" in done.stderr


def test_short_balance_sends_what_it_pays_for(shop, provider, tmp_path: Path) -> None:
    """10 credits left, 6 new photos at 5 credits: the 30-credit job is refused, smaller ones go until a
    single image is refused; 2 are sent, the rest wait with the reason (issue 23)."""
    shop.seed(products=6, images_per_product=1, seed=35)
    provider.add_live_key(LIVE_KEY, purchased=500, available=10)
    settings = pipeline_settings(shop, provider, tmp_path, api_key=LIVE_KEY)

    async def scenario() -> dict:
        async with open_context(settings) as ctx:
            await discover(ctx)
            deadline = time.monotonic() + 90
            # Until submissions pause and every job the provider accepted has finished.
            while time.monotonic() < deadline:
                await work_cycle(ctx)
                settled = not ctx.store.images_in_state(ImageState.ENHANCED, ImageState.BACKED_UP, ImageState.WRITTEN)
                if ctx.paused() and not ctx.jobs(JobState.SUBMITTED) and settled:
                    break
                await asyncio.sleep(0.2)
            return {"states": [i.state for i in ctx.store.images_in_state(*ImageState)], "paused": ctx.paused()}

    result = run_async(scenario(), timeout=120)
    states = result["states"]
    assert states.count("done") == 2 and "failed" not in states, result
    assert states.count("discovered") + states.count("submitted") == 4  # waiting: queued, or in the refused job
    assert charged(provider, LIVE_KEY) == 2
    assert "insufficient_api_credits: buy credits in AI Gen Studio" in result["paused"]["reason"]
    status = cli("status", config=settings.path)
    assert "insufficient_api_credits" in status.stdout, status.stdout
    # The ETA counts the pause, and says so; the credits spent are shown (issue 23).
    assert "queue ETA: 0 min" not in status.stdout and "(paused: tried again at " in status.stdout
    assert "credits spent: 10 credits today, 10 in total" in status.stdout
    report = json.loads(cli("status", "--json", config=settings.path).stdout)
    assert report["credits_spent"] == {"today": 10, "total": 10, "unit": "credits"}
    assert report["queue_eta_seconds"] > 0 and report["queue_waits_for"].startswith("paused: tried again at ")


def test_credit_split_halves_and_caps() -> None:
    assert [after_refusal(n) for n in (6, 3, 1, 0)] == [3, 1, 0, 0]
    assert capped_size(10, None) == 10 and capped_size(10, "3") == 3 and capped_size(2, "3") == 2
    assert capped_size(10, "bad") == 10 and capped_size(10, "0") == 10


def test_queue_wait_counts_a_pause_and_a_429_first() -> None:
    now = 1000.0
    assert queue_wait(queued=0, quota_eta=0, now=now, paused={"retry_at": now + 600}, blocked_until=0) == (0.0, None)
    assert queue_wait(queued=3, quota_eta=0, now=now, paused=None, blocked_until=0) == (0.0, None)
    eta, why = queue_wait(queued=3, quota_eta=3600, now=now, paused={"retry_at": now + 600}, blocked_until=0)
    assert eta == 4200 and why.startswith("paused: tried again at ")
    eta, why = queue_wait(
        queued=3, quota_eta=0, now=now, paused={"retry_at": now + 60, "budget": True}, blocked_until=now + 120
    )
    assert eta == 120 and why.startswith("rate limited until ")
    assert queue_wait(queued=3, quota_eta=0, now=now, paused={"retry_at": now - 1}, blocked_until=0) == (0.0, None)


def test_status_says_when_the_quota_resets(shop, provider, tmp_path: Path) -> None:
    """Two images an hour, three queued: two go, and status says the third waits for the quota (issue 23)."""
    shop.seed(products=3, images_per_product=1, seed=36)
    settings = pipeline_settings(
        shop, provider, tmp_path, limits='window = "1h", jobs = 5, images = 2, polls = 120, active_jobs = 1'
    )

    async def scenario() -> list[str]:
        async with open_context(settings) as ctx:
            await discover(ctx)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await work_cycle(ctx)
                states = [i.state for i in ctx.store.images_in_state(*ImageState)]
                if states.count("done") == 2:
                    return states
                await asyncio.sleep(0.2)
            return states

    states = run_async(scenario(), timeout=120)
    assert states.count("done") == 2 and states.count("discovered") == 1, states
    report = json.loads(cli("status", "--json", config=settings.path).stdout)
    assert report["queue_waits_for"].startswith("quota resets at "), report
    assert report["queue_eta_seconds"] > 0
    assert "(quota resets at " in cli("status", config=settings.path).stdout
