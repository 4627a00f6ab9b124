"""ShopifyClient against the Shopify sandbox over real loopback HTTP: reads, writes, faults."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import structlog
from PIL import Image

from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.errors import ShopifyAuthError, ShopifyUnavailable, ShopifyUserError
from retouch.plugin.shopify.models import Media
from retouch.plugin.shopify.sandbox import ShopifySandbox
from shopify_testkit import TOKEN


@pytest.fixture(autouse=True)
def logs():
    with structlog.testing.capture_logs() as captured:
        yield captured
    assert TOKEN not in repr(captured)


@pytest.fixture
def sandbox():
    shop = ShopifySandbox(access_token=TOKEN, processing_seconds=0.2)
    server = shop.start()
    yield shop
    server.stop()


def run(sandbox: ShopifySandbox, action, token: str = TOKEN):
    async def main():
        async with ShopifyClient(sandbox.shop_url, token, timeout=5.0) as client:
            return await action(client)

    return asyncio.run(main())


async def until_settled(client: ShopifyClient, media_id: str, limit: float = 10.0) -> Media:
    """Poll get_media until the media is READY or FAILED (bounded, so a stuck media fails the test)."""
    deadline = time.monotonic() + limit
    while True:
        media = await client.get_media(media_id)
        assert media is not None
        if media.status in ("READY", "FAILED"):
            return media
        assert time.monotonic() < deadline, f"{media_id} still {media.status}"
        await asyncio.sleep(0.05)


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_products_and_media_are_read_across_pages(sandbox):
    tagged = [
        sandbox.add_product(f"Mug {i}", tags=["summer"], images=[{"filename": f"mug-{i}-{n}.jpg"} for n in range(3)])
        for i in range(3)
    ]
    other = sandbox.add_product("Plain bowl", tags=["home"], images=[{"filename": "bowl.png"}])

    async def action(client):
        everything = [p async for p in client.iter_products(page_size=2, media_page_size=2)]
        summer = [p async for p in client.iter_products(search="tag:summer", page_size=2)]
        future = datetime.now(timezone.utc) + timedelta(days=1)
        newer = [p async for p in client.iter_products(updated_since=future)]
        return everything, summer, newer, client.stats

    everything, summer, newer, stats = run(sandbox, action)
    expected = {p["id"]: [m["id"] for m in p["media"]] for p in [*tagged, other]}
    assert {p.id: [m.id for m in p.media] for p in everything} == expected
    assert {p.id for p in summer} == {p["id"] for p in tagged}
    assert newer == []
    first = everything[0]
    assert first.legacy_id == int(first.id.rsplit("/", 1)[1])
    assert all(m.status == "READY" and m.url and m.width for p in everything for m in p.media)
    assert stats.points_spent > 0


def test_staged_upload_then_replace_in_place(sandbox):
    product = sandbox.add_product("Vase", images=[{"filename": "vase.jpg", "alt": "front"}])
    media_id = product["media"][0]["id"]
    new_bytes = jpeg((200, 30, 30))

    async def action(client):
        resource = await client.staged_upload("vase-retouched.jpg", "image/jpeg", new_bytes)
        await client.replace_media_source(media_id, resource)
        settled = await until_settled(client, media_id)
        served, content_type = await client.download(settled.url)
        return settled, served, content_type, await client.get_product(product["id"])

    settled, served, content_type, after = run(sandbox, action)
    assert settled.status == "READY" and settled.id == media_id and settled.alt == "front"
    assert (settled.width, settled.height) == (48, 32)
    assert content_type == "image/jpeg"
    assert served == sandbox.media_bytes(media_id.rsplit("/", 1)[1])
    assert Image.open(io.BytesIO(served)).size == (48, 32)
    assert [m.id for m in after.media] == [media_id]


def test_staged_uploads_of_several_files_share_one_create_and_keep_their_order(sandbox):
    """One stagedUploadsCreate for three files (not three), one upload each; each resourceUrl
    carries its own file's bytes, and one fileUpdate replaces the three media with them."""
    product = sandbox.add_product("Set", images=[{"filename": f"set-{n}.jpg"} for n in range(3)])
    media_ids = [m["id"] for m in product["media"]]
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    files = [(f"set-{n}-retouched.jpg", "image/jpeg", jpeg(colour)) for n, colour in enumerate(colours)]

    async def action(client):
        resources = await client.staged_uploads(files)
        await client.replace_media_sources(list(zip(media_ids, resources, strict=True)))
        return resources, [await until_settled(client, media_id) for media_id in media_ids]

    before = sandbox.stats()["operations"]
    resources, settled = run(sandbox, action)
    after = sandbox.stats()["operations"]
    assert len(set(resources)) == 3
    assert after.get("StagedUploadsCreate", 0) - before.get("StagedUploadsCreate", 0) == 1
    assert after.get("FileUpdate", 0) - before.get("FileUpdate", 0) == 1
    for media_id, (_, _, data), media in zip(media_ids, files, settled, strict=True):
        assert media.status == "READY"
        assert sandbox.media_bytes(media_id.rsplit("/", 1)[1]) == data


