"""ShopifyClient against exact fault sequences, with `httpx.MockTransport` as the seam.

Every GraphQL request the client sends here is also checked against the real Admin schema
(document valid, variables coerce) by `ScriptedShopify`. A distinctive fake token must appear in
no log event and no exception text.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import structlog

from retouch.plugin.shopify.client import ShopifyClient, admin_api_url, products_search_query
from retouch.plugin.shopify.errors import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyResponseError,
    ShopifyUnavailable,
    ShopifyUserError,
)
from retouch.plugin.shopify.models import Media, parse_marker
from retouch.plugin.shopify.operations import operation
from shopify_testkit import (
    GRAPHQL_URL,
    SHOP_URL,
    TOKEN,
    FakeTime,
    ScriptedShopify,
    media_node,
    ok,
    product_node,
    throttled,
)

SHOP_DATA = {"shop": {"name": "Retouch Test", "myshopifyDomain": "retouch-test.myshopify.com"}}


@pytest.fixture(autouse=True)
def logs():
    """Every test's log events; none may contain the token."""
    with structlog.testing.capture_logs() as captured:
        yield captured
    assert TOKEN not in repr(captured)


def run(script: ScriptedShopify, action, time: FakeTime | None = None, **options):
    time = time or FakeTime()

    async def main():
        async with ShopifyClient(
            SHOP_URL, TOKEN, transport=httpx.MockTransport(script), clock=time.clock, sleep=time.sleep, **options
        ) as client:
            return await action(client)

    return asyncio.run(main())


def raised(script: ScriptedShopify, action, expected: type[ShopifyError], time: FakeTime | None = None, **options):
    with pytest.raises(expected) as info:
        run(script, action, time, **options)
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert TOKEN not in text
    return info.value


def events(logs, name):
    return [entry for entry in logs if entry["event"] == name]


# ---------------------------------------------------------------- URL and request shape


def test_graphql_url_follows_shopify_conventions():
    expected = "https://my-store.myshopify.com/admin/api/2026-07/graphql.json"
    assert admin_api_url("my-store", "2026-07") == expected
    assert admin_api_url("https://my-store.myshopify.com/", "2026-07") == expected
    assert admin_api_url("my-store.myshopify.com", "2026-07") == expected
    assert (
        admin_api_url("https://x.myshopify.com", "unstable")
        == "https://x.myshopify.com/admin/api/unstable/graphql.json"
    )


def test_loopback_sandbox_keeps_http_and_its_port():
    assert admin_api_url("http://127.0.0.1:8123", "2026-07") == "http://127.0.0.1:8123/admin/api/2026-07/graphql.json"
    assert admin_api_url("http://localhost:9000/", "2026-01") == "http://localhost:9000/admin/api/2026-01/graphql.json"


def test_bad_version_or_shop_is_a_value_error():
    with pytest.raises(ValueError):
        admin_api_url("my-store", "2026-7")
    with pytest.raises(ValueError):
        admin_api_url("", "2026-07")
    with pytest.raises(ValueError, match="myshopify.com"):
        admin_api_url("https://www.my-store-custom.com", "2026-07")
    with pytest.raises(ValueError):
        ShopifyClient(SHOP_URL, "")


def test_execute_sends_the_document_with_the_token_and_returns_data():
    script = ScriptedShopify([ok(SHOP_DATA)])
    data = run(script, lambda c: c.execute("Shop"))
    assert data == SHOP_DATA
    (request,) = script.requests
    assert str(request.url) == GRAPHQL_URL
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    body = json.loads(request.content)
    assert body == {"query": operation("Shop"), "variables": {}, "operationName": "Shop"}


def test_client_repr_hides_the_token():
    client = ShopifyClient(SHOP_URL, TOKEN)
    assert TOKEN not in repr(client)
    assert client.graphql_url == GRAPHQL_URL
    asyncio.run(client.aclose())


def test_shop_info():
    info = run(ScriptedShopify([ok(SHOP_DATA)]), lambda c: c.shop())
    assert (info.name, info.domain) == ("Retouch Test", "retouch-test.myshopify.com")


# ---------------------------------------------------------------- rate limits and retries


