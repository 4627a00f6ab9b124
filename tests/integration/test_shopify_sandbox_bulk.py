"""Bulk query operations in the Shopify sandbox, over real HTTP on 127.0.0.1: the lifecycle on the
sandbox's clock, the JSONL result (joined by `__parentId` it is the catalog the ordinary API shows),
the "any order" option, the limit of 5 in progress, cancel, expiry, every bulk fault, cost, and
that the file is streamed (made batch by batch while it is read, never held whole).

Every test drives the sandbox's clock (`FakeClock`): no sleeps, no timed assertions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeClock
from retouch.plugin.shopify.operations import operation
from retouch.plugin.shopify.sandbox import ShopifySandbox, bulk_export
from retouch.plugin.shopify.sandbox.graphql_api import Context, sandbox_schema

CAPTURES = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "reference"
    / "shopify"
    / "captures"
    / "2026-04"
    / "bulk-operations"
)
TOKEN = "shpat_bulk_TESTSECRET_77aa"
T0 = 1_795_000_000.0
CREATED_S, PER_OBJECT_S, CANCEL_S, EXPIRY_S = 1.0, 0.5, 2.0, 1000.0
MAX_OBJECTS = 200  # no test makes more: `finish` waits this long, well within the expiry window

# What retouch's discovery selects (plugin/shopify/operations/_fragments.graphql), as a bulk query.
BULK_QUERY = """{
  products(query: "updated_at:>'2020-01-01T00:00:00Z'") {
    edges {
      node {
        id
        legacyResourceId
        title
        tags
        productType
        vendor
        status
        updatedAt
        marker: metafield(namespace: "$app:retouch", key: "output_media") { value compareDigest }
        media {
          edges {
            node {
              id
              mediaContentType
              status
              alt
              ... on MediaImage {
                mimeType
                updatedAt
                image { url width height }
                originalSource { url fileSize }
                mediaErrors { code details message }
              }
            }
          }
        }
      }
    }
  }
}"""

RUN = """mutation Run($query: String!, $group: Boolean!) {
  bulkOperationRunQuery(query: $query, groupObjects: $group) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}"""
POLL = """query Poll($id: ID!) {
  bulkOperation(id: $id) {
    id status errorCode objectCount rootObjectCount url partialDataUrl fileSize createdAt completedAt query type
  }
}"""
CANCEL = """mutation Cancel($id: ID!) {
  bulkOperationCancel(id: $id) { bulkOperation { id status url } userErrors { field message } }
}"""


def make_sandbox(clock: FakeClock, **options: Any) -> ShopifySandbox:
    return ShopifySandbox(
        access_token=TOKEN,
        processing_seconds=2.0,
        clock=clock,
        bulk_created_seconds=CREATED_S,
        bulk_seconds_per_object=PER_OBJECT_S,
        bulk_cancel_seconds=CANCEL_S,
        bulk_expiry_seconds=EXPIRY_S,
        **options,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[ShopifySandbox]:
    sandbox = make_sandbox(clock)
    server = sandbox.start()
    yield sandbox
    server.stop()


def gql(sandbox: ShopifySandbox, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{sandbox.shop_url}{sandbox.graphql_path}",
        json={"query": document, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": TOKEN},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def run(sandbox: ShopifySandbox, query: str = BULK_QUERY, group: bool = False) -> dict[str, Any]:
    return gql(sandbox, RUN, {"query": query, "group": group})["data"]["bulkOperationRunQuery"]


def start(sandbox: ShopifySandbox, query: str = BULK_QUERY, group: bool = False) -> str:
    payload = run(sandbox, query, group)
    assert payload["userErrors"] == [], payload
    return payload["bulkOperation"]["id"]


def poll(sandbox: ShopifySandbox, op_id: str) -> dict[str, Any]:
    return gql(sandbox, POLL, {"id": op_id})["data"]["bulkOperation"]


def finish(sandbox: ShopifySandbox, clock: FakeClock, op_id: str) -> dict[str, Any]:
    """Advance the clock past the end of the operation (at most MAX_OBJECTS x the per-object time)."""
    clock.advance(CREATED_S + PER_OBJECT_S * MAX_OBJECTS)
    return poll(sandbox, op_id)


def download(url: str) -> list[dict[str, Any]]:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jsonl"
    return [json.loads(line) for line in response.text.splitlines()]


def seed(sandbox: ShopifySandbox, products: int, images: int) -> list[dict[str, Any]]:
    return sandbox.seed(products=products, images_per_product=images, seed=7)


def joined(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Products by id, each with "media": its child lines (in file order), `__parentId` removed."""
    products = {line["id"]: {**line, "media": []} for line in lines if "__parentId" not in line}
    for line in lines:
        if "__parentId" in line:
            child = dict(line)
            products[child.pop("__parentId")]["media"].append(child)
    return products


