"""Merchant edits while retouch works: the merchant's newer picture is never overwritten by an
enhancement of the old one, and the image row says what happened."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from conftest import PROVIDER_KEY, pipeline_settings, run_async, until_enhanced, wait_for
from retouch.storage.models import ImageState
from retouch.sync.pipeline import discover, submit, track, write_back
from retouch.sync.runtime import open_context, run_until_settled


def new_picture() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (200, 160), (30, 140, 60)).save(out, "JPEG")
    return out.getvalue()


def test_a_picture_the_merchant_replaced_in_flight_is_not_overwritten(shop, provider, tmp_path: Path) -> None:
    (product,) = shop.seed(products=1, images_per_product=1, seed=41)
    media_id = product["media"][0]["id"]
    settings = pipeline_settings(shop, provider, tmp_path)
    replacement = new_picture()

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await submit(ctx)
            for _ in range(100):  # until the enhancement of the old picture is in hand
                await track(ctx)
                if ctx.store.images_in_state(ImageState.ENHANCED):
                    break
                await asyncio_sleep(0.1)
            (image,) = ctx.store.images_in_state(ImageState.ENHANCED)
            # The merchant puts another picture into the same media (what the admin's "replace" does).
            resource = await ctx.shopify.staged_upload("merchant-new.jpg", "image/jpeg", replacement)
            await ctx.shopify.replace_media_source(image.media_id, resource)
            wait_for(lambda: shop.product(product["legacy_id"])["media"][0]["status"] == "READY", 10)
            for _ in range(5):  # back up, then the write: it must notice the new picture
                await write_back(ctx)
            after_first = ctx.store.image(image.id)
            await asyncio_sleep(1.0)  # a write, had there been one, is processed by now
            wait_for(lambda: shop.product(product["legacy_id"])["media"][0]["status"] == "READY", 10)
            merchant_bytes_kept = shop.product(product["legacy_id"])["media"][0]["sha256"]
            await run_until_settled(ctx)
            return after_first, merchant_bytes_kept, ctx.store.image(image.id)

    first, kept_sha, final = run_async(scenario())
    assert first.state == ImageState.DISCOVERED and first.error_code == "source_changed"
    assert kept_sha == hashlib.sha256(replacement).hexdigest()  # the old picture's enhancement was not written
    assert final.state == ImageState.DONE and final.media_id.endswith(media_id.rsplit("/", 1)[-1])
    media = shop.product(product["legacy_id"])["media"]
    assert len(media) == 1  # no duplicate
    # Now the product shows the enhancement of the merchant's new picture: neither the old
    # enhancement nor the merchant's bytes as they were.
    assert media[0]["sha256"] != kept_sha
    assert provider.stats()["keys"][PROVIDER_KEY]["images_charged"] == 2  # the old picture and the new one


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def test_our_own_write_found_after_a_crash_is_not_mistaken_for_the_merchants(
    shop, provider, tmp_path: Path, monkeypatch
) -> None:
    """A crash right after our fileUpdate, before the image was recorded as written: on restart the
    media shows a new picture — ours — which must be finished, not queued and paid for again."""
    import asyncio

    from retouch.sync.pipeline import writeback

    (product,) = shop.seed(products=1, images_per_product=1, seed=42)
    settings = pipeline_settings(shop, provider, tmp_path)

    async def crash(*args, **kwargs):
        raise asyncio.CancelledError  # the process dies here, the mutation already made

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await submit(ctx)
            for _ in range(100):
                await track(ctx)
                if ctx.store.images_in_state(ImageState.ENHANCED):
                    break
                await asyncio.sleep(0.1)
            await write_back(ctx)  # the backup
            with monkeypatch.context() as patch:
                patch.setattr(writeback, "_finish_write", crash)
                try:
                    await write_back(ctx)  # the write, interrupted after the mutation
                except asyncio.CancelledError:
                    pass
            (interrupted,) = ctx.store.images_in_state(ImageState.BACKED_UP)
            assert interrupted.write_source  # the intent was recorded before the mutation
            await asyncio.sleep(1.0)  # Shopify finishes processing our picture
            await run_until_settled(ctx)
            return ctx.store.image(interrupted.id)

    final = run_async(scenario())
    assert final.state == ImageState.DONE and final.error_code is None
    assert provider.stats()["keys"][PROVIDER_KEY]["images_charged"] == 1
    assert len(shop.product(product["legacy_id"])["media"]) == 1


# ---------------------------------------------------------------------------------------------
# Edits made while the picture is at the provider (the enhancement is in hand, not yet written).


def _run_with_edit(settings, edit) -> dict[str, tuple[str, str | None]]:
    """Enhance every queued picture, let `edit` (the merchant) act while the results are in hand,
    then settle; returns each row's (state, error code) by its original media id."""

    async def scenario():
        async with open_context(settings) as ctx:
            enhanced = await until_enhanced(ctx)
            assert enhanced, "nothing reached the provider's result"
            edit()
            await run_until_settled(ctx)
            return {row.media_id: (row.state, row.error_code) for row in ctx.store.images_in_state(*ImageState)}

    return run_async(scenario())