def test_throttled_waits_exactly_the_deficit_then_retries(logs):
    time = FakeTime()
    script = ScriptedShopify([throttled(requested=500, available=200, rate=100), ok(SHOP_DATA)])
    client_stats = {}

    async def action(client):
        result = await client.execute("Shop")
        client_stats["stats"] = client.stats
        return result

    assert run(script, action, time) == SHOP_DATA
    assert len(script.requests) == 2
    assert time.sleeps == [pytest.approx(3.0)]  # (500 - 200) / 100
    stats = client_stats["stats"]
    assert stats.throttled == 1
    assert stats.retries["throttled"] == 1
    (retry,) = events(logs, "retry")
    assert retry["operation"] == "Shop" and retry["reason"] == "throttled" and retry["wait"] == pytest.approx(3.0)
    assert retry["attempt"] == 1


def test_client_paces_itself_before_sending(logs):
    time = FakeTime()
    # The first answer leaves 5 points; the operation asked for 50, so the next call waits 0.45 s.
    script = ScriptedShopify([ok(SHOP_DATA, requested=50, available=5), ok(SHOP_DATA, requested=50, available=1950)])

    async def action(client):
        await client.execute("Shop")
        await client.execute("Shop")
        return client.stats

    stats = run(script, action, time)
    assert time.sleeps == [pytest.approx(0.45)]
    assert stats.paced_seconds == pytest.approx(0.45)
    assert stats.points_spent == 100
    assert stats.requests == 2
    (pace,) = events(logs, "pace")
    assert pace["operation"] == "Shop" and pace["wait"] == pytest.approx(0.45)


def test_429_honours_retry_after():
    time = FakeTime()
    script = ScriptedShopify([httpx.Response(429, headers={"Retry-After": "2.5"}), ok(SHOP_DATA)])
    assert run(script, lambda c: c.execute("Shop"), time) == SHOP_DATA
    assert time.sleeps == [2.5]


def test_429_without_retry_after_backs_off_with_jitter():
    time = FakeTime()
    script = ScriptedShopify([httpx.Response(429), httpx.Response(429), ok(SHOP_DATA)])
    assert run(script, lambda c: c.execute("Shop"), time) == SHOP_DATA
    first, second = time.sleeps
    assert 0 <= first <= 0.5
    assert 0 <= second <= 1.0


def test_503_then_success_for_a_query():
    time = FakeTime()
    script = ScriptedShopify([httpx.Response(503), ok(SHOP_DATA)])
    assert run(script, lambda c: c.execute("Shop"), time) == SHOP_DATA
    assert len(script.requests) == 2 and len(time.sleeps) == 1


def test_timeout_then_success_for_a_query(logs):
    script = ScriptedShopify([httpx.ReadTimeout("read timed out"), ok(SHOP_DATA)])
    assert run(script, lambda c: c.execute("Shop")) == SHOP_DATA
    assert len(script.requests) == 2
    (retry,) = events(logs, "retry")
    assert retry["reason"].startswith("timeout")


def test_retries_are_bounded_by_max_attempts():
    time = FakeTime()
    script = ScriptedShopify([httpx.Response(503)] * 3)
    error = raised(script, lambda c: c.execute("Shop"), ShopifyUnavailable, time, max_attempts=3)
    assert len(script.requests) == 3
    assert len(time.sleeps) == 2
    assert error.ambiguous is False
    assert "http_503" in error.reason


def _add_media_variables():
    return {
        "product": {"id": "gid://shopify/Product/1"},
        "media": [{"originalSource": "https://cdn.example/result.jpg", "alt": None, "mediaContentType": "IMAGE"}],
        "mediaFirst": 10,
    }


@pytest.mark.parametrize(
    "fault",
    [httpx.ReadTimeout("read timed out"), httpx.Response(502), httpx.RemoteProtocolError("server disconnected")],
)
def test_product_add_media_is_not_repeated_when_it_may_have_run(fault):
    script = ScriptedShopify([fault])
    error = raised(script, lambda c: c.execute("ProductAddMedia", _add_media_variables()), ShopifyUnavailable)
    assert error.ambiguous is True
    assert error.operation == "ProductAddMedia"
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "fault", [throttled(requested=20, available=0), httpx.Response(429), httpx.ConnectError("connection refused")]
)
def test_product_add_media_is_retried_when_it_certainly_did_not_run(fault):
    done = {"productUpdate": {"product": {"id": "gid://shopify/Product/1", "media": {"nodes": []}}, "userErrors": []}}
    script = ScriptedShopify([fault, ok(done)])
    assert run(script, lambda c: c.execute("ProductAddMedia", _add_media_variables())) == done
    assert len(script.requests) == 2