# ------------------------------------------------------------------ lifecycle and content


def test_an_operation_is_created_then_runs_then_completes_on_the_sandbox_clock(
    sandbox: ShopifySandbox, clock: FakeClock
) -> None:
    seed(sandbox, products=3, images=2)  # 9 objects: RUNNING for 4.5 s after 1 s CREATED
    op_id = start(sandbox)
    first = poll(sandbox, op_id)
    assert (first["status"], first["objectCount"], first["url"], first["completedAt"], first["fileSize"]) == (
        "CREATED",
        "0",
        None,
        None,
        None,
    )
    assert first["type"] == "QUERY" and first["query"] == BULK_QUERY
    clock.advance(CREATED_S + PER_OBJECT_S * 9 / 3)
    running = poll(sandbox, op_id)
    assert running["status"] == "RUNNING" and running["url"] is None
    assert (running["objectCount"], running["rootObjectCount"]) == ("3", "1")  # a third done
    clock.advance(PER_OBJECT_S * 9)
    done = poll(sandbox, op_id)
    assert (done["status"], done["objectCount"], done["rootObjectCount"], done["errorCode"]) == (
        "COMPLETED",
        "9",
        "3",
        None,
    )
    assert done["completedAt"] is not None and done["partialDataUrl"] is None
    assert done["url"].startswith(sandbox.shop_url + "/_bulk/")
    body = httpx.get(done["url"]).content
    assert int(done["fileSize"]) == len(body) and body.count(b"\n") == 9
    node = gql(sandbox, "query N($id: ID!) { node(id: $id) { id ... on BulkOperation { status } } }", {"id": op_id})
    assert node["data"]["node"] == {"id": op_id, "status": "COMPLETED"}


def test_the_file_joined_by_parent_id_is_the_catalog_the_ordinary_api_shows(
    sandbox: ShopifySandbox, clock: FakeClock
) -> None:
    created = seed(sandbox, products=4, images=2)
    sandbox.add_product("No images yet")
    marked = created[1]["id"]
    assert (
        gql(
            sandbox,
            "mutation M($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) { userErrors { code } } }",
            {
                "m": [
                    {
                        "ownerId": marked,
                        "namespace": "$app:retouch",
                        "key": "output_media",
                        "type": "json",
                        "value": "[1]",
                    }
                ]
            },
        )["data"]["metafieldsSet"]["userErrors"]
        == []
    )
    op_id = start(sandbox)
    lines = download(finish(sandbox, clock, op_id)["url"])
    assert len(lines) == 5 + 8
    page = gql(sandbox, operation("ProductsPage"), {"first": 10, "mediaFirst": 10})["data"]["products"]["nodes"]
    assert all(p.pop("collections")["nodes"] == [] for p in page)  # in no collection: no collection lines
    expected = {p["id"]: {**p, "media": p["media"]["nodes"]} for p in page}
    assert joined(lines) == expected
    assert expected[marked]["marker"]["value"] == "[1]"


