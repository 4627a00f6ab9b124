"""`retouch retry`: failed images come back from the step that failed; a result already paid for is
written again, never bought again; retries are bounded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import PROVIDER_KEY, cli, marker_of, pipeline_settings, run_async
from lifecycle_kit import put_in_state
from retouch.storage.models import ImageState
from retouch.storage.store import Store
from retouch.sync.decisions import retry_from
from retouch.sync.pipeline import discover
from retouch.sync.pipeline.retry import MAX_RETRIES
from retouch.sync.runtime import open_context, run_until_settled

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def charged(provider) -> int:
    return provider.stats()["keys"].get(PROVIDER_KEY, {}).get("images_charged", 0)


def settle(settings, *, discover_first: bool = False) -> list:
    """Run the pipeline in-process until nothing is pending; returns the images that are done."""

    async def scenario():
        async with open_context(settings) as ctx:
            if discover_first:
                await discover(ctx)
            await run_until_settled(ctx)
            return ctx.store.images_in_state(ImageState.DONE)

    return run_async(scenario())


def fail_the_write(shop, settings) -> dict[str, int]:
    """Enhance every image; Shopify then fails to process the written result."""

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            shop.add_fault(fail_media_processing=1, code="IMAGE_PROCESSING_FAILURE")
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    return run_async(scenario())


def test_retry_starts_from_what_is_already_had() -> None:
    assert retry_from(has_result=True, has_backup=True) == "backed_up"
    assert retry_from(has_result=True, has_backup=False) == "enhanced"
    assert retry_from(has_result=False, has_backup=False) == "discovered"
    assert retry_from(has_result=False, has_backup=True) == "discovered"


def test_a_shopify_failure_is_retried_without_paying_again(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=1, images_per_product=1, seed=41)
    settings = pipeline_settings(shop, provider, tmp_path)

    assert fail_the_write(shop, settings) == {"failed": 1}
    assert charged(provider) == 1

    done = cli("retry", config=tmp_path / "config.toml")
    assert done.returncode == 0, done.stderr
    media_id = products[0]["media"][0]["id"]
    assert f"requeued {products[0]['id']} {media_id} (from backed_up)" in done.stdout

    (image,) = settle(settings)
    assert image.retries == 1 and image.error_code is None
    assert charged(provider) == 1  # the result was written again, not bought again
    # A failed media cannot be updated in place: the result took its position, the failed one is gone.
    (media,) = shop.product(products[0]["legacy_id"])["media"]
    assert media["status"] == "READY" and media["sha256"] != products[0]["media"][0]["sha256"]
    assert media["alt"] == products[0]["media"][0]["alt"]
    assert image.media_id == image.output_media_id == media["id"] != media_id
    marker = json.loads(marker_of(shop, products[0]["legacy_id"])["value"])
    assert media["id"] in marker["media_ids"]


def test_revert_of_a_failed_write_puts_the_original_back(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=1, images_per_product=1, seed=43)
    original = products[0]["media"][0]
    settings = pipeline_settings(shop, provider, tmp_path)

    assert fail_the_write(shop, settings) == {"failed": 1}
    assert shop.product(products[0]["legacy_id"])["media"][0]["status"] == "FAILED"

    reverted = cli("revert", "--product", products[0]["legacy_id"], config=tmp_path / "config.toml")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    (media,) = shop.product(products[0]["legacy_id"])["media"]
    assert media["status"] == "READY" and media["sha256"] == original["sha256"]  # byte-identical original
    assert media["alt"] == original["alt"]
    store = Store(settings.database_url)
    try:
        (image,) = store.images_in_state(ImageState.REVERTED)
        assert image.media_id == media["id"]  # the row follows the picture: discovery will not queue it
    finally:
        store.close()


def test_a_provider_failure_is_sent_again_and_retries_are_bounded(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=1, images_per_product=1, seed=42)
    settings = pipeline_settings(shop, provider, tmp_path)
    # The provider accepts the job (and counts it against the quota), then its item fails.
    provider.add_fault("create", mode="fail")

    async def fail_one():
        async with open_context(settings) as ctx:
            await discover(ctx)
            (broken,) = ctx.store.images_in_state(ImageState.DISCOVERED)
            await run_until_settled(ctx)
            return broken.id

    broken_id = run_async(fail_one())
    assert charged(provider) == 1  # counted against the quota when sent

    store = Store(settings.database_url)
    try:
        assert store.image(broken_id).state == ImageState.FAILED
        other = cli("retry", "--product", "1", config=tmp_path / "config.toml")  # another product: nothing
        assert other.returncode == 0 and "0 image(s) requeued" in other.stdout
        assert cli("retry", "--failed", config=tmp_path / "config.toml").returncode == 0
        image = store.image(broken_id)
        assert image.state == ImageState.DISCOVERED and image.job_id is None and image.retries == 1

        settle(settings)
        assert store.image(broken_id).state == ImageState.DONE
        assert charged(provider) == 2  # sent once more: the provider had no result for it

        put_in_state(store, broken_id, ImageState.FAILED, retries=MAX_RETRIES, error_code="x")
        refused = cli("retry", config=tmp_path / "config.toml")
        assert refused.returncode == 0
        assert f"already retried {MAX_RETRIES} times" in refused.stderr and "0 image(s) requeued" in refused.stdout
        assert store.image(broken_id).state == ImageState.FAILED
    finally:
        store.close()


def test_revert_beside_a_daemon_leaves_images_in_flight_alone(shop, provider, tmp_path: Path) -> None:
    from retouch.sync.systemd import InstanceLock

    shop.seed(products=2, images_per_product=1, seed=44)
    settings = pipeline_settings(shop, provider, tmp_path)

    first, second = settle(settings, discover_first=True)
    store = Store(settings.database_url)
    put_in_state(store, second.id, ImageState.WRITTEN)  # as if the daemon were verifying it
    daemon = InstanceLock(settings.database_path)  # this test process stands in for the daemon
    assert daemon.acquire()
    try:
        done = cli("revert", "--all", "--yes", config=tmp_path / "config.toml")
    finally:
        daemon.release()
    assert done.returncode == 0, done.stderr
    assert "reverted 1 image(s)" in done.stdout
    assert f"1 image(s) are still being written by the daemon (pid {os.getpid()})" in done.stdout
    assert store.image(first.id).state == ImageState.REVERTED
    assert store.image(second.id).state == ImageState.WRITTEN
    store.close()