def test_idempotent_mutation_is_retried_after_a_timeout():
    done = {
        "fileUpdate": {
            "files": [{"id": "gid://shopify/MediaImage/9", "fileStatus": "UPLOADED", "alt": None}],
            "userErrors": [],
        }
    }
    script = ScriptedShopify([httpx.WriteTimeout("write timed out"), ok(done)])
    variables = {"files": [{"id": "gid://shopify/MediaImage/9", "originalSource": "https://cdn.example/a.jpg"}]}
    assert run(script, lambda c: c.execute("FileUpdate", variables)) == done


# ---------------------------------------------------------------- errors


def test_401_is_an_auth_error_without_the_token_and_without_retry():
    # Even if a server echoed the token back, the message quotes it redacted.
    body = {"errors": f"[API] Invalid API key or access token (unrecognized login or wrong password) {TOKEN}"}
    script = ScriptedShopify([httpx.Response(401, json=body)])
    error = raised(script, lambda c: c.execute("Shop"), ShopifyAuthError)
    assert error.status == 401
    assert "Invalid API key" in str(error)
    assert len(script.requests) == 1


def test_403_is_an_auth_error():
    script = ScriptedShopify(
        [httpx.Response(403, json={"errors": "This action requires merchant approval for write_products scope."})]
    )
    error = raised(script, lambda c: c.execute("Shop"), ShopifyAuthError)
    assert error.status == 403 and "write_products" in str(error)


def test_access_denied_graphql_error_is_an_auth_error():
    body = {
        "data": None,
        "errors": [
            {
                "message": "Access denied for products field. Required access: `read_products`.",
                "extensions": {"code": "ACCESS_DENIED"},
            }
        ],
    }
    error = raised(ScriptedShopify([httpx.Response(200, json=body)]), lambda c: c.execute("Shop"), ShopifyAuthError)
    assert "read_products" in str(error)


def test_graphql_errors_are_response_errors_with_the_messages():
    body = {
        "errors": [{"message": "Field 'nope' doesn't exist on type 'Shop'", "extensions": {"code": "undefinedField"}}]
    }
    script = ScriptedShopify([httpx.Response(200, json=body)])
    error = raised(script, lambda c: c.execute("Shop"), ShopifyResponseError)
    assert error.messages == ["Field 'nope' doesn't exist on type 'Shop'"]
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"extensions": {}}),
        httpx.Response(404, text="Not Found"),
    ],
)
def test_malformed_answers_are_response_errors(response):
    raised(ScriptedShopify([response]), lambda c: c.execute("Shop"), ShopifyResponseError)


def test_user_errors_keep_codes_and_fields():
    # The shape Shopify returns for a stale compareDigest (captures/…/metafields-set-stale-digest-parity.json).
    body = {
        "metafieldsSet": {
            "metafields": [],
            "userErrors": [
                {
                    "field": ["metafields", "0"],
                    "message": "The resource has been updated since it was loaded. Try again with an updated `compareDigest` value.",
                    "code": "STALE_OBJECT",
                }
            ],
        }
    }
    script = ScriptedShopify([ok(body)])
    error = raised(
        script,
        lambda c: c.set_marker("gid://shopify/Product/1", ["gid://shopify/MediaImage/2"], "abc"),
        ShopifyUserError,
    )
    assert error.operation == "MetafieldsSet"
    assert error.codes == ["STALE_OBJECT"]
    assert error.errors[0].field == ["metafields", "0"]
    assert "STALE_OBJECT at metafields.0" in str(error)


def test_media_user_errors_are_user_errors():
    body = {
        "productReorderMedia": {
            "job": None,
            "mediaUserErrors": [
                {"field": ["moves", "0", "id"], "message": "Media does not exist", "code": "MEDIA_DOES_NOT_EXIST"}
            ],
        }
    }
    error = raised(
        ScriptedShopify([ok(body)]),
        lambda c: c.move_media("gid://shopify/Product/1", "gid://shopify/MediaImage/404", 1),
        ShopifyUserError,
    )
    assert error.codes == ["MEDIA_DOES_NOT_EXIST"] and error.errors[0].field == ["moves", "0", "id"]