def _number(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_alt_text_the_merchant_edited_in_flight_is_kept(shop, provider, tmp_path: Path, mode: str) -> None:
    (product,) = shop.seed(products=1, images_per_product=1, seed=43)
    media_id = product["media"][0]["id"]
    settings = pipeline_settings(shop, provider, tmp_path, mode=mode)

    rows = _run_with_edit(settings, lambda: shop.set_alt(_number(media_id), "Blue mug, handle left"))

    assert set(rows.values()) == {(ImageState.DONE, None)}
    media = shop.product(product["legacy_id"])["media"]
    shown = media[0] if mode == "replace" else media[1]  # append: the result right after the original
    # The result carries the merchant's new alt text, not the one read when the picture was queued.
    assert shown["alt"] == "Blue mug, handle left"
    assert [m["alt"] for m in media] == ["Blue mug, handle left"] * len(media)


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_media_the_merchant_reordered_in_flight_keep_the_new_order(shop, provider, tmp_path: Path, mode: str) -> None:
    (product,) = shop.seed(products=1, images_per_product=3, seed=44)
    first, second, third = (m["id"] for m in product["media"])
    settings = pipeline_settings(shop, provider, tmp_path, mode=mode)

    # The merchant drags the first picture to the end while all three are being enhanced.
    rows = _run_with_edit(settings, lambda: shop.reorder_media(product["legacy_id"], _number(first), 2))

    assert set(rows.values()) == {(ImageState.DONE, None)}
    media = shop.product(product["legacy_id"])["media"]
    ids = [m["id"] for m in media]
    if mode == "replace":
        # Same media, in the merchant's new order, each showing its enhancement.
        assert ids == [second, third, first]
        assert all(m["sha256"] != o["sha256"] for m, o in zip(media, [product["media"][i] for i in (1, 2, 0)]))
    else:
        # Each result sits right after its original, wherever the merchant moved it; nothing twice.
        originals = [second, third, first]
        assert [ids[i] for i in (0, 2, 4)] == originals and len(ids) == 6
        assert all(media[i + 1]["alt"] == media[i]["alt"] for i in (0, 2, 4))


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_a_variant_linked_to_a_picture_keeps_its_link(shop, provider, tmp_path: Path, mode: str) -> None:
    (product,) = shop.seed(products=1, images_per_product=2, seed=45)
    linked = product["media"][1]["id"]
    shop.add_variant(product["legacy_id"], "Blue / Large", [_number(linked)])
    settings = pipeline_settings(shop, provider, tmp_path, mode=mode)

    rows = _run_with_edit(settings, lambda: None)

    assert set(rows.values()) == {(ImageState.DONE, None)}
    after = shop.product(product["legacy_id"])
    (variant,) = after["variants"]
    # Replace writes the result into the same media (fileUpdate), so the link now shows the
    # enhancement; append leaves the original, and the variant's link on it, untouched.
    assert variant["media_ids"] == [linked]
    shown = next(m for m in after["media"] if m["id"] == linked)
    changed = shown["sha256"] != product["media"][1]["sha256"]
    assert changed if mode == "replace" else not changed


def test_the_variant_link_survives_a_replace_by_the_merchant_in_flight(shop, provider, tmp_path: Path) -> None:
    """The merchant replaces a variant's picture while its old version is at the provider: the new
    picture is queued and enhanced in the same media, and the variant still shows it."""
    (product,) = shop.seed(products=1, images_per_product=1, seed=46)
    media_id = product["media"][0]["id"]
    shop.add_variant(product["legacy_id"], "Red", [_number(media_id)])
    settings = pipeline_settings(shop, provider, tmp_path)

    rows = _run_with_edit(settings, lambda: shop.replace_image(_number(media_id), data=new_picture()))

    assert rows == {media_id: (ImageState.DONE, None)}
    after = shop.product(product["legacy_id"])
    assert after["variants"][0]["media_ids"] == [media_id] and len(after["media"]) == 1
    assert after["media"][0]["sha256"] != hashlib.sha256(new_picture()).hexdigest()  # enhanced, not raw
    assert provider.stats()["keys"][PROVIDER_KEY]["images_charged"] == 2