def test_the_query_filter_and_deleted_products(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    sandbox.add_product("Kept", tags=["summer"])
    sandbox.add_product("Other", tags=["winter"])
    gone = sandbox.add_product("Gone", tags=["summer"])
    query = BULK_QUERY.replace("updated_at:>'2020-01-01T00:00:00Z'", "tag:summer")
    op_id = start(sandbox, query)
    sandbox.delete_product(gone["legacy_id"])  # after the snapshot: counted, not in the file
    done = finish(sandbox, clock, op_id)
    assert done["rootObjectCount"] == "2"
    assert [line["title"] for line in download(done["url"])] == ["Kept"]


def test_children_come_in_any_order_with_the_option_and_grouped_without(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock, bulk_any_order_seed=3)
    server = sandbox.start()
    try:
        seed(sandbox, products=12, images=2)
        shuffled_id, grouped_id = start(sandbox, group=False), start(sandbox, group=True)
        clock.advance(CREATED_S + PER_OBJECT_S * MAX_OBJECTS)
        shuffled = download(poll(sandbox, shuffled_id)["url"])
        grouped = download(poll(sandbox, grouped_id)["url"])
    finally:
        server.stop()

    def by_id(products: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # Siblings come in any order too: a product's media are compared as a set.
        return {k: {**p, "media": sorted(p["media"], key=lambda m: m["id"])} for k, p in products.items()}

    assert by_id(joined(shuffled)) == by_id(joined(grouped))

    def misplaced(lines: list[dict[str, Any]]) -> int:
        """Child lines that do not follow their parent (or a sibling right after it)."""
        count, parent = 0, None
        for line in lines:
            if "__parentId" not in line:
                parent = line["id"]
            elif line["__parentId"] != parent:
                count += 1
        return count

    assert misplaced(grouped) == 0
    assert misplaced(shuffled) > 0
    seen: set[str] = set()
    early = 0
    for line in shuffled:
        early += "__parentId" in line and line["__parentId"] not in seen
        seen.add(line["id"])
    assert early > 0, "some child comes before its parent"


# ------------------------------------------------------------------ validators


def _captured_validations() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name in ("bulk-operation-run-query-validators.json", "bulk-operation-run-query-user-error-codes.json"):
        path = CAPTURES / name
        if path.exists():
            for label, case in json.loads(path.read_text(encoding="utf-8"))["validations"].items():
                if label != "connectionWithinList":  # the sandbox lacks orders (test_shopify_captures.py)
                    found.append((label, case))
    return found


@pytest.mark.skipif(not _captured_validations(), reason=f"captures absent: {CAPTURES}")
@pytest.mark.parametrize(
    ("label", "case"), _captured_validations() or [("none", {})], ids=lambda v: v if isinstance(v, str) else ""
)
def test_refused_queries_get_shopifys_exact_user_errors(
    sandbox: ShopifySandbox, label: str, case: dict[str, Any]
) -> None:
    expected = case["response"]["data"]["bulkOperationRunQuery"]
    answer = gql(sandbox, case["query"], case["variables"])
    assert answer["data"]["bulkOperationRunQuery"] == expected
    assert answer["extensions"]["cost"]["requestedQueryCost"] == 10


def test_a_query_over_a_field_the_sandbox_lacks_is_refused(sandbox: ShopifySandbox) -> None:
    (error,) = run(sandbox, "{ orders { edges { node { id } } } }")["userErrors"]
    assert error == {
        "field": ["query"],
        "code": "INVALID",
        "message": "Invalid bulk query: Field 'orders' doesn't exist on type 'QueryRoot'",
    }


# ------------------------------------------------------------------ concurrency and cancel


def test_a_sixth_operation_in_progress_is_refused_until_one_ends(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=2, images=0)
    ids = [start(sandbox) for _ in range(5)]
    sixth = run(sandbox)
    assert sixth["bulkOperation"] is None
    assert sixth["userErrors"] == [
        {
            "field": None,
            "code": "OPERATION_IN_PROGRESS",
            "message": "A bulk query operation for this app and shop is already in progress: " + ", ".join(ids) + ".",
        }
    ]
    gql(sandbox, CANCEL, {"id": ids[0]})
    assert run(sandbox)["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"  # CANCELING is still in progress
    clock.advance(CANCEL_S)
    assert run(sandbox)["userErrors"] == []  # CANCELED frees the slot


def test_cancel_moves_to_canceling_then_canceled(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=4, images=1)
    op_id = start(sandbox)
    clock.advance(CREATED_S + PER_OBJECT_S * 2)
    canceled = gql(sandbox, CANCEL, {"id": op_id})["data"]["bulkOperationCancel"]
    assert canceled == {"bulkOperation": {"id": op_id, "status": "CANCELING", "url": None}, "userErrors": []}
    clock.advance(CANCEL_S)
    after = poll(sandbox, op_id)
    assert (after["status"], after["url"], after["completedAt"], after["objectCount"]) == ("CANCELED", None, None, "2")
    clock.advance(PER_OBJECT_S * 100)
    assert poll(sandbox, op_id)["status"] == "CANCELED"
    again = gql(sandbox, CANCEL, {"id": op_id})["data"]["bulkOperationCancel"]
    assert again["userErrors"] and again["bulkOperation"]["status"] == "CANCELED"
    missing = gql(sandbox, CANCEL, {"id": "gid://shopify/BulkOperation/1"})["data"]["bulkOperationCancel"]
    assert missing["bulkOperation"] is None and missing["userErrors"][0]["field"] == ["id"]


# ------------------------------------------------------------------ expiry


def test_results_expire_after_the_configured_window(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=1, images=1)
    op_id = start(sandbox)
    done = finish(sandbox, clock, op_id)
    assert done["status"] == "COMPLETED"
    clock.advance(EXPIRY_S)
    expired = poll(sandbox, op_id)
    assert (expired["status"], expired["url"]) == ("EXPIRED", None)
    old = httpx.get(done["url"])
    assert old.status_code == 400 and b"<Code>ExpiredToken</Code>" in old.content
    assert httpx.get(f"{sandbox.shop_url}/_bulk/nosuchkey.jsonl").status_code == 404


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("code", ["INTERNAL_SERVER_ERROR", "TIMEOUT", "ACCESS_DENIED"])
def test_fault_fail_ends_the_next_operation_failed_with_its_error_code(
    sandbox: ShopifySandbox, clock: FakeClock, code: str
) -> None:
    seed(sandbox, products=4, images=1)
    sandbox.add_fault(endpoint="bulk", mode="fail", code=code)
    failed_id, fine_id = start(sandbox), start(sandbox)
    clock.advance(CREATED_S + PER_OBJECT_S * 8 / 2)  # 8 objects: it fails half-way through
    failed = poll(sandbox, failed_id)
    assert (failed["status"], failed["errorCode"], failed["url"], failed["partialDataUrl"], failed["objectCount"]) == (
        "FAILED",
        code,
        None,
        None,
        "4",
    )
    assert poll(sandbox, fine_id)["status"] == "RUNNING"
    assert finish(sandbox, clock, fine_id)["status"] == "COMPLETED"
    assert sandbox.faults_served() == {"fail": 1}


def test_fault_partial_gives_the_lines_made_before_the_failure(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=6, images=2)
    sandbox.add_fault(endpoint="bulk", mode="partial", code="TIMEOUT")
    op_id = start(sandbox)
    failed = finish(sandbox, clock, op_id)
    assert (failed["status"], failed["errorCode"], failed["url"]) == ("FAILED", "TIMEOUT", None)
    lines = download(failed["partialDataUrl"])
    products = [p["id"] for p in sandbox.products()]
    assert joined(lines).keys() == set(products[:3])
    assert all(len(p["media"]) == 2 for p in joined(lines).values())
    assert failed["objectCount"] == str(len(lines)) == "9"


def test_fault_expired_at_completion_or_between_poll_and_download(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=1, images=0)
    sandbox.add_fault(endpoint="bulk", mode="expired")
    at_once = start(sandbox)
    assert (finish(sandbox, clock, at_once)["status"], poll(sandbox, at_once)["url"]) == ("EXPIRED", None)
    sandbox.add_fault(endpoint="bulk", mode="expired", seconds=5)
    later = start(sandbox)
    clock.advance(CREATED_S + PER_OBJECT_S)  # its one object: just done
    done = poll(sandbox, later)
    assert done["status"] == "COMPLETED"
    clock.advance(5)
    assert httpx.get(done["url"]).status_code == 400
    assert poll(sandbox, later)["status"] == "EXPIRED"


def test_fault_download_cut_off_mid_stream(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=10, images=1)
    done = finish(sandbox, clock, start(sandbox))
    sandbox.add_fault(endpoint="bulk_download", mode="truncated")
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", done["url"], timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
    whole = httpx.get(done["url"]).content  # the fault was used up: the next download is whole
    assert whole.count(b"\n") == 20
    assert whole.startswith(bytes(received)) and len(received) < len(whole)
    assert received.count(b"\n") == 10 and not received.endswith(b"\n")  # half the lines, then half a line
    assert sandbox.faults_served() == {"truncated": 1}


def test_fault_download_status_and_admin_route(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=1, images=0)
    done = finish(sandbox, clock, start(sandbox))
    pending = httpx.post(
        f"{sandbox.shop_url}/_sandbox/faults", json={"endpoint": "bulk_download", "status": 503, "retry_after": 2}
    ).json()
    assert pending["bulk"] == [
        {
            "endpoint": "bulk_download",
            "status": 503,
            "retry_after": 2.0,
            "count": 1,
            "seconds": 0.0,
            "skip": 0,
            "probability": 1.0,
        }
    ]
    answer = httpx.get(done["url"])
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "2")
    assert b"ServiceUnavailable" in answer.content
    assert httpx.get(done["url"]).status_code == 200
    bad = httpx.post(f"{sandbox.shop_url}/_sandbox/faults", json={"endpoint": "bulk", "mode": "fail", "code": "NOPE"})
    assert bad.status_code == 400
    assert (
        httpx.post(f"{sandbox.shop_url}/_sandbox/faults", json={"endpoint": "bulk", "mode": "partial"}).json()["bulk"][
            0
        ]["code"]
        == "INTERNAL_SERVER_ERROR"
    )


# ------------------------------------------------------------------ cost


def test_the_run_costs_ten_and_the_bulk_work_does_not_drain_the_bucket(
    sandbox: ShopifySandbox, clock: FakeClock
) -> None:
    seed(sandbox, products=3, images=1)
    answer = gql(
        sandbox,
        RUN.replace("bulkOperation { id status }", "bulkOperation { id status url query type }"),
        {"query": BULK_QUERY, "group": False},
    )
    cost = answer["extensions"]["cost"]
    assert (cost["requestedQueryCost"], cost["actualQueryCost"], cost["throttleStatus"]["currentlyAvailable"]) == (
        10,
        10,
        1990,
    )
    op_id = answer["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    polled = gql(sandbox, POLL, {"id": op_id})  # the clock has not moved: the bucket has not refilled
    assert polled["extensions"]["cost"]["actualQueryCost"] == 1
    assert polled["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1989
    clock.advance(0.001)  # the run is under way; nothing but refills moves the bucket
    clock.advance(CREATED_S + PER_OBJECT_S * MAX_OBJECTS)  # long enough to refill the bucket
    done = gql(sandbox, POLL, {"id": op_id})
    download(done["data"]["bulkOperation"]["url"])
    assert done["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1999  # full, less this poll
    assert gql(sandbox, POLL, {"id": op_id})["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1998


def test_products_count_counts_up_to_its_limit_and_costs_ten(sandbox: ShopifySandbox) -> None:
    """As captured (bulk-operation-run-query-group-objects.json): Count {count precision}, 10 points."""
    seed(sandbox, products=5, images=1)
    document = "query($limit: Int) { productsCount(limit: $limit) { count precision } }"
    exact = gql(sandbox, document, {"limit": None})
    assert exact["data"]["productsCount"] == {"count": 5, "precision": "EXACT"}
    assert (exact["extensions"]["cost"]["requestedQueryCost"], exact["extensions"]["cost"]["actualQueryCost"]) == (
        10,
        10,
    )
    assert gql(sandbox, document, {"limit": 3})["data"]["productsCount"] == {"count": 3, "precision": "AT_LEAST"}


# ------------------------------------------------------------------ streaming


def test_the_file_is_streamed_not_sent_as_one_body(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    seed(sandbox, products=1, images=0)
    done = finish(sandbox, clock, start(sandbox))
    with httpx.stream("GET", done["url"]) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers


def test_lines_are_made_batch_by_batch_while_the_file_is_read(sandbox: ShopifySandbox, clock: FakeClock) -> None:
    products = [sandbox.add_product(f"Product {i}") for i in range(bulk_export.BATCH_ROOTS + 5)]
    op_id = start(sandbox)
    finish(sandbox, clock, op_id)
    store = sandbox.store
    op = store.bulk.get(op_id)
    context = Context(store, clock(), sandbox.shop_url, (sandbox.shop_url,))
    lines = bulk_export.lines(store, sandbox_schema(), context, op, locked=True)
    first = json.loads(next(lines))
    assert first["id"] == products[0]["id"]
    sandbox.update_product(products[1]["legacy_id"], title="Renamed meanwhile")  # same batch: already made
    sandbox.update_product(products[-1]["legacy_id"], title="Renamed later")  # a later batch: not made yet
    titles = [json.loads(line)["title"] for line in lines]
    assert titles[0] == "Product 1" and titles[-1] == "Renamed later"
    assert len(titles) == len(products) - 1