def test_user_errors_without_code_keep_none():
    # stagedUploadsCreate's userErrors have no `code` field.
    body = {
        "stagedUploadsCreate": {
            "stagedTargets": [],
            "userErrors": [{"field": ["input", "0", "mimeType"], "message": "Invalid mime type"}],
        }
    }
    error = raised(
        ScriptedShopify([ok(body)]), lambda c: c.staged_upload("a.png", "image/nope", b"x"), ShopifyUserError
    )
    assert error.codes == [None]


# ---------------------------------------------------------------- reads and pagination


def _page(request: httpx.Request) -> dict:
    return json.loads(request.content)


def test_products_and_media_are_paged_to_the_end():
    cdn = "https://cdn.shopify.com/s/files/1/0001/files"
    page_one = ok(
        {
            "products": {
                "pageInfo": {"hasNextPage": True, "endCursor": "P1"},
                "nodes": [
                    product_node(
                        11, [media_node("gid://shopify/MediaImage/111", url=f"{cdn}/a.jpg?v=1")], media_next="M1"
                    ),
                    product_node(12, [media_node("gid://shopify/MediaImage/121", url=f"{cdn}/b.png?v=2")]),
                ],
            }
        }
    )
    media_two = ok(
        {
            "product": {
                "media": {
                    "pageInfo": {"hasNextPage": True, "endCursor": "M2"},
                    "nodes": [media_node("gid://shopify/MediaImage/112", status="PROCESSING")],
                }
            }
        }
    )
    media_three = ok(
        {
            "product": {
                "media": {
                    "pageInfo": {"hasNextPage": False, "endCursor": "M3"},
                    "nodes": [media_node("gid://shopify/MediaImage/113")],
                }
            }
        }
    )
    page_two = ok(
        {"products": {"pageInfo": {"hasNextPage": False, "endCursor": "P2"}, "nodes": [product_node(13, [])]}}
    )
    script = ScriptedShopify([page_one, media_two, media_three, page_two])
    since = datetime(2026, 11, 20, 10, 0, 0, 500_000, tzinfo=timezone.utc)

    async def action(client):
        return [
            p
            async for p in client.iter_products(
                updated_since=since, search="tag:summer", page_size=2, media_page_size=1
            )
        ]

    products = run(script, action)
    assert [p.legacy_id for p in products] == [11, 12, 13]
    assert [m.id for m in products[0].media] == [
        "gid://shopify/MediaImage/111",
        "gid://shopify/MediaImage/112",
        "gid://shopify/MediaImage/113",
    ]
    assert products[0].media[1].status == "PROCESSING" and products[0].media[1].url is None
    assert products[2].media == ()

    assert script.operation_names() == ["ProductsPage", "ProductMediaPage", "ProductMediaPage", "ProductsPage"]
    bodies = script.graphql_bodies()
    assert bodies[0]["variables"] == {
        "first": 2,
        "after": None,
        "mediaFirst": 1,
        "query": "updated_at:>='2026-11-20T10:00:00Z' AND (tag:summer)",
    }
    assert bodies[1]["variables"] == {"id": "gid://shopify/Product/11", "first": 1, "after": "M1"}
    assert bodies[2]["variables"]["after"] == "M2"
    assert bodies[3]["variables"]["after"] == "P1"


def test_a_repeated_cursor_is_an_error_not_a_loop():
    page = ok({"products": {"pageInfo": {"hasNextPage": True, "endCursor": "SAME"}, "nodes": []}})
    script = ScriptedShopify([page, page])

    async def action(client):
        return [p async for p in client.iter_products()]

    raised(script, action, ShopifyResponseError)
    assert len(script.requests) == 2


