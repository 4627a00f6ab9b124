"""The Shopify sandbox over real HTTP: auth, products and search, the media lifecycle, staged
uploads and in-place replacement, reorder jobs, metafields, deletes, cost and throttling, faults.

Most tests drive the sandbox's clock (`FakeClock`) so that lifecycle steps are observed exactly;
one test uses real time. Where a capture of the real API exists, the answer is compared with it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest import FakeClock
from retouch.plugin.serve import serve_in_thread
from retouch.plugin.shopify.operations import all_operations, bulk_products_query, operation
from retouch.plugin.shopify.sandbox import ShopifySandbox, product_photo
from retouch.plugin.shopify.sandbox.model import iso

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CAPTURES = SHARED / "reference" / "shopify" / "captures"
TOKEN = "shpat_sandbox_TESTSECRET_81c3"
T0 = 1_795_000_000.0  # 2026-11-19T...Z
P = 2.0  # processing seconds in the fake-clock tests: UPLOADED [0, 1), PROCESSING [1, 2), then READY


def capture(relative: str) -> dict[str, Any]:
    path = CAPTURES / relative
    if not path.exists():
        pytest.skip(f"capture {relative} not found under {CAPTURES} (../shared is absent)")
    return json.loads(path.read_text(encoding="utf-8"))


# Made once: building a TLS context per client costs ~25 ms, and every call here makes a client.
TLS = ssl.create_default_context()


def http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(timeout=15, verify=TLS) as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def gql(
    sandbox: ShopifySandbox,
    name: str,
    variables: dict[str, Any] | None = None,
    *,
    document: str | None = None,
    token: str = TOKEN,
) -> dict[str, Any]:
    """POST one operation (by default the client's own document for `name`); the JSON answer."""
    response = http(
        "POST",
        f"{sandbox.shop_url}/admin/api/2026-07/graphql.json",
        json={"query": document or operation(name), "variables": variables or {}, "operationName": name},
        headers={"X-Shopify-Access-Token": token},
    )
    assert response.status_code == 200, response.text
    return response.json()


def data(sandbox: ShopifySandbox, name: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = gql(sandbox, name, variables)
    assert "errors" not in body, body["errors"]
    assert set(body["extensions"]["cost"]) == {"requestedQueryCost", "actualQueryCost", "throttleStatus"}
    return body["data"]


def media_node(sandbox: ShopifySandbox, media_id: str) -> dict[str, Any] | None:
    return data(sandbox, "Media", {"id": media_id})["node"]


def media_ids(sandbox: ShopifySandbox, product_id: str) -> list[str]:
    page = data(sandbox, "ProductMediaPage", {"id": product_id, "first": 50})["product"]["media"]
    return [n["id"] for n in page["nodes"]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def make_sandbox(clock: FakeClock) -> Iterator[Callable[..., ShopifySandbox]]:
    servers = []

    def make(**options: Any) -> ShopifySandbox:
        options = {"access_token": TOKEN, "processing_seconds": P, "clock": clock, **options}
        sandbox = ShopifySandbox(**options)
        servers.append(sandbox.start())
        return sandbox

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., ShopifySandbox]) -> ShopifySandbox:
    return make_sandbox()


PNG = product_photo(11, "PNG", (320, 240))
JPEG = product_photo(12, "JPEG", (300, 200))


class ImageHost:
    """Somewhere else on the internet that serves images (and things that are not)."""

    def __init__(self) -> None:
        self.slow_requested = threading.Event()  # "slow.png" answers only once `release` is set
        self.release = threading.Event()

        async def serve(request: Request) -> Response:
            name = request.path_params["name"]
            if name == "slow.png":
                self.slow_requested.set()
                await run_in_threadpool(self.release.wait, 30)
                return Response(PNG, media_type="image/png")
            if name == "photo.png":
                return Response(PNG, media_type="image/png")
            if name == "photo.jpg":
                return Response(JPEG, media_type="image/jpeg")
            if name == "notes.jpg":
                return Response(b"these are not the pixels you are looking for", media_type="image/jpeg")
            return Response(b"gone", status_code=404)

        self.server = serve_in_thread(Starlette(routes=[Route("/{name}", serve)]))

    def url(self, name: str) -> str:
        return f"{self.server.url}/{name}"


@pytest.fixture(scope="module")
def images() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.server.stop()


@pytest.fixture(scope="module")
def dead_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/photo.jpg"


def add_media(sandbox: ShopifySandbox, product_id: str, source: str, alt: str = "Added") -> str:
    """productUpdate(media:) through the client's document; the new media's id."""
    before = set(media_ids(sandbox, product_id))
    result = data(
        sandbox,
        "ProductAddMedia",
        {
            "product": {"id": product_id},
            "media": [{"originalSource": source, "alt": alt, "mediaContentType": "IMAGE"}],
            "mediaFirst": 50,
        },
    )["productUpdate"]
    assert result["userErrors"] == []
    (new_id,) = [n["id"] for n in result["product"]["media"]["nodes"] if n["id"] not in before]
    return new_id


# ---------------------------------------------------------------------- auth, routing, shop


def test_wrong_or_missing_token_is_401_with_shopifys_body(sandbox: ShopifySandbox) -> None:
    url = f"{sandbox.shop_url}/admin/api/2026-07/graphql.json"
    for headers in ({"X-Shopify-Access-Token": "shpat_wrong"}, {}):
        response = http("POST", url, json={"query": operation("Shop")}, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }
    assert sandbox.stats()["graphql_requests"] == 0
    assert TOKEN not in repr(sandbox)


def test_unknown_api_version_is_404(sandbox: ShopifySandbox) -> None:
    response = http(
        "POST",
        f"{sandbox.shop_url}/admin/api/2019-01/graphql.json",
        json={"query": operation("Shop")},
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    assert response.status_code == 404


def test_shop_answers_with_cost_extensions(sandbox: ShopifySandbox) -> None:
    body = gql(sandbox, "Shop")
    assert body["data"] == {"shop": {"name": "retouch-sandbox", "myshopifyDomain": "retouch-sandbox.myshopify.com"}}
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 1,
        "actualQueryCost": 1,
        "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 1999, "restoreRate": 100},
    }


def test_validation_errors_look_like_shopifys(sandbox: ShopifySandbox) -> None:
    case = capture("2026-04/media/media-staged-uploads-create-user-errors-shape.json")["cases"][1]
    request = case["request"]
    body = gql(sandbox, "StagedUploadUserErrorsShapeCode", request["variables"], document=request["document"])
    assert body == case["response"]["payload"]


# ---------------------------------------------------------------------- products, paging, search


def test_products_paging_visits_every_product_once(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    created = []
    for n in range(5):
        created.append(sandbox.add_product(f"Product {n}", images=[{"filename": f"p{n}.jpg"}])["id"])
        clock.advance(1)
    seen, after = [], None
    while True:
        page = data(sandbox, "ProductsPage", {"first": 2, "after": after, "mediaFirst": 1})["products"]
        seen += [p["id"] for p in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == created  # sortKey UPDATED_AT: oldest first
    cursor = json.loads(base64.b64decode(after))  # opaque to clients, Shopify-shaped inside
    assert cursor == {
        "last_id": int(created[3].rsplit("/", 1)[1]),
        "last_value": iso(T0 + 3).replace("T", " ").replace("Z", ".000000"),
    }


def test_updated_at_and_tag_search(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    old = sandbox.add_product("Old mug", tags=["kitchen"])
    clock.advance(60)
    cutoff = iso(clock.now)
    edge = sandbox.add_product("Edge vase", tags=["gift"])
    clock.advance(60)
    new = sandbox.add_product("New teapot", tags=["gift", "no-retouch"])

    def ids(query: str) -> list[str]:
        page = data(sandbox, "ProductsPage", {"first": 10, "query": query, "mediaFirst": 1})["products"]
        return [p["id"] for p in page["nodes"]]

    assert ids(f"updated_at:>'{cutoff}'") == [new["id"]]
    assert ids(f"updated_at:>={cutoff}") == [edge["id"], new["id"]]
    assert ids(f"updated_at:<'{cutoff}'") == [old["id"]]
    assert ids("tag:gift") == [edge["id"], new["id"]]
    assert ids("tag:gift -tag:no-retouch") == [edge["id"]]
    assert ids("tag_not:no-retouch") == [old["id"], edge["id"]]
    assert ids(f"id:>={edge['legacy_id']}") == [edge["id"], new["id"]]
    # A write makes an old product new again for an incremental scan.
    clock.advance(60)
    since = iso(clock.now - 1)
    sandbox.update_product(old["legacy_id"], title="Old mug, renamed")
    assert ids(f"updated_at:>'{since}'") == [old["id"]]


def test_malformed_search_queries_behave_like_shopify(sandbox: ShopifySandbox) -> None:
    recorded = capture("2025-01/products/product-invalid-search-query-syntax.json")["captures"]
    tag = recorded["productCreate"]["variables"]["input"]["tags"][0]
    sandbox.add_product(recorded["productCreate"]["variables"]["input"]["title"], tags=[tag])
    sandbox.add_product("Unrelated product", tags=["other"])
    for name, case in recorded.items():
        if not name.endswith("SearchAfterCreate"):
            continue
        expected = len(case["result"]["payload"]["data"]["products"]["nodes"])
        body = gql(sandbox, "ProductsPage", {"first": 5, "query": case["variables"]["query"], "mediaFirst": 1})
        assert "errors" not in body, name
        assert len(body["data"]["products"]["nodes"]) == expected, (name, case["variables"]["query"])


def test_page_size_over_250_or_missing_is_an_error_and_nothing_runs(sandbox: ShopifySandbox) -> None:
    product = sandbox.add_product("Mug", images=[{"filename": "a.jpg"}])
    for first in (251, None):
        body = gql(sandbox, "ProductMediaPage", {"id": product["id"], "first": first})
        assert "data" not in body and body["errors"]
    assert gql(sandbox, "Shop")["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1999


def test_product_by_id_and_missing_nodes(sandbox: ShopifySandbox) -> None:
    product = sandbox.add_product("Mug", tags=["b", "a"], images=[{"filename": "a.jpg", "alt": "Front"}])
    found = data(sandbox, "Product", {"id": product["id"], "mediaFirst": 5})["product"]
    assert (found["legacyResourceId"], found["title"], found["tags"]) == (product["legacy_id"], "Mug", ["a", "b"])
    assert found["marker"] is None and found["media"]["nodes"][0]["alt"] == "Front"
    assert data(sandbox, "Product", {"id": "gid://shopify/Product/1", "mediaFirst": 5})["product"] is None
    assert media_node(sandbox, "gid://shopify/MediaImage/1") is None
    # A product id is not a media: node() answers with the product, the Media fragment stays empty.
    assert media_node(sandbox, product["id"]) == {"__typename": "Product"}


# ---------------------------------------------------------------------- media lifecycle


def test_product_update_appends_media_that_goes_uploaded_processing_ready(
    sandbox: ShopifySandbox, clock: FakeClock, images: ImageHost
) -> None:
    recorded = capture("2025-01/products/product-top-level-media-parity.json")["validUpdate"]["response"]["payload"]
    product = sandbox.add_product("Mug", images=[{"filename": "front.jpg", "alt": "Front"}])
    clock.advance(10)
    written_at = iso(clock.now)
    result = data(
        sandbox,
        "ProductAddMedia",
        {
            "product": {"id": product["id"]},
            "media": [{"originalSource": images.url("photo.png"), "alt": "Side", "mediaContentType": "IMAGE"}],
            "mediaFirst": 10,
        },
    )["productUpdate"]
    assert set(result) == set(recorded["data"]["productUpdate"]) and result["userErrors"] == []
    nodes = result["product"]["media"]["nodes"]
    assert [n["alt"] for n in nodes] == ["Front", "Side"]
    assert (
        nodes[-1]["status"]
        == recorded["data"]["productUpdate"]["product"]["media"]["nodes"][-1]["status"]
        == "UPLOADED"
    )
    new_id = nodes[-1]["id"]

    node = media_node(sandbox, new_id)
    assert (node["status"], node["image"], node["mimeType"], node["mediaErrors"]) == ("UPLOADED", None, None, [])
    clock.advance(P * 0.6)
    node = media_node(sandbox, new_id)
    assert (node["status"], node["image"]) == ("PROCESSING", None)
    clock.advance(P * 0.5)
    node = media_node(sandbox, new_id)
    assert node["status"] == "READY" and node["mimeType"] == "image/png"
    assert (node["image"]["width"], node["image"]["height"]) == (320, 240)
    assert node["originalSource"] == {"url": images.url("photo.png"), "fileSize": len(PNG)}
    served = http("GET", node["image"]["url"])
    assert served.status_code == 200 and served.content == PNG and served.headers["content-type"] == "image/png"
    # The write bumped the product's updatedAt; processing finishing did not.
    assert sandbox.product(product["legacy_id"])["updated_at"] == written_at
    assert node["updatedAt"] == iso(clock.now - P * 0.1)  # the media's own updatedAt moved when READY


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("dead", "IMAGE_DOWNLOAD_FAILURE"),
        ("missing.jpg", "IMAGE_DOWNLOAD_FAILURE"),
        ("notes.jpg", "UNSUPPORTED_IMAGE_FILE_TYPE"),
    ],
)
def test_bad_sources_end_failed_with_media_errors(
    sandbox: ShopifySandbox, clock: FakeClock, images: ImageHost, dead_url: str, source: str, code: str
) -> None:
    product = sandbox.add_product("Mug")
    new_id = add_media(sandbox, product["id"], dead_url if source == "dead" else images.url(source))
    assert media_node(sandbox, new_id)["status"] == "UPLOADED"  # accepted: the failure comes later
    clock.advance(P)
    node = media_node(sandbox, new_id)
    assert node["status"] == "FAILED" and node["image"] is None
    assert [e["code"] for e in node["mediaErrors"]] == [code]
    assert node["mediaErrors"][0]["message"]


def test_invalid_source_url_is_a_user_error_and_changes_nothing(sandbox: ShopifySandbox) -> None:
    recorded = capture("2025-01/products/product-top-level-media-parity.json")["invalidUpdate"]
    product = sandbox.add_product("Mug", images=[{"filename": "front.jpg"}])
    variables = {**recorded["variables"], "product": {**recorded["variables"]["product"], "id": product["id"]}}
    result = data(sandbox, "ProductAddMedia", {**variables, "mediaFirst": 10})["productUpdate"]
    assert result["userErrors"] == recorded["response"]["payload"]["data"]["productUpdate"]["userErrors"]
    after = sandbox.product(product["legacy_id"])
    assert after["title"] == "Mug" and len(after["media"]) == 1 and after["updated_at"] == product["updated_at"]


def test_product_update_of_unknown_product(sandbox: ShopifySandbox, images: ImageHost) -> None:
    result = data(
        sandbox,
        "ProductAddMedia",
        {
            "product": {"id": "gid://shopify/Product/404"},
            "mediaFirst": 1,
            "media": [{"originalSource": images.url("photo.png"), "alt": "x", "mediaContentType": "IMAGE"}],
        },
    )["productUpdate"]
    assert result["product"] is None
    assert result["userErrors"] == [{"field": ["id"], "message": "Product does not exist"}]


def test_a_slow_source_does_not_hold_up_the_shop(sandbox: ShopifySandbox, images: ImageHost) -> None:
    product = sandbox.add_product("Mug")
    images.slow_requested.clear()
    images.release.clear()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(add_media, sandbox, product["id"], images.url("slow.png"))
        assert images.slow_requested.wait(30), "the sandbox never fetched the source"
        # While the download hangs, the shop answers GraphQL and admin calls.
        assert "errors" not in gql(sandbox, "Shop")
        assert sandbox.product(product["legacy_id"])["media"] == []
        images.release.set()
        new_id = pending.result(30)
    assert media_node(sandbox, new_id)["originalSource"]["fileSize"] == len(PNG)


def test_media_processing_in_real_time(make_sandbox: Callable[..., ShopifySandbox], images: ImageHost) -> None:
    import time

    sandbox = make_sandbox(clock=time.time, processing_seconds=0.1)
    product = sandbox.add_product("Mug")
    new_id = add_media(sandbox, product["id"], images.url("photo.jpg"))
    deadline = time.monotonic() + 10
    while (node := media_node(sandbox, new_id))["status"] != "READY":
        assert node["status"] in ("UPLOADED", "PROCESSING") and node["image"] is None
        assert time.monotonic() < deadline, "media never became READY"
        time.sleep(0.02)
    assert http("GET", node["image"]["url"]).content == JPEG


# ---------------------------------------------------------------------- staged uploads and fileUpdate


def staged_target(sandbox: ShopifySandbox, filename: str, mime: str, method: str | None, size: int) -> dict[str, Any]:
    item = {"resource": "IMAGE", "filename": filename, "mimeType": mime, "fileSize": str(size)}
    if method:
        item["httpMethod"] = method
    result = data(sandbox, "StagedUploadsCreate", {"input": [item]})["stagedUploadsCreate"]
    assert result["userErrors"] == []
    (target,) = result["stagedTargets"]
    return target


def upload(target: dict[str, Any], method: str, filename: str, payload: bytes, mime: str) -> httpx.Response:
    parameters = {p["name"]: p["value"] for p in target["parameters"]}
    if method == "PUT":
        return http("PUT", target["url"], content=payload, headers=parameters)
    return http("POST", target["url"], data=parameters, files={"file": (filename, payload, mime)})


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_staged_upload_then_file_update_replaces_bytes_in_place(
    sandbox: ShopifySandbox, clock: FakeClock, method: str
) -> None:
    recorded = capture("2026-04/media/staged-upload-targets-parity.json")["stagedUploadsCreate"]["response"]
    default = capture("2026-04/media/media-staged-uploads-create-default-http-method.json")["cases"][0]
    product = sandbox.add_product(
        "Mug", images=[{"filename": "front.jpg", "alt": "Front"}, {"filename": "side.jpg", "alt": "Side"}]
    )
    front = product["media"][0]
    new_bytes = product_photo(99, "JPEG", (200, 200))

    # A PUT target is the default; its parameters, like a POST target's, are Shopify's.
    target = staged_target(
        sandbox, "front-retouched.jpg", "image/jpeg", None if method == "PUT" else "POST", len(new_bytes)
    )
    expected_names = (
        default["response"]["payload"]["data"]["stagedUploadsCreate"]["stagedTargets"][0]["parameters"]
        if method == "PUT"
        else recorded["data"]["stagedUploadsCreate"]["stagedTargets"][0]["parameters"]
    )
    assert [p["name"] for p in target["parameters"]] == [p["name"] for p in expected_names]
    assert target["resourceUrl"].endswith("/front-retouched.jpg")
    uploaded = upload(target, method, "front-retouched.jpg", new_bytes, "image/jpeg")
    assert uploaded.status_code == (200 if method == "PUT" else 201)
    assert http("GET", target["resourceUrl"]).status_code == 403  # a private bucket

    clock.advance(10)
    result = data(sandbox, "FileUpdate", {"files": [{"id": front["id"], "originalSource": target["resourceUrl"]}]})
    # As captured: the file answers READY at once (media-file-update-source-semantics.json) ...
    assert result["fileUpdate"] == {
        "files": [{"id": front["id"], "fileStatus": "READY", "alt": "Front"}],
        "userErrors": [],
    }
    # ... while the media itself is processing again, with no image to show.
    node = media_node(sandbox, front["id"])
    assert (node["status"], node["image"]) == ("UPLOADED", None)
    assert (
        sandbox.product(product["legacy_id"])["media"][0]["sha256"] == front["sha256"]
    )  # the CDN still serves the old
    clock.advance(P)
    node = media_node(sandbox, front["id"])
    assert node["status"] == "READY" and node["alt"] == "Front"
    old_url, new_url = urlsplit(front["url"]), urlsplit(node["image"]["url"])
    assert old_url.path == new_url.path and old_url.query != new_url.query  # same file name, new version
    assert http("GET", node["image"]["url"]).content == new_bytes
    assert media_ids(sandbox, product["id"]) == [front["id"], product["media"][1]["id"]]  # position kept
    after = sandbox.product(product["legacy_id"])
    assert after["media"][0]["sha256"] == hashlib.sha256(new_bytes).hexdigest()
    assert after["updated_at"] == iso(T0 + 10)


def test_file_update_with_new_alt_and_a_never_uploaded_target(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    product = sandbox.add_product("Mug", images=[{"filename": "front.png", "alt": "Front"}])
    media_id = product["media"][0]["id"]
    target = staged_target(sandbox, "front.png", "image/png", "PUT", 10)
    update = {"id": media_id, "originalSource": target["resourceUrl"], "alt": "New"}
    result = data(sandbox, "FileUpdate", {"files": [update]})
    assert result["fileUpdate"]["files"][0]["alt"] == "New"
    clock.advance(P)
    node = media_node(sandbox, media_id)
    assert node["status"] == "FAILED" and node["mediaErrors"][0]["code"] == "IMAGE_DOWNLOAD_FAILURE"
    # The CDN keeps serving the last good image.
    assert http("GET", product["media"][0]["url"]).status_code == 200


def test_upload_to_an_unknown_target_is_refused(sandbox: ShopifySandbox) -> None:
    assert http("PUT", f"{sandbox.shop_url}/_staged/upload/nope", content=b"x").status_code == 403


def test_invalid_filename_extension_as_captured(sandbox: ShopifySandbox) -> None:
    recorded = capture("2026-04/media/media-file-update-filename-extension-aggregation.json")["cases"]
    single = recorded["singleImageMismatch"]["response"]["data"]["fileUpdate"]
    multi = recorded["multiImageMismatch"]["response"]["data"]["fileUpdate"]
    product = sandbox.add_product("Mug", images=[{"filename": "one.jpg"}, {"filename": "two.jpg"}])
    one, two = (m["id"] for m in product["media"])
    png = staged_target(sandbox, "one-retouched.png", "image/png", "PUT", 10)["resourceUrl"]

    assert data(sandbox, "FileUpdate", {"files": [{"id": one, "originalSource": png}]})["fileUpdate"] == single
    assert data(sandbox, "FileUpdate", {"files": [{"id": one, "filename": "renamed.png"}]})["fileUpdate"] == single
    both = [{"id": one, "filename": "one.png"}, {"id": two, "filename": "two.gif"}]
    assert data(sandbox, "FileUpdate", {"files": both})["fileUpdate"] == multi
    assert [m["sha256"] for m in sandbox.product(product["legacy_id"])["media"]] == [
        m["sha256"] for m in product["media"]
    ]


def test_non_ready_and_missing_files_as_captured(sandbox: ShopifySandbox) -> None:
    branches = capture("2026-04/media/media-file-update-validation-branches.json")["branches"]
    product = sandbox.add_product("Mug")
    processing = sandbox.add_image(product["legacy_id"], "late.jpg", processing=True)
    non_ready = data(sandbox, "FileUpdate", {"files": [{"id": processing["id"], "alt": "x"}]})["fileUpdate"]
    assert non_ready == branches["nonReadyAlt"]["response"]["data"]["fileUpdate"]
    wrong = branches["wrongType"]
    assert data(sandbox, "FileUpdate", wrong["variables"])["fileUpdate"] == wrong["response"]["data"]["fileUpdate"]


def test_references_to_remove_detaches_the_media(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    branch = capture("2026-04/media/media-file-update-validation-branches.json")["branches"]["missingReferences"]
    product = sandbox.add_product("Mug", images=[{"filename": "a.jpg"}, {"filename": "b.jpg"}])
    first, second = (m["id"] for m in product["media"])
    missing = {"id": first, "referencesToRemove": branch["variables"]["files"][0]["referencesToRemove"]}
    assert data(sandbox, "FileUpdate", {"files": [missing]})["fileUpdate"] == branch["response"]["data"]["fileUpdate"]
    clock.advance(5)
    result = data(sandbox, "FileUpdate", {"files": [{"id": first, "referencesToRemove": [product["id"]]}]})
    assert result["fileUpdate"]["userErrors"] == []
    assert media_ids(sandbox, product["id"]) == [second]
    assert media_node(sandbox, first)["id"] == first  # still a file of the shop
    assert sandbox.product(product["legacy_id"])["updated_at"] == iso(T0 + 5)


# ---------------------------------------------------------------------- reorder


def test_reorder_media_applies_moves_in_order_through_a_job(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    recorded = capture("2025-01/products/product-reorder-media-parity.json")
    created = recorded["setup"]["productCreateMedia"]
    alts = [m["alt"] for m in created["variables"]["media"]]
    alt_of = {m["id"]: m["alt"] for m in created["response"]["data"]["productCreateMedia"]["media"]}
    product = sandbox.add_product("Mug", images=[{"filename": f"{i}.jpg", "alt": a} for i, a in enumerate(alts)])
    ours = {m["alt"]: m["id"] for m in product["media"]}

    def order() -> list[str]:
        page = data(sandbox, "Product", {"id": product["id"], "mediaFirst": 10})["product"]["media"]["nodes"]
        return [n["alt"] for n in page]

    for step in ("singleMove", "orderedMoves"):
        moves = [
            {"id": ours[alt_of[m["id"]]], "newPosition": m["newPosition"]}
            for m in recorded[step]["mutation"]["variables"]["moves"]
        ]
        before = order()
        result = data(sandbox, "ProductReorderMedia", {"id": product["id"], "moves": moves})["productReorderMedia"]
        captured = recorded[step]["mutation"]["response"]["data"]["productReorderMedia"]
        assert result["job"]["done"] is captured["job"]["done"] is False
        assert result["job"]["id"].startswith("gid://shopify/Job/")
        assert result["mediaUserErrors"] == captured["mediaUserErrors"]
        assert order() == before and data(sandbox, "Job", {"id": result["job"]["id"]})["job"]["done"] is False
        clock.advance(P)
        assert data(sandbox, "Job", {"id": result["job"]["id"]})["job"] == {"id": result["job"]["id"], "done": True}
        assert order() == [n["alt"] for n in recorded[step]["downstreamRead"]["data"]["product"]["media"]["nodes"]]
    assert sandbox.product(product["legacy_id"])["updated_at"] == iso(T0 + 2 * P)


def test_reorder_with_bad_ids(sandbox: ShopifySandbox) -> None:
    product = sandbox.add_product("Mug", images=[{"filename": "a.jpg"}])
    other = sandbox.add_product("Vase", images=[{"filename": "b.jpg"}])
    moves = [
        {"id": "gid://shopify/MediaImage/1", "newPosition": "0"},
        {"id": other["media"][0]["id"], "newPosition": "0"},
    ]
    result = data(sandbox, "ProductReorderMedia", {"id": product["id"], "moves": moves})["productReorderMedia"]
    assert result["job"] is None
    assert [(e["code"], e["field"]) for e in result["mediaUserErrors"]] == [
        ("MEDIA_DOES_NOT_EXIST", ["moves", "0", "id"]),
        ("MEDIA_DOES_NOT_EXIST_ON_PRODUCT", ["moves", "1", "id"]),
    ]
    missing = data(sandbox, "ProductReorderMedia", {"id": "gid://shopify/Product/1", "moves": []})[
        "productReorderMedia"
    ]
    assert missing["mediaUserErrors"][0]["code"] == "PRODUCT_DOES_NOT_EXIST"


# ---------------------------------------------------------------------- metafields


def marker_input(owner: str, value: Any, digest: str | None = None, **extra: Any) -> dict[str, Any]:
    item = {
        "ownerId": owner,
        "namespace": "$app:retouch",
        "key": "output_media",
        "type": "json",
        "value": json.dumps(value),
    }
    if digest is not None:
        item["compareDigest"] = digest
    return {**item, **extra}


def test_metafields_set_with_optimistic_locking(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    stale_capture = capture("2025-01/products/metafields-set-stale-digest-parity.json")["mutation"]["response"]
    product = sandbox.add_product("Mug")
    clock.advance(5)
    first = data(sandbox, "MetafieldsSet", {"metafields": [marker_input(product["id"], {"media_ids": ["a"]})]})
    (written,) = first["metafieldsSet"]["metafields"]
    assert (written["namespace"], written["key"]) == ("$app:retouch", "output_media")
    assert len(written["compareDigest"]) == 64
    read = data(sandbox, "Product", {"id": product["id"], "mediaFirst": 1})["product"]
    assert read["marker"] == {"value": written["value"], "compareDigest": written["compareDigest"]}
    assert read["updatedAt"] == iso(T0 + 5)

    second = data(
        sandbox,
        "MetafieldsSet",
        {"metafields": [marker_input(product["id"], {"media_ids": ["a", "b"]}, written["compareDigest"])]},
    )
    assert second["metafieldsSet"]["userErrors"] == []
    assert second["metafieldsSet"]["metafields"][0]["compareDigest"] != written["compareDigest"]

    stale = data(
        sandbox,
        "MetafieldsSet",
        {"metafields": [marker_input(product["id"], {"media_ids": []}, written["compareDigest"])]},
    )["metafieldsSet"]
    expected = stale_capture["data"]["metafieldsSet"]
    assert stale["metafields"] == expected["metafields"] == []
    assert stale["userErrors"] == [{k: e[k] for k in ("field", "message", "code")} for e in expected["userErrors"]]
    assert json.loads(sandbox.product(product["legacy_id"])["metafields"]["$app:retouch.output_media"]["value"]) == {
        "media_ids": ["a", "b"]
    }


def test_metafields_set_limits_and_atomicity(sandbox: ShopifySandbox) -> None:
    over = capture("2025-01/products/metafields-set-over-limit-parity.json")["mutation"]["response"]["data"][
        "metafieldsSet"
    ]
    product = sandbox.add_product("Mug")
    many = [
        {"ownerId": product["id"], "namespace": "bulk", "key": f"k{i}", "type": "single_line_text_field", "value": "v"}
        for i in range(26)
    ]
    result = data(sandbox, "MetafieldsSet", {"metafields": many})["metafieldsSet"]
    assert result["metafields"] is over["metafields"] is None
    assert result["userErrors"] == [{k: e[k] for k in ("field", "message", "code")} for e in over["userErrors"]]
    assert data(sandbox, "MetafieldsSet", {"metafields": many[:25]})["metafieldsSet"]["userErrors"] == []

    good = marker_input(product["id"], {"ok": True})
    bad = {**marker_input(product["id"], None), "key": "broken", "value": "{nope"}
    result = data(sandbox, "MetafieldsSet", {"metafields": [good, bad]})["metafieldsSet"]
    assert result["metafields"] == [] and [(e["code"], e["field"]) for e in result["userErrors"]] == [
        ("INVALID_VALUE", ["metafields", "1", "value"])
    ]
    assert "$app:retouch.output_media" not in sandbox.product(product["legacy_id"])["metafields"]


# ---------------------------------------------------------------------- delete


def test_file_delete(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    typed = capture("2026-04/media/media-file-delete-typed-gid-roundtrip.json")["deleteWrongType"]
    product = sandbox.add_product("Mug", images=[{"filename": f"{n}.jpg"} for n in range(3)])
    first, second, third = (m["id"] for m in product["media"])
    clock.advance(5)
    result = data(sandbox, "FileDelete", {"fileIds": [first]})["fileDelete"]
    assert result == {"deletedFileIds": [first], "userErrors": []}
    assert media_node(sandbox, first) is None and media_ids(sandbox, product["id"]) == [second, third]
    assert sandbox.product(product["legacy_id"])["updated_at"] == iso(T0 + 5)
    # Any gid type with the right number deletes the file, answered with its real gid (as captured).
    assert typed["variables"]["fileIds"][0].startswith("gid://shopify/Video/")
    as_video = "gid://shopify/Video/" + second.rsplit("/", 1)[1]
    assert data(sandbox, "FileDelete", {"fileIds": [as_video]})["fileDelete"]["deletedFileIds"] == [second]
    missing = data(sandbox, "FileDelete", {"fileIds": [first, third]})["fileDelete"]
    assert [e["code"] for e in missing["userErrors"]] == ["FILE_DOES_NOT_EXIST"]
    assert media_ids(sandbox, product["id"]) == [third]  # nothing deleted when one id is missing


# ---------------------------------------------------------------------- cost and throttling


def test_throttled_when_the_bucket_cannot_pay(make_sandbox: Callable[..., ShopifySandbox], clock: FakeClock) -> None:
    sandbox = make_sandbox(bucket_size=40, restore_rate=1)
    sandbox.add_product("Mug", images=[{"filename": "a.jpg"}])
    # requested 22 (10 + the first ten collections' 12), actual 10 (no marker, no media errors, no collection)
    variables = {"first": 1, "mediaFirst": 1}
    costs = [gql(sandbox, "ProductsPage", variables)["extensions"]["cost"] for _ in range(2)]
    assert [(c["requestedQueryCost"], c["actualQueryCost"]) for c in costs] == [(22, 10), (22, 10)]
    assert [c["throttleStatus"]["currentlyAvailable"] for c in costs] == [30, 20]
    throttled = gql(sandbox, "ProductsPage", variables)
    assert "data" not in throttled
    assert throttled["errors"] == [
        {
            "message": "Throttled",
            "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
        }
    ]
    assert throttled["extensions"]["cost"] == {
        "requestedQueryCost": 22,
        "actualQueryCost": None,
        "throttleStatus": {"maximumAvailable": 40, "currentlyAvailable": 20, "restoreRate": 1},
    }
    clock.advance(2)  # 2 points restored: 22 available
    assert "errors" not in gql(sandbox, "ProductsPage", variables)
    assert sandbox.stats()["throttled"] == 1


def test_a_throttled_mutation_does_nothing(make_sandbox: Callable[..., ShopifySandbox]) -> None:
    sandbox = make_sandbox(bucket_size=10, restore_rate=1)
    product = sandbox.add_product("Mug")
    body = gql(sandbox, "MetafieldsSet", {"metafields": [marker_input(product["id"], [])]})  # requested 11
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert sandbox.product(product["legacy_id"])["metafields"] == {}


def test_max_cost_exceeded_and_nothing_charged(sandbox: ShopifySandbox) -> None:
    body = gql(sandbox, "ProductsPage", {"first": 50, "mediaFirst": 10})
    (error,) = body["errors"]
    assert error["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": 2802,
        "maxCost": 1000,
        "documentation": "https://shopify.dev/api/usage/rate-limits",
    }
    assert error["message"].startswith("Query cost is 2802, which exceeds the single query max cost limit (1000).")
    assert gql(sandbox, "Shop")["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1999


# ---------------------------------------------------------------------- faults


def test_http_faults_429_with_retry_after_then_normal(sandbox: ShopifySandbox) -> None:
    sandbox.add_fault(status=429, count=2, retry_after=1.5)
    url = f"{sandbox.shop_url}/admin/api/2026-07/graphql.json"
    for _ in range(2):
        response = http("POST", url, json={"query": operation("Shop")}, headers={"X-Shopify-Access-Token": TOKEN})
        assert response.status_code == 429 and response.headers["Retry-After"] == "2"
        assert isinstance(response.json()["errors"], str)
    assert "errors" not in gql(sandbox, "Shop")
    stats = sandbox.stats()
    assert stats["faults_served"] == 2 and stats["graphql_requests"] == 3 and stats["operations"] == {"Shop": 3}


def test_http_fault_for_one_operation(sandbox: ShopifySandbox) -> None:
    sandbox.add_fault(status=500, operation="ProductsPage")
    sandbox.add_fault(status=502, operation="Job")
    url = f"{sandbox.shop_url}/admin/api/2026-07/graphql.json"
    headers = {"X-Shopify-Access-Token": TOKEN}
    assert "errors" not in gql(sandbox, "Shop")
    failed = http(
        "POST",
        url,
        headers=headers,
        json={
            "query": operation("ProductsPage"),
            "operationName": "ProductsPage",
            "variables": {"first": 1, "mediaFirst": 1},
        },
    )
    assert failed.status_code == 500 and failed.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    bad_gateway = http(
        "POST",
        url,
        headers=headers,
        json={"query": operation("Job"), "operationName": "Job", "variables": {"id": "gid://shopify/Job/x"}},
    )
    assert bad_gateway.status_code == 502 and bad_gateway.headers["content-type"].startswith("text/html")
    assert "errors" not in gql(sandbox, "ProductsPage", {"first": 1, "mediaFirst": 1})
    assert sandbox.faults()["http"] == []


def test_throttle_fault_and_media_failure_fault(sandbox: ShopifySandbox, clock: FakeClock, images: ImageHost) -> None:
    sandbox.add_fault(throttle=True)
    assert gql(sandbox, "Shop")["errors"][0]["extensions"]["code"] == "THROTTLED"
    clock.advance(1)
    assert "errors" not in gql(sandbox, "Shop")
    clock.advance(30)  # refill the bucket
    product = sandbox.add_product("Mug")
    sandbox.add_fault(fail_media_processing=1, code="IMAGE_PROCESSING_FAILURE")
    failing, fine = (add_media(sandbox, product["id"], images.url("photo.png")) for _ in range(2))
    clock.advance(P)
    assert media_node(sandbox, failing)["mediaErrors"][0]["code"] == "IMAGE_PROCESSING_FAILURE"
    assert media_node(sandbox, fine)["status"] == "READY"


# ---------------------------------------------------------------------- the client's operations


def test_every_client_operation_executes(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    """Each document in plugin/shopify/operations/ runs without errors (the flows above check answers)."""
    product = sandbox.add_product("Mug", images=[{"filename": "a.jpg"}, {"filename": "b.jpg"}])
    first, second = (m["id"] for m in product["media"])
    payload = product_photo(5, "JPEG", (64, 64))
    target = staged_target(sandbox, "a2.jpg", "image/jpeg", "PUT", len(payload))
    assert upload(target, "PUT", "a2.jpg", payload, "image/jpeg").status_code == 200
    job = None
    variables = {
        "Shop": {},
        "ShopMetafield": {"namespace": "$app:retouch", "key": "instance"},
        "ProductsPage": {"first": 5, "mediaFirst": 5, "query": "tag_not:no-retouch"},
        "Product": {"id": product["id"], "mediaFirst": 1},
        "ProductMediaPage": {"id": product["id"], "first": 1, "after": None},
        "ProductCollectionsPage": {"id": product["id"], "after": None},
        "Media": {"id": first},
        "MediaNodes": {"ids": [first, second]},
        "StagedUploadsCreate": {"input": [{"resource": "IMAGE", "filename": "x.jpg", "mimeType": "image/jpeg"}]},
        "FileUpdate": {"files": [{"id": first, "originalSource": target["resourceUrl"]}]},
        "ProductAddMedia": {
            "product": {"id": product["id"]},
            "mediaFirst": 5,
            "media": [{"originalSource": target["resourceUrl"], "alt": "a", "mediaContentType": "IMAGE"}],
        },
        "ProductReorderMedia": {"id": product["id"], "moves": [{"id": second, "newPosition": "0"}]},
        "MetafieldsSet": {"metafields": [marker_input(product["id"], {"media_ids": [first]})]},
        "FileDelete": {"fileIds": [second]},
        "WebhookSubscriptionCreate": {"topic": "PRODUCTS_UPDATE", "uri": "http://127.0.0.1:9/webhooks/shopify"},
        "WebhookSubscriptions": {"topics": ["PRODUCTS_UPDATE"], "first": 5, "after": None},
        "ProductsCount": {"query": None, "limit": None},
        "BulkProductsRun": {"query": bulk_products_query()},
    }
    subscription = bulk = None
    for name in [
        "Shop",
        "ShopMetafield",
        "ProductsPage",
        "Product",
        "ProductMediaPage",
        "ProductCollectionsPage",
        "Media",
        "MediaNodes",
        "StagedUploadsCreate",
        "FileUpdate",
        "ProductAddMedia",
        "ProductReorderMedia",
        "Job",
        "MetafieldsSet",
        "FileDelete",
        "WebhookSubscriptionCreate",
        "WebhookSubscriptions",
        "WebhookSubscriptionDelete",
        "ProductsCount",
        "BulkProductsRun",
        "BulkOperation",
        "BulkOperationCancel",
    ]:
        if name in ("BulkOperation", "BulkOperationCancel"):
            variables[name] = {"id": bulk}
        if name == "Job":
            variables["Job"] = {"id": job}
        if name == "WebhookSubscriptionDelete":
            variables[name] = {"id": subscription}
        result = data(sandbox, name, variables[name])
        for payload_value in result.values():
            if isinstance(payload_value, dict):
                for key in ("userErrors", "mediaUserErrors"):
                    assert payload_value.get(key, []) == [], (name, payload_value)
        if name == "ProductReorderMedia":
            job = result["productReorderMedia"]["job"]["id"]
        if name == "WebhookSubscriptionCreate":
            subscription = result["webhookSubscriptionCreate"]["webhookSubscription"]["id"]
        if name == "WebhookSubscriptions":
            assert [n["id"] for n in result["webhookSubscriptions"]["nodes"]] == [subscription]
        if name == "BulkProductsRun":
            bulk = result["bulkOperationRunQuery"]["bulkOperation"]["id"]
    assert set(variables) == set(all_operations())