class PiecesSeen(httpx.AsyncHTTPTransport):
    """A real transport that notes, per request path, how many pieces its body is written in."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: dict[str, list[int]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.pieces.setdefault(request.url.path.split("/")[1], []).append(len(list(request.stream)))
        return await super().handle_async_request(request)


def test_a_staged_upload_form_goes_out_in_one_piece(sandbox):
    """httpx streams a multipart form in four pieces per field, each a trip through the connection's
    send path: the client hands it over whole."""
    transport = PiecesSeen()

    async def main():
        async with ShopifyClient(sandbox.shop_url, TOKEN, timeout=5.0, transport=transport) as client:
            return await client.staged_uploads(
                [("a.jpg", "image/jpeg", jpeg((1, 2, 3))), ("b.jpg", "image/jpeg", jpeg((4, 5, 6)))]
            )

    assert len(asyncio.run(main())) == 2
    assert transport.pieces["_staged"] == [1, 1]


def test_add_media_then_move_it_next_to_its_original(sandbox):
    product = sandbox.add_product("Lamp", images=[{"filename": f"lamp-{n}.jpg"} for n in range(3)])
    before = [m["id"] for m in product["media"]]

    async def action(client):
        resource = await client.staged_upload("lamp-0-retouched.jpg", "image/jpeg", jpeg((10, 120, 200)))
        new_id = await client.add_media(product["id"], resource, "Lamp, retouched")
        settled = await until_settled(client, new_id)
        await client.move_media(product["id"], new_id, 1)
        return new_id, settled, await client.get_product(product["id"])

    new_id, settled, after = run(sandbox, action)
    assert new_id not in before
    assert settled.status == "READY" and settled.alt == "Lamp, retouched"
    assert [m.id for m in after.media] == [before[0], new_id, before[1], before[2]]


def test_marker_round_trip_with_optimistic_locking(sandbox):
    product = sandbox.add_product("Jar", images=[{"filename": "jar.jpg"}])
    media_id = product["media"][0]["id"]

    async def action(client):
        first = await client.set_marker(product["id"], [media_id], None)
        read = await client.get_product(product["id"])
        second = await client.set_marker(product["id"], [media_id, "gid://shopify/MediaImage/1"], read.marker_digest)
        with pytest.raises(ShopifyUserError) as stale:
            await client.set_marker(product["id"], [], first)  # written since `first` was read
        return first, read, second, stale.value, await client.get_product(product["id"])

    first, read, second, stale, final = run(sandbox, action)
    assert read.marker_media_ids == {media_id} and read.marker_digest == first
    assert second != first
    assert stale.codes == ["STALE_OBJECT"]
    assert final.marker_media_ids == {media_id, "gid://shopify/MediaImage/1"} and final.marker_digest == second


def test_media_becomes_ready_after_processing(sandbox):
    product = sandbox.add_product("Box", images=[{"filename": "box.jpg"}])
    sandbox.add_image(product["legacy_id"], "box-side.jpg", "side", processing=True)

    async def action(client):
        fresh = await client.get_product(product["id"])
        pending = fresh.media[-1]
        return pending, await until_settled(client, pending.id)

    pending, settled = run(sandbox, action)
    assert pending.status in ("UPLOADED", "PROCESSING") and pending.url is None
    assert settled.status == "READY" and settled.url and settled.filename.endswith(".jpg")


def test_delete_media(sandbox):
    product = sandbox.add_product("Tray", images=[{"filename": "tray-1.jpg"}, {"filename": "tray-2.jpg"}])
    keep, drop = (m["id"] for m in product["media"])

    async def action(client):
        await client.delete_media([drop])
        return await client.get_product(product["id"]), await client.get_media(drop)

    after, gone = run(sandbox, action)
    assert [m.id for m in after.media] == [keep]
    assert gone is None


def test_throttled_and_server_errors_are_retried(sandbox):
    sandbox.add_product("Cup", images=[{"filename": "cup.jpg"}])
    sandbox.add_fault(throttle=True)
    sandbox.add_fault(status=503, count=1)

    async def action(client):
        shop = await client.shop()
        return shop, client.stats

    shop, stats = run(sandbox, action)
    assert shop.name
    assert stats.throttled == 1
    assert stats.retries["throttled"] == 1 and stats.retries["http_503"] == 1


def test_add_media_after_a_server_error_is_ambiguous_and_not_repeated(sandbox):
    product = sandbox.add_product("Pot", images=[{"filename": "pot.jpg"}])
    sandbox.add_fault(status=502, operation="ProductAddMedia")

    async def action(client):
        with pytest.raises(ShopifyUnavailable) as error:
            await client.add_media(product["id"], "https://merchant-upload.invalid/pot-2.jpg", None)
        return error.value

    error = run(sandbox, action)
    assert error.ambiguous is True
    assert len(sandbox.product(product["legacy_id"])["media"]) == 1


def test_wrong_token_is_an_auth_error(sandbox):
    async def action(client):
        with pytest.raises(ShopifyAuthError) as error:
            await client.shop()
        return error.value

    error = run(sandbox, action, token="shpat_wrong_token_000")
    assert error.status == 401
    assert "shpat_wrong_token_000" not in str(error) and TOKEN not in str(error)