def test_products_search_query():
    moment = datetime(2026, 11, 20, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert products_search_query(None, None) is None
    assert products_search_query(None, "tag:a OR tag:b") == "tag:a OR tag:b"
    assert products_search_query(moment, None) == "updated_at:>='2026-11-20T10:00:00Z'"
    assert products_search_query(datetime(2026, 11, 20, 10, 0), "x") == "updated_at:>='2026-11-20T10:00:00Z' AND (x)"


def test_get_product_reads_all_media_pages_and_parses_the_marker():
    marker = {"value": json.dumps({"media_ids": ["gid://shopify/MediaImage/2"]}), "compareDigest": "d1"}
    first = ok({"product": product_node(7, [media_node("gid://shopify/MediaImage/1")], media_next="C1", marker=marker)})
    rest = ok(
        {
            "product": {
                "media": {
                    "pageInfo": {"hasNextPage": False, "endCursor": "C2"},
                    "nodes": [media_node("gid://shopify/MediaImage/2")],
                }
            }
        }
    )
    product = run(ScriptedShopify([first, rest]), lambda c: c.get_product("gid://shopify/Product/7"))
    assert product.id == "gid://shopify/Product/7" and product.title == "Product 7" and product.tags == ("summer",)
    assert product.updated_at == datetime(2026, 7, 19, 15, 50, 20, tzinfo=timezone.utc)
    assert [m.id for m in product.media] == ["gid://shopify/MediaImage/1", "gid://shopify/MediaImage/2"]
    assert product.marker_media_ids == {"gid://shopify/MediaImage/2"}
    assert product.marker_digest == "d1"


def test_get_product_of_a_deleted_product_is_none():
    assert run(ScriptedShopify([ok({"product": None})]), lambda c: c.get_product("gid://shopify/Product/404")) is None


def test_get_media():
    node = {
        "__typename": "MediaImage",
        **media_node("gid://shopify/MediaImage/5", url="https://cdn.shopify.com/x/photo%20one.JPG?v=3"),
    }
    node["mediaErrors"] = [{"code": "IMAGE_PROCESSING_FAILURE", "message": "could not process", "details": None}]
    media = run(ScriptedShopify([ok({"node": node})]), lambda c: c.get_media("gid://shopify/MediaImage/5"))
    assert media.status == "READY" and (media.width, media.height) == (600, 400)
    assert media.filename == "photo one.JPG" and media.extension == ".jpg"
    assert media.errors[0].code == "IMAGE_PROCESSING_FAILURE"
    assert media.updated_at == datetime(2026, 7, 19, 15, 50, 20, tzinfo=timezone.utc)


def test_get_media_is_none_when_gone_or_not_a_media():
    assert run(ScriptedShopify([ok({"node": None})]), lambda c: c.get_media("gid://shopify/MediaImage/5")) is None
    not_media = ok({"node": {"__typename": "Product"}})
    assert run(ScriptedShopify([not_media]), lambda c: c.get_media("gid://shopify/Product/5")) is None


def test_unexpected_product_shape_is_a_response_error():
    broken = product_node(7, [])
    del broken["legacyResourceId"]
    raised(
        ScriptedShopify([ok({"product": broken})]),
        lambda c: c.get_product("gid://shopify/Product/7"),
        ShopifyResponseError,
    )


# ---------------------------------------------------------------- models


def test_media_filename_falls_back_to_the_original_source():
    media = Media(
        id="m",
        content_type="IMAGE",
        status="PROCESSING",
        alt=None,
        mime_type=None,
        url=None,
        original_url="https://uploads.example/tmp/1/products/uuid/result.webp?sig=abc",
        width=None,
        height=None,
        errors=(),
        updated_at=None,
    )
    assert media.filename == "result.webp" and media.extension == ".webp"
    bare = Media(
        id="m",
        content_type="IMAGE",
        status="UPLOADED",
        alt=None,
        mime_type=None,
        url=None,
        original_url=None,
        width=None,
        height=None,
        errors=(),
        updated_at=None,
    )
    assert bare.filename is None and bare.extension is None


def test_marker_parsing_is_defensive(logs):
    assert parse_marker(None) == frozenset()
    assert parse_marker('{"media_ids": ["gid://shopify/MediaImage/1", "gid://shopify/MediaImage/1"]}') == {
        "gid://shopify/MediaImage/1"
    }
    assert parse_marker("not json", product_id="gid://shopify/Product/1") == frozenset()
    assert parse_marker('{"media": []}') == frozenset()
    assert parse_marker('["gid://shopify/MediaImage/1"]') == frozenset()
    assert parse_marker('{"media_ids": ["gid://shopify/MediaImage/1", 7]}') == {"gid://shopify/MediaImage/1"}
    warnings = events(logs, "marker_invalid")
    assert len(warnings) == 4
    assert warnings[0]["product_id"] == "gid://shopify/Product/1" and warnings[0]["log_level"] == "warning"


# ---------------------------------------------------------------- writes


def _staged_target(url: str) -> httpx.Response:
    return ok(
        {
            "stagedUploadsCreate": {
                "stagedTargets": [
                    {
                        "url": url,
                        "resourceUrl": "https://uploads.example/tmp/1/products/uuid/result.jpg",
                        "parameters": [
                            {"name": "Content-Type", "value": "image/jpeg"},
                            {"name": "success_action_status", "value": "201"},
                            {"name": "key", "value": "tmp/1/products/uuid/result.jpg"},
                            {"name": "x-goog-signature", "value": "sig123"},
                        ],
                    }
                ],
                "userErrors": [],
            }
        }
    )


def test_staged_upload_posts_the_form_without_the_token():
    uploaded = {}

    def storage(request: httpx.Request) -> httpx.Response:
        uploaded["request"] = request
        uploaded["body"] = request.read()
        return httpx.Response(201)

    script = ScriptedShopify([_staged_target("https://uploads.example/"), storage])
    resource = run(script, lambda c: c.staged_upload("result.jpg", "image/jpeg", b"JPEGBYTES"))
    assert resource == "https://uploads.example/tmp/1/products/uuid/result.jpg"
    staged = script.graphql_bodies()[0]["variables"]["input"][0]
    assert staged == {
        "resource": "IMAGE",
        "filename": "result.jpg",
        "mimeType": "image/jpeg",
        "httpMethod": "POST",
        "fileSize": "9",
    }
    request, body = uploaded["request"], uploaded["body"]
    assert request.method == "POST" and str(request.url) == "https://uploads.example/"
    assert "X-Shopify-Access-Token" not in request.headers
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    names = [
        body.find(f'name="{n}"'.encode())
        for n in ("Content-Type", "success_action_status", "key", "x-goog-signature", "file")
    ]
    assert -1 not in names and names == sorted(names)  # parameters in order, then the file
    assert b"JPEGBYTES" in body


def test_staged_upload_with_put_sends_raw_bytes_and_parameters_as_headers():
    seen = {}

    def storage(request: httpx.Request) -> httpx.Response:
        seen["request"] = request
        return httpx.Response(200)

    script = ScriptedShopify([_staged_target("https://uploads.example/put?signed=1"), storage])
    run(script, lambda c: c.staged_upload("result.jpg", "image/jpeg", b"RAW", http_method="PUT"))
    request = seen["request"]
    assert request.method == "PUT" and request.read() == b"RAW"
    assert request.headers["x-goog-signature"] == "sig123"
    assert "X-Shopify-Access-Token" not in request.headers


def test_staged_upload_retries_a_failing_storage_then_gives_up_on_a_refusal():
    script = ScriptedShopify([_staged_target("https://uploads.example/"), httpx.Response(503), httpx.Response(201)])
    run(script, lambda c: c.staged_upload("result.jpg", "image/jpeg", b"x"))
    assert len(script.requests) == 3
    refused = ScriptedShopify([_staged_target("https://uploads.example/"), httpx.Response(403)])
    error = raised(refused, lambda c: c.staged_upload("result.jpg", "image/jpeg", b"x"), ShopifyResponseError)
    assert error.status == 403


def test_staged_uploads_refuse_an_answer_with_fewer_targets_than_files():
    """Two files, one target: which file it was for is unknown, so nothing is uploaded."""
    script = ScriptedShopify([_staged_target("https://uploads.example/")])
    files = [("a.jpg", "image/jpeg", b"A"), ("b.jpg", "image/jpeg", b"B")]
    error = raised(script, lambda c: c.staged_uploads(files), ShopifyResponseError)
    assert "1 staged targets for 2 files" in str(error)
    assert len(script.requests) == 1  # the create only: no upload


def test_replace_media_sources_sends_at_most_250_files_per_file_update():
    done = ok({"fileUpdate": {"files": [], "userErrors": []}})
    script = ScriptedShopify([done, done])
    sources = [(f"gid://shopify/MediaImage/{n}", f"https://uploads.example/{n}.jpg") for n in range(300)]
    run(script, lambda c: c.replace_media_sources(sources))
    sent = [b["variables"]["files"] for b in script.graphql_bodies()]
    assert [len(files) for files in sent] == [250, 50]
    assert [(f["id"], f["originalSource"]) for files in sent for f in files] == sources


def test_replace_media_sources_answers_each_row_instead_of_raising_for_the_call():
    """Shopify applied rows 0 and 2 and names row 1 (NOTES.md: fileUpdate is not all-or-nothing)."""
    ids = [f"gid://shopify/MediaImage/{n}" for n in (1, 2, 3)]
    answer = ok(
        {
            "fileUpdate": {
                "files": [
                    {"id": ids[0], "fileStatus": "UPLOADED", "alt": ""},
                    {"id": ids[2], "fileStatus": "UPLOADED", "alt": ""},
                ],
                "userErrors": [
                    {
                        "field": ["files", "1", "originalSource"],
                        "message": "Image URL is invalid",
                        "code": "INVALID_IMAGE_SOURCE_URL",
                    }
                ],
            }
        }
    )
    script = ScriptedShopify([answer])
    rows = run(
        script, lambda c: c.replace_media_sources([(i, f"https://uploads.example/{n}.jpg") for n, i in enumerate(ids)])
    )
    assert [(row.media_id, row.status) for row in rows] == [
        (ids[0], "written"),
        (ids[1], "refused"),
        (ids[2], "written"),
    ]
    assert [e.code for e in rows[1].errors] == ["INVALID_IMAGE_SOURCE_URL"]
    assert len(script.requests) == 1


def test_alt_text_goes_out_cut_to_512_characters():
    done = ok(
        {
            "fileUpdate": {
                "files": [{"id": "gid://shopify/MediaImage/9", "fileStatus": "UPLOADED", "alt": "a"}],
                "userErrors": [],
            }
        }
    )
    script = ScriptedShopify([done])
    run(
        script,
        lambda c: c.replace_media_source("gid://shopify/MediaImage/9", "https://uploads.example/r.jpg", alt="a" * 513),
    )
    assert script.graphql_bodies()[0]["variables"]["files"][0]["alt"] == "a" * 512


def test_replace_media_source_sends_file_update():
    done = ok(
        {
            "fileUpdate": {
                "files": [{"id": "gid://shopify/MediaImage/9", "fileStatus": "UPLOADED", "alt": "a"}],
                "userErrors": [],
            }
        }
    )
    script = ScriptedShopify([done, done])

    async def action(client):
        await client.replace_media_source("gid://shopify/MediaImage/9", "https://uploads.example/r.jpg")
        await client.replace_media_source("gid://shopify/MediaImage/9", "https://uploads.example/r.jpg", alt="New")

    run(script, action)
    first, second = (b["variables"]["files"][0] for b in script.graphql_bodies())
    assert first == {"id": "gid://shopify/MediaImage/9", "originalSource": "https://uploads.example/r.jpg"}
    assert second["alt"] == "New"


def test_add_media_returns_the_id_that_was_not_there_before():
    before = ok({"product": product_node(1, [media_node("gid://shopify/MediaImage/10")])})
    after = ok(
        {
            "productUpdate": {
                "product": {
                    "id": "gid://shopify/Product/1",
                    "media": {
                        "nodes": [
                            {"id": "gid://shopify/MediaImage/10", "status": "READY", "alt": None},
                            {"id": "gid://shopify/MediaImage/11", "status": "UPLOADED", "alt": "Retouched"},
                        ]
                    },
                },
                "userErrors": [],
            }
        }
    )
    script = ScriptedShopify([before, after])
    new_id = run(script, lambda c: c.add_media("gid://shopify/Product/1", "https://uploads.example/r.jpg", "Retouched"))
    assert new_id == "gid://shopify/MediaImage/11"
    assert script.operation_names() == ["Product", "ProductAddMedia"]
    variables = script.graphql_bodies()[1]["variables"]
    assert variables["media"] == [
        {"originalSource": "https://uploads.example/r.jpg", "alt": "Retouched", "mediaContentType": "IMAGE"}
    ]
    assert variables["mediaFirst"] >= 2


def test_move_media_polls_the_job_until_done():
    time = FakeTime()
    reorder = ok(
        {"productReorderMedia": {"job": {"id": "gid://shopify/Job/abc", "done": False}, "mediaUserErrors": []}}
    )
    pending = ok({"job": {"id": "gid://shopify/Job/abc", "done": False}})
    finished = ok({"job": {"id": "gid://shopify/Job/abc", "done": True}})
    script = ScriptedShopify([reorder, pending, finished])
    run(script, lambda c: c.move_media("gid://shopify/Product/1", "gid://shopify/MediaImage/11", 1), time)
    assert script.operation_names() == ["ProductReorderMedia", "Job", "Job"]
    assert script.graphql_bodies()[0]["variables"]["moves"] == [
        {"id": "gid://shopify/MediaImage/11", "newPosition": "1"}
    ]
    assert time.sleeps == [pytest.approx(0.1), pytest.approx(0.2)]


def test_move_media_gives_up_after_its_timeout():
    time = FakeTime()
    reorder = ok(
        {"productReorderMedia": {"job": {"id": "gid://shopify/Job/abc", "done": False}, "mediaUserErrors": []}}
    )
    pending = ok({"job": {"id": "gid://shopify/Job/abc", "done": False}})
    script = ScriptedShopify([reorder] + [pending] * 10)
    raised(
        script,
        lambda c: c.move_media("gid://shopify/Product/1", "gid://shopify/MediaImage/11", 1, timeout=2),
        ShopifyUnavailable,
        time,
    )
    assert 2 <= sum(time.sleeps) < 4


def test_set_marker_round_trip_variables():
    done = ok(
        {
            "metafieldsSet": {
                "metafields": [
                    {
                        "id": "gid://shopify/Metafield/1",
                        "namespace": "app--1--retouch",
                        "key": "output_media",
                        "value": "{}",
                        "compareDigest": "d2",
                    }
                ],
                "userErrors": [],
            }
        }
    )
    script = ScriptedShopify([done])
    digest = run(
        script,
        lambda c: c.set_marker(
            "gid://shopify/Product/1", ["gid://shopify/MediaImage/3", "gid://shopify/MediaImage/2"], None
        ),
    )
    assert digest == "d2"
    (metafield,) = script.graphql_bodies()[0]["variables"]["metafields"]
    assert metafield["namespace"] == "$app:retouch" and metafield["key"] == "output_media"
    assert metafield["type"] == "json"
    assert "compareDigest" in metafield and metafield["compareDigest"] is None  # "must not exist yet"
    assert json.loads(metafield["value"]) == {"media_ids": ["gid://shopify/MediaImage/2", "gid://shopify/MediaImage/3"]}
    assert parse_marker(metafield["value"]) == {"gid://shopify/MediaImage/2", "gid://shopify/MediaImage/3"}


def test_delete_media():
    done = ok({"fileDelete": {"deletedFileIds": ["gid://shopify/MediaImage/3"], "userErrors": []}})
    script = ScriptedShopify([done])

    async def action(client):
        await client.delete_media([])  # nothing to do: no request
        await client.delete_media(["gid://shopify/MediaImage/3"])

    run(script, action)
    assert [b["variables"] for b in script.graphql_bodies()] == [{"fileIds": ["gid://shopify/MediaImage/3"]}]


# ---------------------------------------------------------------- downloads


def test_download_sends_no_token_and_retries_server_errors():
    def image(request: httpx.Request) -> httpx.Response:
        assert "X-Shopify-Access-Token" not in request.headers
        return httpx.Response(200, content=b"\xff\xd8IMAGE", headers={"Content-Type": "image/jpeg; charset=binary"})

    script = ScriptedShopify([httpx.Response(503), httpx.ConnectTimeout("slow"), image])
    data, content_type = run(script, lambda c: c.download("https://cdn.shopify.com/s/files/a.jpg?v=1"))
    assert (data, content_type) == (b"\xff\xd8IMAGE", "image/jpeg")
    assert len(script.requests) == 3


def test_download_refuses_bodies_over_the_limit():
    big = httpx.Response(200, content=b"x" * 101, headers={"Content-Type": "image/png"})
    raised(
        ScriptedShopify([big]), lambda c: c.download("https://cdn.example/a.png", max_bytes=100), ShopifyResponseError
    )


def test_download_of_a_missing_file_is_not_retried():
    script = ScriptedShopify([httpx.Response(404)])
    error = raised(script, lambda c: c.download("https://cdn.example/gone.png"), ShopifyResponseError)
    assert error.status == 404 and len(script.requests) == 1


def test_download_of_an_unusable_url_fails_at_once():
    script = ScriptedShopify([])
    raised(script, lambda c: c.download("ftp://files.example/a.png"), ShopifyResponseError)
    assert script.requests == []
