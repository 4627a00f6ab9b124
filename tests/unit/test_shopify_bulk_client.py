"""ShopifyClient's bulk operations against scripted answers (each request checked against the real
schema): run, poll, cancel, productsCount, and the JSONL stream — any order, cut off, expired."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import structlog

from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.errors import ShopifyResponseError, ShopifyUserError
from retouch.plugin.shopify.operations import bulk_products_query
from shopify_testkit import SHOP_URL, TOKEN, FakeTime, ScriptedShopify, bulk_node, ok

RESULT_URL = "https://storage.googleapis.com/bulk/result.jsonl?Expires=1&Signature=abc"


@pytest.fixture(autouse=True)
def logs():
    with structlog.testing.capture_logs() as captured:
        yield captured
    assert TOKEN not in repr(captured)


def run(script: ScriptedShopify, action):
    time = FakeTime()

    async def main():
        async with ShopifyClient(
            SHOP_URL, TOKEN, transport=httpx.MockTransport(script), clock=time.clock, sleep=time.sleep
        ) as client:
            return await action(client)

    return asyncio.run(main())


def lines(*objects: dict) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def test_start_sends_the_derived_query_ungrouped_and_parses_the_operation():
    script = ScriptedShopify([ok({"bulkOperationRunQuery": {"bulkOperation": bulk_node(), "userErrors": []}})])
    started = run(script, lambda c: c.start_bulk_products())
    assert started.status == "CREATED" and started.id.endswith("/7933223797042") and started.object_count == 0
    (body,) = script.graphql_bodies()
    assert body["variables"] == {"query": bulk_products_query()}
    assert "groupObjects: false" in body["query"]


def test_operation_in_progress_is_a_user_error_with_its_code():
    # The captured sixth run: no operation, code OPERATION_IN_PROGRESS, field null.
    refused = {
        "bulkOperationRunQuery": {
            "bulkOperation": None,
            "userErrors": [
                {
                    "field": None,
                    "code": "OPERATION_IN_PROGRESS",
                    "message": "A bulk query operation for this app and shop is already in progress: gid://shopify/BulkOperation/1.",
                }
            ],
        }
    }
    script = ScriptedShopify([ok(refused)])
    with pytest.raises(ShopifyUserError) as info:
        run(script, lambda c: c.start_bulk_products())
    assert info.value.codes == ["OPERATION_IN_PROGRESS"]
    assert len(script.requests) == 1  # a refused start is not retried blindly


def test_poll_cancel_and_count():
    done = bulk_node(status="COMPLETED", url=RESULT_URL, objects=1456)
    script = ScriptedShopify(
        [
            ok({"bulkOperation": done}),
            ok({"bulkOperation": None}),
            ok({"bulkOperationCancel": {"bulkOperation": bulk_node(status="CANCELING"), "userErrors": []}}),
            ok({"productsCount": {"count": 1456, "precision": "EXACT"}}),
            ok({"productsCount": {"count": 2000, "precision": "AT_LEAST"}}),
        ]
    )

    async def action(client):
        return (
            await client.bulk_operation("gid://shopify/BulkOperation/1"),
            await client.bulk_operation("gid://shopify/BulkOperation/2"),
            await client.cancel_bulk_operation("gid://shopify/BulkOperation/1"),
            await client.products_count(),
            await client.products_count(limit=2000),
        )

    polled, gone, cancelled, exact, capped = run(script, action)
    assert polled.terminal and polled.url == RESULT_URL and polled.object_count == 1456
    assert gone is None
    assert cancelled.status == "CANCELING" and not cancelled.terminal
    assert exact == (1456, True) and capped == (2000, False)


def test_jsonl_streams_objects_without_the_token_whatever_the_order():
    child = {"id": "gid://shopify/MediaImage/2", "__parentId": "gid://shopify/Product/1"}
    parent = {"id": "gid://shopify/Product/1", "title": "Mug"}
    body = lines(child, parent)
    script = ScriptedShopify([httpx.Response(200, content=body)])

    async def action(client):
        return [o async for o in client.iter_jsonl(RESULT_URL)]

    assert run(script, action) == [child, parent]
    assert "X-Shopify-Access-Token" not in script.requests[0].headers


def test_a_cut_off_download_raises_after_the_good_lines():
    body = lines({"id": "a"}) + b'{"id": "b", "ti'  # last line broken off mid-object
    script = ScriptedShopify([httpx.Response(200, content=body)])
    got: list[dict] = []

    async def action(client):
        async for o in client.iter_jsonl(RESULT_URL):
            got.append(o)

    with pytest.raises(ShopifyResponseError, match="cut off") as info:
        run(script, action)
    assert info.value.operation == "bulk_download"
    assert got[0] == {"id": "a"}


def test_an_expired_result_url_says_so_by_its_status():
    script = ScriptedShopify([httpx.Response(403, content=b"<Error>ExpiredToken</Error>")])

    async def action(client):
        return [o async for o in client.iter_jsonl(RESULT_URL)]

    with pytest.raises(ShopifyResponseError) as info:
        run(script, action)
    assert info.value.status == 403
    assert "Signature" not in str(info.value)  # the signed query string is not repeated
