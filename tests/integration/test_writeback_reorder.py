"""Append mode reads the media order back before it counts a move as done: productReorderMedia
answers a job and no error for a media that is gone, and a move that did not happen is silent
(../shared/reference/shopify/NOTES.md; the Shopify sandbox's production profile answers so)."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from conftest import pipeline_settings
from retouch.storage.models import ImageState
from test_writeback_partial import production_shop  # noqa: F401  (the fixture)
from test_writeback_together import settle


def test_a_move_that_did_not_happen_is_made_again_and_adds_no_second_media(
    production_shop, provider, tmp_path: Path
) -> None:  # noqa: F811
    """The first reorder answers a job and does nothing (as Shopify does when it drops a move): the
    image is held, then its media is adopted and moved again; it ends right after its original."""
    shop = production_shop
    (product,) = shop.seed(products=1, images_per_product=3, seed=21)
    originals = [m["id"] for m in product["media"]]
    moves: list[tuple[str, int]] = []

    def prepare(ctx):
        move = ctx.shopify.move_media

        async def first_move_dropped(product_id, media_id, position, **options):
            moves.append((media_id, position))
            if len(moves) > 1:
                await move(product_id, media_id, position, **options)

        ctx.shopify.move_media = first_move_dropped

    with structlog.testing.capture_logs() as logs:
        images = settle(pipeline_settings(shop, provider, tmp_path, mode="append"), prepare)
    assert all(image.state == ImageState.DONE for image in images.values()), {
        m: (i.state, i.error_code) for m, i in images.items()
    }
    order = [m["id"] for m in shop.product(product["legacy_id"])["media"]]
    assert len(order) == 6  # one result per original: no second media for the dropped move
    for original in originals:
        output = images[original].output_media_id
        assert order.index(output) == order.index(original) + 1
    held = [e for e in logs if e["event"] == "writeback_retry"]
    assert len(held) == 1 and "did not move" in held[0]["reason"]
    assert any(e["event"] == "adopted" for e in logs)


def test_a_result_deleted_before_its_move_is_not_counted_as_written(
    production_shop,
    provider,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The merchant deletes the new media before our move: Shopify answers the reorder with a job
    and no error. Read back, the media is gone: the image is skipped, and the product's marker never
    names a media that does not exist."""
    shop = production_shop
    (product,) = shop.seed(products=1, images_per_product=1, seed=22)

    def prepare(ctx):
        move = ctx.shopify.move_media

        async def merchant_deletes_it_first(product_id, media_id, position, **options):
            shop.delete_media(media_id.rsplit("/", 1)[-1])
            await move(product_id, media_id, position, **options)  # a job, no error

        ctx.shopify.move_media = merchant_deletes_it_first

    images = settle(pipeline_settings(shop, provider, tmp_path, mode="append"), prepare)
    (image,) = images.values()
    assert (image.state, image.error_code, image.output_media_id) == (ImageState.SKIPPED, "media_deleted", None)
    marker = shop.product(product["legacy_id"])["metafields"]
    assert not any(json.loads(m["value"]).get("media_ids") for m in marker.values())
