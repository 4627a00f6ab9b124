"""The Shopify sandbox's admin API (`/_sandbox/...`, for tests, the demo and store owners), its
CDN, and the generated product photos."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from conftest import FakeClock
from retouch.plugin.shopify.operations import operation
from retouch.plugin.shopify.sandbox import ShopifySandbox, product_photo

TOKEN = "shpat_sandbox_TESTSECRET_admin"
TLS = ssl.create_default_context()


def http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(timeout=15, verify=TLS) as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_795_000_000.0)


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(access_token=TOKEN, processing_seconds=1.0, clock=clock)
    server = sandbox.start()
    yield sandbox
    server.stop()


def admin(sandbox: ShopifySandbox, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = http(method, f"{sandbox.shop_url}/_sandbox{path}", json=body)
    assert response.status_code == status, response.text
    return response.json()


def test_create_read_update_delete_products(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    data = base64.b64encode(product_photo(3, "WEBP", (120, 90))).decode()
    created = admin(
        sandbox,
        "POST",
        "/products",
        {
            "title": "Mug",
            "tags": ["kitchen", " gift ", "Kitchen"],
            "images": [
                {"filename": "front.png", "alt": "Front"},
                {"filename": "side.webp", "alt": "Side", "data_base64": data},
            ],
        },
    )
    assert created["id"] == f"gid://shopify/Product/{created['legacy_id']}" and created["tags"] == ["gift", "kitchen"]
    front, side = created["media"]
    assert (front["position"], front["status"], front["alt"], front["mime_type"]) == (0, "READY", "Front", "image/png")
    assert (side["position"], side["mime_type"], side["width"], side["height"]) == (1, "image/webp", 120, 90)
    assert side["sha256"] == hashlib.sha256(base64.b64decode(data)).hexdigest()
    assert admin(sandbox, "GET", f"/products/{created['legacy_id']}") == created
    assert sandbox.product(created["id"]) == created  # a gid works as well as the number
    assert sandbox.media_bytes(side["id"]) == base64.b64decode(data)
    assert [p["id"] for p in admin(sandbox, "GET", "/products")] == [created["id"]]

    clock.now += 30
    patched = admin(sandbox, "PATCH", f"/products/{created['legacy_id']}", {"title": "Big mug"})
    assert patched["title"] == "Big mug" and patched["updated_at"] > created["updated_at"]
    clock.now += 30
    added = admin(sandbox, "POST", f"/products/{created['legacy_id']}/images", {"filename": "top.jpg", "alt": "Top"})
    assert (added["position"], added["mime_type"], added["status"]) == (2, "image/jpeg", "READY")
    later = admin(sandbox, "GET", f"/products/{created['legacy_id']}")
    assert later["updated_at"] > patched["updated_at"]

    media_number = front["id"].rsplit("/", 1)[1]
    assert admin(sandbox, "DELETE", f"/media/{media_number}") == {"deleted": front["id"]}
    remaining = admin(sandbox, "GET", f"/products/{created['legacy_id']}")["media"]
    assert [m["id"] for m in remaining] == [side["id"], added["id"]]
    admin(sandbox, "DELETE", f"/media/{media_number}", status=404)
    assert admin(sandbox, "DELETE", f"/products/{created['legacy_id']}") == {"deleted": created["id"]}
    admin(sandbox, "GET", f"/products/{created['legacy_id']}", status=404)
    assert http("GET", side["url"]).status_code == 404  # its files went with it


def test_bad_admin_requests_are_400(sandbox: ShopifySandbox) -> None:
    admin(sandbox, "POST", "/products", {"tags": []}, status=400)
    admin(sandbox, "POST", "/faults", {"status": 418}, status=400)
    admin(sandbox, "POST", "/faults", {"fail_media_processing": 1, "code": "NOT_A_CODE"}, status=400)
    admin(sandbox, "PATCH", "/products/abc", {"title": "x"}, status=404)


def test_an_image_added_with_processing_goes_through_the_lifecycle(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    product = sandbox.add_product("Mug")
    media = admin(
        sandbox, "POST", f"/products/{product['legacy_id']}/images", {"filename": "late.jpg", "processing": True}
    )
    assert (media["status"], media["url"], media["sha256"]) == ("UPLOADED", None, None)
    clock.now += 1.0
    (now,) = admin(sandbox, "GET", f"/products/{product['legacy_id']}")["media"]
    assert now["status"] == "READY" and now["url"] and now["sha256"]


def test_seed_is_deterministic_and_varied(sandbox: ShopifySandbox) -> None:
    first = admin(sandbox, "POST", "/seed", {"products": 4, "images_per_product": 2, "seed": 7})
    other = ShopifySandbox(processing_seconds=0).seed(products=4, images_per_product=2, seed=7)
    assert [p["title"] for p in first] == [p["title"] for p in other]
    assert [m["sha256"] for p in first for m in p["media"]] == [m["sha256"] for p in other for m in p["media"]]
    hashes = {m["sha256"] for p in first for m in p["media"]}
    assert len(hashes) == 8
    assert all(m["status"] == "READY" and m["alt"] for p in first for m in p["media"])
    assert {m["filename"].rsplit(".", 1)[1] for p in first for m in p["media"]} <= {"jpg", "png", "webp"}


def test_cdn_serves_each_format_with_its_content_type(sandbox: ShopifySandbox) -> None:
    product = sandbox.add_product("Mug", images=[{"filename": f"a.{ext}"} for ext in ("jpg", "png", "webp")])
    for media, fmt in zip(product["media"], ("JPEG", "PNG", "WEBP"), strict=True):
        served = http("GET", media["url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == media["mime_type"]
        assert Image.open(io.BytesIO(served.content)).format == fmt
        assert hashlib.sha256(served.content).hexdigest() == media["sha256"]
    assert http("GET", f"{sandbox.shop_url}/cdn/files/nothing.jpg").status_code == 404


def test_faults_and_stats_over_http(sandbox: ShopifySandbox) -> None:
    pending = admin(sandbox, "POST", "/faults", {"status": 503, "count": 1, "retry_after": 3, "operation": "Shop"})
    assert pending["http"] == [{"status": 503, "remaining": 1, "retry_after": 3.0, "operation": "Shop"}]
    url = f"{sandbox.shop_url}/admin/api/2026-07/graphql.json"
    headers = {"X-Shopify-Access-Token": TOKEN}
    unavailable = http("POST", url, headers=headers, json={"query": operation("Shop"), "operationName": "Shop"})
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "3"
    assert http("POST", url, headers=headers, json={"query": operation("Shop")}).status_code == 200
    admin(sandbox, "POST", "/faults", {"throttle": True})
    admin(sandbox, "POST", "/faults", {"fail_media_processing": 2, "code": "MEDIA_TIMEOUT_ERROR"})
    assert admin(sandbox, "GET", "/faults")["fail_media_processing"] == ["MEDIA_TIMEOUT_ERROR"] * 2
    admin(sandbox, "DELETE", "/faults")
    assert admin(sandbox, "GET", "/faults") == {
        "http": [],
        "throttle_next": False,
        "fail_media_processing": [],
        "webhook": [],
        "bulk": [],
    }
    wrong = http("POST", url, headers={"X-Shopify-Access-Token": "wrong"}, json={"query": "{ shop { name } }"})
    assert wrong.status_code == 401
    stats = admin(sandbox, "GET", "/stats")
    assert stats == {
        "graphql_requests": 2,
        "operations": {"Shop": 2},
        "throttled": 0,
        "faults_served": 1,
        "unauthorized": 1,
        "max_cost_exceeded": 0,
        "points": {"Shop": 1},
    }  # one Shop executed


def _border_and_centre(image: Image.Image) -> tuple[list[float], list[float]]:
    w, h = image.size
    centre = image.crop((w * 3 // 8, h * 3 // 8, w * 5 // 8, h * 5 // 8))
    border = image.crop((0, 0, w, h // 8))
    return ImageStat.Stat(centre).mean, ImageStat.Stat(border).mean


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_product_photos_decode_in_their_format(fmt: str) -> None:
    image = Image.open(io.BytesIO(product_photo(1, fmt)))
    assert (image.format, image.size) == (fmt, (640, 640))
    assert Image.open(io.BytesIO(product_photo(2, fmt, size=(300, 200)))).size == (300, 200)


def test_product_photos_are_deterministic_varied_and_show_a_product() -> None:
    assert product_photo(4) == product_photo(4)
    photos = [Image.open(io.BytesIO(product_photo(seed))).convert("RGB") for seed in range(6)]
    assert len({p.tobytes() for p in photos}) == 6
    for photo in photos:
        centre, border = _border_and_centre(photo)
        # A product stands out from the backdrop in the middle of the frame...
        assert sum(abs(c - b) for c, b in zip(centre, border, strict=True)) > 20
        # ...and the picture is neither blank nor blown out.
        assert 20 < sum(ImageStat.Stat(photo).mean) / 3 < 235
        assert max(ImageStat.Stat(photo).stddev) > 10
    with pytest.raises(ValueError):
        product_photo(1, "GIF")  # type: ignore[arg-type]


def test_variant_links_follow_the_media_id(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    product = sandbox.add_product("Mug", images=[{"filename": "a.jpg"}, {"filename": "b.jpg"}])
    second = product["media"][1]["id"].rsplit("/", 1)[-1]
    linked = admin(
        sandbox, "POST", f"/products/{product['legacy_id']}/variants", {"title": "Blue", "media_ids": [second]}
    )
    assert linked["variants"][0]["media_ids"] == [product["media"][1]["id"]]
    assert linked["updated_at"] >= product["updated_at"]
    # Replacing the file keeps the link (the media id stays); deleting the media drops it.
    sandbox.replace_image(second, data=product_photo(9, "JPEG", (80, 80)))
    assert sandbox.product(product["legacy_id"])["variants"][0]["media_ids"] == [product["media"][1]["id"]]
    sandbox.delete_media(second)
    assert sandbox.product(product["legacy_id"])["variants"][0]["media_ids"] == []
    other = sandbox.add_product("Cup", images=[{"filename": "c.jpg"}])
    with pytest.raises(LookupError):  # only the product's own media
        sandbox.add_variant(product["legacy_id"], "Red", [other["media"][0]["id"].rsplit("/", 1)[-1]])


def test_an_alt_text_edit_bumps_the_product_and_keeps_the_file(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    product = sandbox.add_product("Mug", images=[{"filename": "a.jpg", "alt": "old"}])
    media = product["media"][0]
    clock.now += 5
    edited = admin(sandbox, "PATCH", f"/media/{media['id'].rsplit('/', 1)[-1]}", {"alt": "new"})
    assert (edited["alt"], edited["url"], edited["sha256"]) == ("new", media["url"], media["sha256"])
    assert sandbox.product(product["legacy_id"])["updated_at"] > product["updated_at"]
