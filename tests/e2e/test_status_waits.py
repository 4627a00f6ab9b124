"""Each waiting image's reason and time in `status` (issue 23: "a held photo waited 12 minutes with no word
why"): decided in sync/waiting.py from the rows and the scheduler's facts, grouped by reason, with titles."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import cli, pipeline_settings, run_async
from retouch.sync.pipeline import discover, submit
from retouch.sync.runtime import open_context
from retouch.sync.waiting import QueueFacts, group_line, grouped, image_waits

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NOW = 1_800_000_000.0


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


def row(n: int, state: str = "discovered", source: bool = True, title: str | None = None, **fields):
    return SimpleNamespace(
        id=n,
        state=state,
        source_url="https://cdn/x.jpg" if source else None,
        filename=f"photo-{n}.jpg",
        product_id=f"gid://shopify/Product/{n}",
        product_title=title,
        next_attempt_at=fields.get("next_attempt_at"),
        error_code=fields.get("error_code"),
        error_message=fields.get("error_message"),
    )


def facts(**fields) -> QueueFacts:
    return QueueFacts(
        **{"now": NOW, "tick": 5.0, "provider": "AI Gen Studio", "per_window": 2, "window": 3600.0, **fields}
    )


def reasons(images, **fields) -> list[str]:
    return [wait.reason for wait in image_waits(images, facts(**fields))]


def test_each_queued_image_says_its_window_of_the_quota() -> None:
    images = [row(n, title=f"Shirt {n}") for n in range(1, 6)]
    assert reasons(images, go_now=0, quota_free_at=NOW + 600) == [
        f"quota resets at {clock(NOW + 600)}",
        f"quota resets at {clock(NOW + 600)}",
        f"quota: sent around {clock(NOW + 4200)}",
        f"quota: sent around {clock(NOW + 4200)}",
        f"quota: sent around {clock(NOW + 7800)}",
    ]
    # Two may go now: those two are next, the rest wait for the images counted now to leave the window.
    assert reasons(images[:3], go_now=2) == [
        "next to be sent",
        "next to be sent",
        f"quota: sent by {clock(NOW + 3600)}",
    ]


def test_hold_pause_budget_429_retry_and_shopify_processing() -> None:
    waiting = [row(1), row(2, source=False), row(3, next_attempt_at=NOW + 90, error_code="source_unavailable"), row(4)]
    assert reasons(waiting, go_now=2, hold_until=NOW + 1800) == [
        f"held to fill a batch until {clock(NOW + 1800)}",
        f"waiting for Shopify to process (checked again at {clock(NOW + 5)})",
        f"retry at {clock(NOW + 90)} after source_unavailable",
        f"held to fill a batch until {clock(NOW + 1800)}",
    ]  # the unready and the retried take no place in line
    assert reasons(
        waiting[:1], go_now=2, paused={"reason": "insufficient_api_credits: buy credits", "retry_at": NOW + 900}
    ) == [f"paused: insufficient_api_credits: buy credits (tried again at {clock(NOW + 900)})"]
    midnight = NOW + 5000
    assert reasons(waiting[:1], paused={"reason": "daily budget reached", "retry_at": midnight, "budget": True}) == [
        f"budget: next credits at {clock(midnight)}"
    ]
    assert reasons([row(1), row(4)], go_now=2, budget_left=1, next_midnight=midnight) == [
        "next to be sent",
        f"budget: next credits at {clock(midnight)}",
    ]
    assert reasons(waiting[:1], go_now=2, blocked_until=NOW + 30) == [f"rate limited until {clock(NOW + 30)}"]
    assert reasons(waiting[:1], slot_busy=True) == ["waiting for the job at AI Gen Studio to finish"]
    later = [
        row(5, state="submitted"),
        row(6, state="written"),
        row(7, state="backed_up", next_attempt_at=NOW + 60, error_code="shopify_5xx"),
    ]
    assert reasons(later) == [
        "being enhanced by AI Gen Studio",
        f"waiting for Shopify to process the new picture (checked again at {clock(NOW + 5)})",
        f"retry at {clock(NOW + 60)} after shopify_5xx",
    ]


def test_identical_reasons_are_grouped_with_a_few_titles() -> None:
    images = [row(n, title=f"Shirt {n}") for n in range(1, 6)] + [row(9, source=False)]
    groups = grouped(image_waits(images, facts(go_now=0, quota_free_at=NOW + 600, per_window=4)))
    assert [group_line(g) for g in groups] == [
        f"1 image: waiting for Shopify to process (checked again at {clock(NOW + 5)}) (photo-9.jpg)",
        f"4 images: quota resets at {clock(NOW + 600)} (Shirt 1, Shirt 2, Shirt 3, …)",
        f"1 image: quota: sent around {clock(NOW + 4200)} (Shirt 5)",
    ]


def _queue_and_submit_once(settings) -> None:
    async def scenario() -> None:
        async with open_context(settings) as ctx:
            await discover(ctx)
            await submit(ctx)

    run_async(scenario(), timeout=60)


def test_status_says_a_held_image_waits_to_fill_a_batch(shop, provider, tmp_path: Path) -> None:
    """Two jobs of ten an hour and one new photo: sending it alone could cost the hour a job, so it is held
    for half an hour; status says so, and until when (it said `pending: 1, queue ETA: 0 min`)."""
    shop.seed(products=1, images_per_product=1, seed=41)
    settings = pipeline_settings(shop, provider, tmp_path, limits='window = "1h", jobs = 2, images = 25, polls = 120')
    _queue_and_submit_once(settings)
    report = json.loads(cli("status", "--json", config=settings.path).stdout)
    assert report["counts"]["discovered"] == 1
    [group] = report["waiting"]
    assert group["reason"].startswith("held to fill a batch until ") and group["images"] == 1, group
    until = datetime.fromisoformat(group["until"]).timestamp()
    assert group["reason"] == f"held to fill a batch until {clock(until)}"
    text = cli("status", config=settings.path).stdout
    assert f"1 image: held to fill a batch until {clock(until)}" in text, text


def test_status_groups_the_images_waiting_for_the_quota(shop, provider, tmp_path: Path) -> None:
    """Two images an hour, five queued: two go, three wait for the quota, in one line with their titles."""
    titles = {p["title"] for p in shop.seed(products=5, images_per_product=1, seed=42)}
    settings = pipeline_settings(
        shop, provider, tmp_path, limits='window = "1h", jobs = 5, images = 2, polls = 120, active_jobs = 2'
    )
    _queue_and_submit_once(settings)
    report = json.loads(cli("status", "--json", config=settings.path).stdout)
    quota = [g for g in report["waiting"] if g["reason"].startswith("quota")]
    assert sum(g["images"] for g in quota) == 3, report["waiting"]
    assert quota[0]["reason"].startswith("quota resets at ") and quota[0]["images"] == 2
    assert len(quota[0]["products"]) == 2 and set(quota[0]["products"]) <= titles  # by title (issue 23)
    sent = [g for g in report["waiting"] if g["reason"] == "being enhanced by AI Gen Studio"]
    assert sent and sent[0]["images"] == 2, report["waiting"]
    text = cli("status", config=settings.path).stdout
    assert re.search(r"2 images: quota resets at \d\d:\d\d \(.+, .+\)", text), text


def test_the_progress_bar_words_the_wait_that_holds_the_queue() -> None:
    from retouch.sync.waiting import progress_words

    quota = image_waits([row(1), row(2)], facts(go_now=0, quota_free_at=NOW + 600, per_window=1))
    assert progress_words(quota) == f"waiting for the quota until {clock(NOW + 600)}"
    moving = image_waits([row(5, state="submitted"), row(1)], facts(go_now=0, quota_free_at=NOW + 600))
    assert progress_words(moving) == "enhancing"
    paused = image_waits([row(1)], facts(paused={"reason": "no credits", "retry_at": NOW + 60}))
    assert progress_words(paused) == f"paused: no credits (tried again at {clock(NOW + 60)})"
    assert progress_words([]) == ""
