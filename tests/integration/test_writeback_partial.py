"""A shared fileUpdate is not all-or-nothing (../shared/reference/shopify/NOTES.md, real captures):
Shopify applies the valid rows and names each bad one. Replace mode's shared write treats the rows
not named as written, and holds or refuses only the named ones; alt text over 512 characters is
never sent. The reader of the answer (plugin/shopify/file_update.py) is tested on the captured
shapes; the write-back against the Shopify sandbox's production profile, which answers that way."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from PIL import Image as PILImage

from conftest import SHOP_TOKEN, pipeline_settings
from retouch.plugin.shopify.errors import UserError
from retouch.plugin.shopify.file_update import ALT_VALUE_LIMIT, FileRow, alt_for_shopify, file_rows
from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.storage.models import ImageState
from test_writeback_together import operations, settle, spent

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "shopify" / "captures"
VALIDATION = CAPTURES / "2026-04" / "media" / "media-file-update-validation-branches.json"


@pytest.fixture
def production_shop() -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2, profile="production")
    server = sandbox.start()
    yield sandbox
    server.stop()


def _errors(entries: list[dict]) -> list[UserError]:
    return [UserError(code=e.get("code"), field=e.get("field"), message=e["message"]) for e in entries]


# ---------------------------------------------------------------- reading the answer (pure)


def test_rows_named_by_index_are_refused_and_returned_rows_are_written() -> None:
    ids = ["gid://shopify/MediaImage/1", "gid://shopify/MediaImage/2", "gid://shopify/MediaImage/3"]
    errors = [UserError("INVALID", ["files", "1", "originalSource"], "Image URL is invalid")]
    rows = file_rows(ids, [{"id": ids[0]}, {"id": ids[2]}], errors)
    assert [row.status for row in rows] == ["written", "refused", "written"]
    assert rows[1].errors == tuple(errors)


def test_a_missing_file_is_named_by_the_id_in_its_message_as_captured() -> None:
    """FILE_DOES_NOT_EXIST names no index (`field: ["files"]`): its message quotes the ids."""
    if not VALIDATION.is_file():
        pytest.skip(f"{VALIDATION} is absent (../shared is not there)")
    branch = json.loads(VALIDATION.read_text())["branches"]["wrongType"]
    (gone,) = [f["id"] for f in branch["variables"]["files"]]
    answer = branch["response"]["data"]["fileUpdate"]
    ids = ["gid://shopify/MediaImage/7", gone]
    rows = file_rows(ids, [{"id": ids[0]}], _errors(answer["userErrors"]))
    assert [row.status for row in rows] == ["written", "refused"]
    assert rows[1].errors[0].code == "FILE_DOES_NOT_EXIST"


def test_a_row_neither_returned_nor_named_is_unknown() -> None:
    """NON_READY_STATE names no row (captured); a store that refused the whole call returns no files."""
    if not VALIDATION.is_file():
        pytest.skip(f"{VALIDATION} is absent (../shared is not there)")
    answer = json.loads(VALIDATION.read_text())["branches"]["nonReadyAlt"]["response"]["data"]["fileUpdate"]
    ids = ["gid://shopify/MediaImage/1", "gid://shopify/MediaImage/2"]
    rows = file_rows(ids, answer["files"], _errors(answer["userErrors"]))
    assert [row.status for row in rows] == ["unknown", "unknown"]
    assert rows[0].errors[0].code == "NON_READY_STATE"
    assert file_rows(ids, None, []) == [FileRow(ids[0], "unknown"), FileRow(ids[1], "unknown")]


def test_alt_text_is_cut_to_the_limit_never_sent_whole() -> None:
    assert alt_for_shopify("x" * 600) == "x" * ALT_VALUE_LIMIT
    assert alt_for_shopify("short") == "short" and alt_for_shopify(None) is None


# ---------------------------------------------------------------- write-back against the production profile


def _media_ids(shop: ShopifySandbox, legacy_id) -> list[str]:
    return [m["id"] for m in shop.product(legacy_id)["media"]]


def test_a_partial_file_update_writes_the_good_rows_once_and_holds_only_the_bad_one(
    production_shop, provider, tmp_path: Path
) -> None:
    """One row of five is bad (its staged source is one Shopify cannot use): Shopify applies the
    other four; they are written once (never sent again), and only the bad one is held, with its
    reason, and written later from a fresh upload. No duplicate media, no second payment."""
    shop = production_shop
    (product,) = shop.seed(products=1, images_per_product=5, seed=11)
    bad = product["media"][2]["id"]
    shared_calls: list[list[str]] = []
    alone_calls: list[str] = []

    def prepare(ctx):
        staged_uploads, shared, alone = (
            ctx.shopify.staged_uploads,
            ctx.shopify.replace_media_sources,
            ctx.shopify.replace_media_source,
        )

        async def one_unusable_source(files, **options):
            resources = await staged_uploads(files, **options)
            if len(files) > 1:  # the shared upload: the third file's link comes back unusable
                resources[2] = "ftp://uploads.invalid/" + resources[2].rsplit("/", 1)[-1]
            return resources

        async def counted_shared(sources):
            shared_calls.append([media_id for media_id, _ in sources])
            return await shared(sources)

        async def counted_alone(media_id, source, alt=None):
            alone_calls.append(media_id)
            return await alone(media_id, source, alt)

        ctx.shopify.staged_uploads = one_unusable_source
        ctx.shopify.replace_media_sources = counted_shared
        ctx.shopify.replace_media_source = counted_alone

    before = operations(shop)
    with structlog.testing.capture_logs() as logs:
        images = settle(pipeline_settings(shop, provider, tmp_path), prepare)
    after = operations(shop)
    assert all(image.state == ImageState.DONE for image in images.values()), {
        m: (i.state, i.error_code) for m, i in images.items()
    }
    assert len(shared_calls) == 1 and len(shared_calls[0]) == 5
    assert alone_calls == [bad]  # the good rows were never sent again
    assert spent(before, after, "FileUpdate") == 2
    held = [e for e in logs if e["event"] == "writeback_retry"]
    assert [e["media_id"] for e in held] == [bad] and "INVALID_IMAGE_SOURCE_URL" in held[0]["reason"]
    # Every result is on the product, each in its own media: no duplicate.
    assert _media_ids(shop, product["legacy_id"]) == [m["id"] for m in product["media"]]
    served = {m["id"]: m["sha256"] for m in shop.product(product["legacy_id"])["media"]}
    assert all(served[m["id"]] != m["sha256"] for m in product["media"])
    # One enhancement, each picture charged once.
    (key,) = provider.stats()["keys"].values()
    assert key["creations"] == 1 and key["images_charged"] == 5


def test_a_held_row_is_no_write_of_ours_so_a_picture_the_merchant_puts_there_meanwhile_is_kept(
    production_shop, provider, tmp_path: Path
) -> None:
    """Shopify named the row and did not apply it: the image holds no write of ours in flight. If the
    merchant puts another picture into that media before the next try, it is queued anew (as for any
    image not yet written), never overwritten with the enhancement of the old picture."""
    from test_merchant_edits import new_picture

    shop = production_shop
    (product,) = shop.seed(products=1, images_per_product=2, seed=13)
    held = product["media"][1]["id"]

    def prepare(ctx):
        staged_uploads, shared = ctx.shopify.staged_uploads, ctx.shopify.replace_media_sources
        staged_upload, alone = ctx.shopify.staged_upload, ctx.shopify.replace_media_source

        async def one_unusable_source(files, **options):
            resources = await staged_uploads(files, **options)
            resources[1] = "ftp://uploads.invalid/" + resources[1].rsplit("/", 1)[-1]
            return resources

        async def then_the_merchant_replaces_the_held_picture(sources):
            rows = await shared(sources)
            ctx.shopify.staged_uploads, ctx.shopify.replace_media_sources = staged_uploads, shared  # once
            out = io.BytesIO()
            PILImage.open(io.BytesIO(new_picture())).save(out, "PNG")  # the seeded originals are PNG
            await alone(held, await staged_upload("merchant-new.png", "image/png", out.getvalue()))
            return rows

        ctx.shopify.staged_uploads = one_unusable_source
        ctx.shopify.replace_media_sources = then_the_merchant_replaces_the_held_picture

    images = settle(pipeline_settings(shop, provider, tmp_path), prepare)
    assert all(image.state == ImageState.DONE for image in images.values()), {
        m: (i.state, i.error_code) for m, i in images.items()
    }
    # The merchant's new picture was enhanced in its turn: three pictures charged, not two.
    (key,) = provider.stats()["keys"].values()
    assert key["images_charged"] == 3


def test_a_media_deleted_before_the_shared_write_is_skipped_and_the_others_are_written_at_once(
    production_shop, provider, tmp_path: Path
) -> None:
    """The merchant deletes one media between our product read and the shared fileUpdate: Shopify
    applies the other rows and names the missing one (FILE_DOES_NOT_EXIST, by id): one call in all."""
    shop = production_shop
    (product,) = shop.seed(products=1, images_per_product=5, seed=12)
    doomed = product["media"][3]["id"]

    def prepare(ctx):
        shared = ctx.shopify.replace_media_sources

        async def merchant_deletes_first(sources):
            shop.delete_media(doomed.rsplit("/", 1)[-1])
            return await shared(sources)

        ctx.shopify.replace_media_sources = merchant_deletes_first

    before = operations(shop)
    images = settle(pipeline_settings(shop, provider, tmp_path), prepare)
    after = operations(shop)
    assert (images[doomed].state, images[doomed].error_code) == (ImageState.SKIPPED, "media_deleted")
    others = [image for media_id, image in images.items() if media_id != doomed]
    assert len(others) == 4 and all(image.state == ImageState.DONE for image in others)
    assert spent(before, after, "FileUpdate") == 1


def test_an_alt_text_over_the_limit_is_cut_before_it_is_sent(production_shop, provider, tmp_path: Path) -> None:
    """Append mode copies the original's alt text to the new media; Shopify refuses more than 512
    characters (ALT_VALUE_LIMIT_EXCEEDED in the production profile): it goes out cut, and is written."""
    shop = production_shop
    product = shop.add_product("Long alt", images=[{"filename": "long.jpg", "alt": "a" * 700}])
    images = settle(pipeline_settings(shop, provider, tmp_path, mode="append"))
    (image,) = images.values()
    assert image.state == ImageState.DONE, (image.state, image.error_code, image.error_message)
    alts = [m["alt"] for m in shop.product(product["legacy_id"])["media"]]
    assert alts == ["a" * 700, "a" * ALT_VALUE_LIMIT]
