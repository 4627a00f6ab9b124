"""Decisions are recorded with their intent (issue 19): a reload that changes `[writeback] mode`
while images are being written changes only the writes not yet started."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import PROVIDER_KEY, pipeline_settings, run_async, until_enhanced
from retouch.storage.models import ImageState
from retouch.sync.pipeline import discover, write_back
from retouch.sync.runtime import open_context, run_until_settled


def reloaded(settings, mode: str):
    """What a SIGHUP with another `[writeback] mode` makes of the daemon's settings (Daemon.reload)."""
    return dataclasses.replace(settings, writeback=settings.writeback.model_copy(update={"mode": mode}))


@pytest.mark.parametrize(("first", "then"), [("append", "replace"), ("replace", "append")])
def test_a_mode_changed_while_images_are_written_changes_only_later_writes(
        shop, provider, tmp_path: Path, first: str, then: str) -> None:
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
