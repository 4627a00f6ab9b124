"""The review API (sync/review.py), its pure decisions and executors: the queue, approve, reject, redo (its
options and quote), auto_approve_after, where pictures are, and the kept results' pruning."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import structlog

from retouch.storage.backups import BackupStore
from retouch.storage.kept_results import prunable_results, prune_results
from retouch.storage.models import ImageState
from retouch.storage.store import Store
from retouch.sync import review
from retouch.sync.config import load_settings
from retouch.sync.pipeline.context import Context
from retouch.sync.pipeline.review_step import auto_approve, waits_for_owner

S = ImageState
CONFIG = """
[shop]
url = "https://my-store.myshopify.com"
access_token = "shpat_valid_token_123"
[provider]
api_key = "{key}"
[storage]
url = "sqlite:///{db}"
[budget]
price_per_credit = 0.1
currency = "EUR"
[review]
mode = "all"
{extra}
"""


def settings_for(tmp_path: Path, key: str = "aigen_test_abcdefgh1234", extra: str = ""):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(key=key, db=tmp_path / "r.db", extra=extra))
    return load_settings(path, environ={})


@pytest.fixture
def store(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    yield store
    store.close()


def put_image(store: Store, n: int, state: ImageState, *, product: int = 1, title: str | None = "Blue mug",
              job_id: int | None = None, **fields) -> int:
    image = store.insert_image(media_id=f"gid://shopify/MediaImage/{n}", product_id=f"gid://shopify/Product/{product}",
                               product_legacy_id=str(product), state=S.DISCOVERED, source_url=f"http://x/{n}.jpg",
                               filename=f"photo-{n}.jpg", product_title=title)
    columns = {"state": str(state), "job_id": job_id, **fields}
    with sqlite3.connect(store.path) as conn:  # where a step before would have put it
        conn.execute(f"UPDATE image SET {', '.join(f'{k} = ?' for k in columns)} WHERE id = ?",
                     (*columns.values(), image.id))
    return image.id


def finished_job(store: Store, credits: int, images: int, finished: float) -> int:
    job = store.create_job("aigenstudio", f"key-{time.monotonic_ns()}", [], options=None)
    store.update_job(job.id, credits_used=credits, image_count=images, state="finished",
                     finished_at=datetime.fromtimestamp(finished, timezone.utc))
    return job.id


def test_the_queue_and_each_decision(store: Store) -> None:
    job = finished_job(store, credits=10, images=2, finished=1000.0)
    first = put_image(store, 1, S.AWAITING_REVIEW, job_id=job, backup_sha256="a" * 64, result_sha256="b" * 64)
    second = put_image(store, 2, S.AWAITING_REVIEW, job_id=job, product=2, title=None)
    done = put_image(store, 3, S.DONE)

    items = review.waiting_for_review(store)
    assert [item.image_id for item in items] == [first, second]
    assert items[0] == review.ReviewItem(first, "gid://shopify/Product/1", "Blue mug", "photo-1.jpg", "aigenstudio",
                                         5, 1000.0, "a" * 64, "b" * 64)
    assert items[1].product_name == "gid://shopify/Product/2"
    assert [i.image_id for i in review.waiting_for_review(store, product_id="gid://shopify/Product/2")] == [second]

    outcome = review.approve(store, [first, done, 999], now=2000.0)
    assert outcome.moved == [first]
    assert dict(outcome.refused) == {done: "not approved: it is not waiting for review (it is done)",
                                     999: "not approved: no such image"}
    approved = store.image(first)
    assert approved.state == S.BACKED_UP and approved.approved_at == 2000.0 and approved.result_sha256 == "b" * 64
    assert review.approve(store, [first], now=2001.0).refused == [
        (first, "not approved: already approved, being written to the store")]

    outcome = review.reject(store, [second], reason="  label\ncut off ", now=2000.0)
    assert outcome.moved == [second]
    assert (store.image(second).state, store.image(second).review_note) == (S.REJECTED, "label cut off")
    assert review.reject(store, [second], reason="x", now=1.0).refused == [
        (second, "not rejected: already rejected (label cut off)")]


def test_redo_queues_with_its_options_recorded_like_a_rule(store: Store) -> None:
    job = finished_job(store, credits=5, images=1, finished=1000.0)
    rule = json.dumps({"rule": "#1 (catalog)", "skip": False, "options": {"preservation_level": "high"},
                       "provider": "aigenstudio"}, sort_keys=True)
    image = put_image(store, 1, S.REJECTED, job_id=job, rule=rule, paid_attempts=1, result_sha256="c" * 64,
                      review_note="too dark")
    plain = put_image(store, 2, S.AWAITING_REVIEW, job_id=job, paid_attempts=1)
    done = put_image(store, 3, S.DONE)

    outcome = review.redo(store, [image, done], preset="marketplace_clean_catalog", now=5.0)
    assert outcome.moved == [image] and outcome.refused == [(done, "not redone: it is not waiting for review "
                                                                   "(it is done)")]
    row = store.image(image)
    assert row.state == S.DISCOVERED and row.job_id is None and row.result_sha256 is None
    assert row.paid_attempts == 1  # what was paid was paid: the new job counts one more
    assert row.review_note == "redo with preset 'marketplace_clean_catalog'"
    assert json.loads(row.rule) == {"rule": "#1 (catalog) + redo", "skip": False, "provider": "aigenstudio",
                                    "options": {"preservation_level": "high", "preset": "marketplace_clean_catalog"}}
    # Without options, the image goes again as it was queued.
    assert review.redo(store, [plain], now=5.0).moved == [plain]
    assert store.image(plain).rule is None and store.image(plain).review_note == "redo"


def test_redo_options_follow_the_provider() -> None:
    assert review.redo_options("aigenstudio", preset="p", prompt="brighter") == {"preset": "p",
                                                                                "instructions": "brighter"}
    assert review.redo_options("productai", prompt="on marble") == {"prompt": "on marble"}
    assert review.redo_options("imagen", preset="123") == {"profile_key": "123"}
    with pytest.raises(ValueError, match="--preset: productai has no preset; a redo there takes --prompt"):
        review.redo_options("productai", preset="x")


def test_redo_quote_shows_images_credits_money_and_refuses_a_bad_preset(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, key="aigen_live_abcdefgh1234")
    store = Store(settings.database_url)
    try:
        job = finished_job(store, credits=5, images=1, finished=1000.0)
        image = put_image(store, 1, S.AWAITING_REVIEW, job_id=job)
        quote = review.redo_quote(settings, store, [image], preset="marketplace_clean_catalog")
        per_image = settings.capabilities.credits_per_image
        assert quote.startswith("redo 1 image(s) of Blue mug with preset 'marketplace_clean_catalog': "
                                f"1 image(s), {per_image:g} credits ({per_image * 0.1:.2f} EUR)")
        with pytest.raises(ValueError, match="^--preset: Input should be"):
            review.redo_quote(settings, store, [image], preset="sparkly")
    finally:
        store.close()


def test_auto_approve_after_approves_only_what_waited_that_long(tmp_path: Path) -> None:
    assert review.due_for_auto_approval([], after=None, now=0.0) == []
    settings = settings_for(tmp_path, extra='auto_approve_after = "1h"')
    store = Store(settings.database_url)
    try:
        now = 100_000.0
        old = put_image(store, 1, S.AWAITING_REVIEW, job_id=finished_job(store, 5, 1, now - 3601))
        fresh = put_image(store, 2, S.AWAITING_REVIEW, job_id=finished_job(store, 5, 1, now - 60))
        ctx = Context(settings=settings, store=store, backups=BackupStore(tmp_path / "backups"), shopify=None,
                      provider=None, clock=lambda: now, log=structlog.get_logger("test"))
        assert auto_approve(ctx) == 1
        assert store.image(old).state == S.BACKED_UP and store.image(old).approved_at == now
        assert store.image(fresh).state == S.AWAITING_REVIEW
    finally:
        store.close()


def test_who_waits_for_the_owner_is_decided_by_state_and_approval(store: Store) -> None:
    approved = store.image(put_image(store, 1, S.BACKED_UP, approved_at=5.0, result_sha256="d" * 64))
    fresh = store.image(put_image(store, 2, S.BACKED_UP))
    assert waits_for_owner(True, fresh) and not waits_for_owner(False, fresh)
    assert not waits_for_owner(True, approved)  # approved before review was turned on again: written


def test_pictures_are_found_by_digest_only(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    before = BackupStore(settings.backup_dir).put(b"original")
    after = review.results_store(settings).put(b"result")
    assert review.picture_path(settings, before).read_bytes() == b"original"
    assert review.picture_path(settings, after) == settings.backup_dir / "results" / after[:2] / after
    assert review.picture_path(settings, "0" * 64) is None
    assert review.picture_path(settings, "../../etc/passwd") is None


def test_images_are_chosen_by_id_product_id_or_title(store: Store) -> None:
    mug = put_image(store, 1, S.AWAITING_REVIEW, product=7, title="Blue Mug")
    cup = put_image(store, 2, S.AWAITING_REVIEW, product=8, title="Red cup")
    put_image(store, 3, S.DONE, product=7, title="Blue Mug")
    assert [i.id for i in review.select_images(store, product="blue mug")] == [mug]
    assert [i.id for i in review.select_images(store, product="8")] == [cup]
    assert [i.id for i in review.select_images(store, everything=True)] == [mug, cup]
    assert [i.id for i in review.select_images(store, image_ids=[cup])] == [cup]


def test_kept_results_follow_the_keep_rule_and_never_go_while_waiting(tmp_path: Path, store: Store) -> None:
    results = BackupStore(tmp_path / "backups" / "results")
    done_sha, waiting_sha = results.put(b"done long ago"), results.put(b"waiting")
    long_ago = time.time() - 10 * 86400
    for sha in (done_sha, waiting_sha):
        os.utime(results.path_for(sha), (long_ago, long_ago))
    for n, (state, sha) in enumerate(((S.DONE, done_sha), (S.AWAITING_REVIEW, waiting_sha)), 1):
        image = put_image(store, n, state, result_sha256=sha)
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE image SET updated_at = ? WHERE id = ?",
                         (datetime.fromtimestamp(long_ago, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"), image))
    assert prunable_results(store, results, None, time.time()) == {}
    assert set(prunable_results(store, results, 86400.0, time.time())) == {done_sha}
    assert prune_results(store, results, 86400.0, time.time()) == (1, len(b"done long ago"))
    assert not results.has(done_sha) and results.has(waiting_sha)
    assert hashlib.sha256(results.get(waiting_sha)).hexdigest() == waiting_sha


def test_a_reload_never_writes_a_waiting_result_and_never_holds_an_approved_one(shop, provider, tmp_path: Path) -> None:
    """The decision is recorded in the image's state: review turned off by a reload leaves a waiting result
    waiting (written only once approved, from the kept bytes); one approved is written with review on."""
    import asyncio
    import dataclasses

    from conftest import pipeline_settings, run_async, until_enhanced
    from retouch.sync.pipeline import write_back
    from retouch.sync.review_settings import ReviewSettings
    from retouch.sync.runtime import open_context

    shop.seed(products=2, images_per_product=1, seed=21)
    settings = pipeline_settings(shop, provider, tmp_path, extra='\n[review]\nmode = "all"\n')

    async def scenario():
        async with open_context(settings) as ctx:
            assert len(await until_enhanced(ctx)) == 2
            for _ in range(3):
                await write_back(ctx)
            waiting = ctx.store.images_in_state(S.AWAITING_REVIEW)
            assert len(waiting) == 2 and shop.writes() == []
            first, second = waiting
            ctx.settings = dataclasses.replace(settings, review=ReviewSettings(mode="off"))  # a reload
            for _ in range(3):
                await write_back(ctx)
            assert len(ctx.store.images_in_state(S.AWAITING_REVIEW)) == 2 and shop.writes() == []
            review.approve(ctx.store, [first.id], now=ctx.clock())
            ctx.settings = settings  # review on again: the approved one is still written
            for _ in range(300):  # written, then verified once Shopify has processed it
                await write_back(ctx)
                if ctx.store.image(first.id).state == S.DONE:
                    break
                await asyncio.sleep(0.05)
            return first, second, ctx.store.image(first.id).state, ctx.store.image(second.id).state

    first, second, first_state, second_state = run_async(scenario())
    assert (first_state, second_state) == (S.DONE, S.AWAITING_REVIEW)
    assert [(w["media_id"], w["sha256"]) for w in shop.writes()] == [
        (int(first.media_id.rsplit("/", 1)[-1]), first.result_sha256)]
