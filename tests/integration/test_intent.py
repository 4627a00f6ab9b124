"""Decisions are recorded with their intent (issue 19): a reload that changes `[writeback] mode`
while images are being written changes only the writes not yet started; one that changes
`[provider] name` lets the jobs in flight finish on the provider that took them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import (
    PRODUCTAI_KEY,
    PRODUCTAI_TABLE,
    PROVIDER_KEY,
    pipeline_settings,
    provider_config_text,
    run_async,
    until_enhanced,
)
from retouch.storage.models import ImageState, JobState
from retouch.sync.config import load_settings
from retouch.sync.pipeline import discover, submit, write_back
from retouch.sync.pipeline.retired import retire, stranded, use_shopify
from retouch.sync.runtime import open_context, provider_client, run_until_settled, shopify_client


def reloaded(settings, mode: str):
    """What a SIGHUP with another `[writeback] mode` makes of the daemon's settings (Daemon.reload)."""
    return dataclasses.replace(settings, writeback=settings.writeback.model_copy(update={"mode": mode}))


@pytest.mark.parametrize(("first", "then"), [("append", "replace"), ("replace", "append")])
def test_a_mode_changed_while_images_are_written_changes_only_later_writes(
    shop, provider, tmp_path: Path, first: str, then: str
) -> None:
    products = shop.seed(products=3, images_per_product=1, seed=11)
    later = None

    async def scenario():
        nonlocal later
        async with open_context(pipeline_settings(shop, provider, tmp_path, mode=first)) as ctx:
            await until_enhanced(ctx)
            for _ in range(3):  # backup, then write; verify waits for Shopify's processing
                await write_back(ctx)
            written = ctx.store.images_in_state(ImageState.WRITTEN)
            assert len(written) == 3 and {i.write_mode for i in written} == {first}
            ctx.settings = reloaded(ctx.settings, then)
            await run_until_settled(ctx)
            requeued = await discover(ctx, full=True)
            # A product added after the reload is written in the new mode.
            later = shop.seed(products=1, images_per_product=1, seed=12)[0]
            await discover(ctx)
            await run_until_settled(ctx)
            return requeued, {i.media_id: i for i in ctx.store.images_in_state(*ImageState)}

    counts, images = run_async(scenario())
    assert counts["queued"] == 0 and counts["requeued"] == 0, counts
    originals = {p["media"][0]["id"]: p["legacy_id"] for p in products}
    for media_id, legacy_id in originals.items():
        assert images[media_id].state == ImageState.DONE and images[media_id].write_mode == first
        media = shop.product(legacy_id)["media"]
        assert len(media) == (2 if first == "append" else 1)
        assert media[0]["id"] == media_id  # the row still names the original, where the picture is
    assert images[later["media"][0]["id"]].write_mode == then
    assert len(shop.product(later["legacy_id"])["media"]) == (2 if then == "append" else 1)
    charged = provider.stats()["keys"][PROVIDER_KEY]["images_by_external_id"]
    assert charged == {str(p["legacy_id"]): 1 for p in [*products, later]}


def test_jobs_in_flight_finish_on_the_provider_that_took_them(shop, provider, productai, tmp_path: Path) -> None:
    """`[provider] name` switched by a reload while a job is in flight: the job is tracked to its end
    on the provider that took it (and paid there once); images discovered later go to the new one."""
    products = shop.seed(products=2, images_per_product=1, seed=21)
    switched = tmp_path / "productai.toml"
    switched.write_text(
        provider_config_text(
            shop,
            tmp_path,
            provider="productai",
            base_url=productai.base_url,
            api_key=PRODUCTAI_KEY,
            table=PRODUCTAI_TABLE,
            new_only=False,
        )
    )
    later = None

    async def scenario():
        nonlocal later
        async with open_context(pipeline_settings(shop, provider, tmp_path)) as ctx:
            await discover(ctx)
            assert await submit(ctx) == 2
            assert [j.state for j in ctx.store.jobs_in_state(*JobState)] == [JobState.SUBMITTED]
            # What the daemon's reload does (sync/commands/run.py `reopen`, then Daemon.reload).
            new_settings = load_settings(switched)
            assert retire(ctx, provider_client(new_settings)) is None  # kept: its job is in flight
            ctx.settings = new_settings
            await run_until_settled(ctx)
            assert not ctx.retired  # closed once its job was done
            later = shop.seed(products=1, images_per_product=1, seed=22)[0]
            await discover(ctx)
            await run_until_settled(ctx)
            return {i.media_id: i for i in ctx.store.images_in_state(*ImageState)}, ctx.store.jobs_in_state(*JobState)

    images, jobs = run_async(scenario(), timeout=90)
    assert all(image.state == ImageState.DONE for image in images.values()), images
    assert sorted(j.provider for j in jobs) == ["aigenstudio", "productai"]
    charged = provider.stats()["keys"][PROVIDER_KEY]["images_by_external_id"]
    assert charged == {str(p["legacy_id"]): 1 for p in products}
    assert productai.stats()["keys"][PRODUCTAI_KEY]["jobs_started"]["generate"] == 1  # the later image only
    assert images[later["media"][0]["id"]].job_id == next(j.id for j in jobs if j.provider == "productai")


def test_a_retired_provider_follows_a_shopify_client_a_later_reload_put_in_place(
    shop, provider, productai, tmp_path: Path
) -> None:
    """A reload that changes the shop's credentials replaces the Shopify client and closes the old
    one (run.py `reopen`); a provider retired by an earlier reload is still finishing its jobs and
    needs Shopify (to fetch sources again, to see a deleted media): it must use the new client."""
    shop.seed(products=1, images_per_product=1, seed=41)
    switched = tmp_path / "productai.toml"
    switched.write_text(
        provider_config_text(
            shop,
            tmp_path,
            provider="productai",
            base_url=productai.base_url,
            api_key=PRODUCTAI_KEY,
            table=PRODUCTAI_TABLE,
            new_only=False,
        )
    )

    async def scenario():
        async with open_context(pipeline_settings(shop, provider, tmp_path)) as ctx:
            await discover(ctx)
            assert await submit(ctx) == 1
            new_settings = load_settings(switched)
            assert retire(ctx, provider_client(new_settings)) is None
            ctx.settings = new_settings
            # A later reload with other shop credentials (what `reopen` does with them).
            old = use_shopify(ctx, shopify_client(new_settings))
            await old.aclose()
            [view] = ctx.retired
            [image] = ctx.store.images_in_state(ImageState.SUBMITTED)
            return view.shopify is ctx.shopify, await view.shopify.get_media(image.media_id)

    same, media = run_async(scenario(), timeout=90)
    assert same and media is not None


def test_jobs_of_a_provider_no_longer_configured_are_named(shop, provider, tmp_path: Path) -> None:
    """After a restart the old provider's key is gone: its jobs in flight are named (the daemon logs
    them as `stranded_jobs` at start), not silently left waiting."""

    async def scenario():
        async with open_context(pipeline_settings(shop, provider, tmp_path)) as ctx:
            shop.seed(products=2, images_per_product=1, seed=31)
            await discover(ctx)
            first, second = (i.id for i in ctx.store.images_in_state(ImageState.DISCOVERED))
            ctx.store.create_job("imagen", "key-a", [first])
            done = ctx.store.create_job("imagen", "key-b", [second])
            ctx.store.update_job(done.id, state=JobState.FINISHED)
            ctx.store.create_job("aigenstudio", "key-c", [])
            return stranded(ctx)

    assert run_async(scenario()) == {"imagen": 1}
