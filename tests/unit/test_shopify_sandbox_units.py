"""Pure parts of the Shopify sandbox: search syntax, cursors and paging, query cost, the bucket,
the media lifecycle."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime

import pytest
from graphql import parse

from retouch.plugin.shopify.operations import operation
from retouch.plugin.shopify.sandbox import lifecycle
from retouch.plugin.shopify.sandbox.cost import ActualCost, LeakyBucket, analyze
from retouch.plugin.shopify.sandbox.graphql_api import sandbox_schema
from retouch.plugin.shopify.sandbox.imaging import failure, inspect_image
from retouch.plugin.shopify.sandbox.model import ImageAsset, Media, Processing
from retouch.plugin.shopify.sandbox.paging import InvalidCursor, SortSpec, decode_cursor, encode_cursor, paginate
from retouch.plugin.shopify.sandbox.photos import product_photo
from retouch.plugin.shopify.sandbox.search import matches, parse_query


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Item:
    id: int
    title: str
    tags: list[str] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


NOW = ts("2026-11-22T12:00:00Z")
OLD = Item(1, "Old Mug", ["kitchen"], ts("2026-11-01T00:00:00Z"), ts("2026-11-20T09:59:59Z"))
EDGE = Item(2, "Edge Vase", ["Gift", "sale"], ts("2026-11-01T00:00:00Z"), ts("2026-11-20T10:00:00Z"))
NEW = Item(3, "New Teapot", ["gift"], ts("2026-11-21T00:00:00Z"), ts("2026-11-20T10:00:01.700Z"))
ITEMS = [OLD, EDGE, NEW]


def found(query: str | None) -> list[int]:
    node = parse_query(query)
    return [item.id for item in ITEMS if matches(node, item, NOW)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("updated_at:>'2026-11-20T10:00:00Z'", [3]),
        ("updated_at:>=2026-11-20T10:00:00Z", [2, 3]),
        ('updated_at:<"2026-11-20T10:00:00Z"', [1]),
        ("updated_at:<='2026-11-20T10:00:00Z'", [1, 2]),
        ("updated_at:2026-11-20", [1, 2, 3]),
        ("updated_at:>'2026-11-20T11:00:00+01:00'", [3]),  # offsets are honoured
        ("created_at:>2026-11-10", [3]),
        ("updated_at:>garbage", []),
        ("tag:gift", [2, 3]),  # tags compare case-insensitively
        ("-tag:gift", [1]),
        ("tag_not:gift", [1]),
        ("NOT tag:gift", [1]),
        ("tag:gift AND tag:sale", [2]),
        ("tag:gift tag:sale", [2]),
        ("tag:kitchen OR tag:sale", [1, 2]),
        ("(tag:kitchen OR tag:sale) updated_at:>=2026-11-20T10:00:00Z", [2]),
        ("id:2", [2]),
        ("id:>=2", [2, 3]),
        ("id:<gid://shopify/Product/3", [1, 2]),
        ("title:teapot", [3]),
        ("vase", [2]),
        ("vendor:Acme tag:gift", [2, 3]),  # unknown filters are ignored
        ("", [1, 2, 3]),
        (None, [1, 2, 3]),
        # Malformed, as in captures/2025-01/products/product-invalid-search-query-syntax.json:
        ("tag:(gift", []),
        ('tag:("gift"', []),
        ("(teapot", [3]),
        ("tag:gift OR", [2, 3]),
        ("tag:gift)", [2, 3]),
    ],
)
def test_search_syntax(query: str | None, expected: list[int]) -> None:
    assert found(query) == expected


def test_cursors_are_shopify_shaped_base64_json() -> None:
    cursor = encode_cursor(9899728634162, "2026-06-24 14:40:33.000000")
    # The very cursor Shopify returned in products-common-search-filters.json.
    assert cursor == "eyJsYXN0X2lkIjo5ODk5NzI4NjM0MTYyLCJsYXN0X3ZhbHVlIjoiMjAyNi0wNi0yNCAxNDo0MDozMy4wMDAwMDAifQ=="
    assert decode_cursor(cursor) == (9899728634162, "2026-06-24 14:40:33.000000")
    for bad in ("not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b'{"x":1}').decode()):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)


BY_VALUE = SortSpec(lambda n: n, lambda n: n % 3, lambda n: str(n % 3), int)


def test_paginate_walks_every_item_once_in_both_directions() -> None:
    items = list(range(1, 11))
    for reverse in (False, True):
        seen, after = [], None
        while True:
            page = paginate(items, BY_VALUE, first=3, after=after, reverse=reverse)
            seen += page.items
            assert page.has_previous == (after is not None)
            if not page.has_next:
                break
            after = page.cursors[-1]
        expected = sorted(items, key=BY_VALUE.key, reverse=reverse)
        assert seen == expected


def test_paginate_last_and_before() -> None:
    items = list(range(1, 7))  # ordered by key (n % 3, n): 3, 6, 1, 4, 2, 5
    page = paginate(items, BY_VALUE, last=2)
    assert page.items == [2, 5] and page.has_previous and not page.has_next
    before = paginate(items, BY_VALUE, last=2, before=page.cursors[0])
    assert before.items == [1, 4] and before.has_next


def test_paging_by_key_survives_an_insert_before_the_cursor() -> None:
    first = paginate([10, 20, 30, 40], SortSpec(lambda n: n, lambda n: n, str, int), first=2)
    second = paginate(
        [5, 10, 20, 30, 40], SortSpec(lambda n: n, lambda n: n, str, int), first=2, after=first.cursors[-1]
    )
    assert second.items == [30, 40]


def _cost(name: str, variables: dict) -> tuple[int, list[str]]:
    analysis = analyze(sandbox_schema(), parse(operation(name)), name, variables)
    return analysis.requested, [e.message for e in analysis.problems]


def test_requested_cost_follows_the_documented_rules() -> None:
    assert _cost("Shop", {}) == (1, [])
    assert _cost("Job", {"id": "gid://shopify/Job/x"}) == (1, [])
    # node 1 + image 1 + originalSource 1 + mediaErrors 1
    assert _cost("Media", {"id": "gid://shopify/MediaImage/1"}) == (4, [])
    # 2 + first × (product 1 + marker 1 + collections (2 + 10 × 1) + media connection (2 + mediaFirst × 4))
    assert _cost("ProductsPage", {"first": 2, "mediaFirst": 5}) == (2 + 2 * (1 + 1 + 12 + 2 + 5 * 4), [])
    assert _cost("ProductsPage", {"first": 10, "mediaFirst": 10}) == (2 + 10 * (1 + 1 + 12 + 2 + 10 * 4), [])
    # mutations: 10 + the payload's selection (userErrors free)
    assert _cost("FileUpdate", {"files": []}) == (11, [])
    assert _cost("MetafieldsSet", {"metafields": []}) == (11, [])
    assert _cost("ProductAddMedia", {"product": {}, "mediaFirst": 3}) == (10 + 1 + 2 + 3 * 1, [])


def test_page_size_limits_are_reported_before_execution() -> None:
    _, problems = _cost("ProductsPage", {"first": 251, "mediaFirst": 1})
    assert len(problems) == 1 and "250" in problems[0]
    _, problems = _cost("ProductMediaPage", {"id": "gid://shopify/Product/1", "first": None})
    assert problems == ["you must provide one of first or last"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_leaky_bucket_takes_refills_and_caps() -> None:
    clock = Clock()
    bucket = LeakyBucket(100, 10, clock)
    assert bucket.take(60) and not bucket.take(41)
    assert bucket.status() == {"maximumAvailable": 100, "currentlyAvailable": 40, "restoreRate": 10}
    clock.now += 1.5
    assert bucket.status()["currentlyAvailable"] == 55
    bucket.give_back(30)
    assert bucket.available() == 85
    clock.now += 100
    assert bucket.available() == 100
    bucket.drain()
    assert not bucket.take(1)


def test_actual_cost_counts_only_what_came_back() -> None:
    class Info:  # the few attributes ActualCost reads
        def __init__(self, field_name, return_type, parent_type):
            self.field_name, self.return_type, self.parent_type, self.schema = (
                field_name,
                return_type,
                parent_type,
                sandbox_schema(),
            )

    schema = sandbox_schema()
    product = schema.type_map["Product"]
    connection = schema.type_map["MediaConnection"]
    assert ActualCost.charge(Info("media", product.fields["media"].type, product), {}) == 2
    assert ActualCost.charge(Info("nodes", connection.fields["nodes"].type, connection), [1, 2, 3]) == 3
    assert ActualCost.charge(Info("title", product.fields["title"].type, product), "x") == 0


def _asset() -> ImageAsset:
    result = inspect_image(product_photo(1, "PNG", (64, 48)))
    assert isinstance(result, ImageAsset)
    return result


def test_lifecycle_new_media() -> None:
    asset = _asset()
    media = Media(1, 1, "a.png", "", 100.0, 100.0, "https://x/a.png", 1, processing=Processing(100.0, asset, 7))
    assert [lifecycle.media_status(media, t, 2.0) for t in (100.0, 100.9, 101.0, 101.9, 102.0)] == [
        "UPLOADED",
        "UPLOADED",
        "PROCESSING",
        "PROCESSING",
        "READY",
    ]
    assert lifecycle.visible_image(media, 101.9, 2.0) is None
    assert lifecycle.preview_image(media, 101.9, 2.0) is None
    assert lifecycle.visible_image(media, 102.0, 2.0) == (asset, 7)
    assert lifecycle.settle(media, 102.5, 2.0)
    assert media.ready is asset and media.updated_at == 102.0 and media.processing is None
    assert lifecycle.media_status(media, 102.5, 2.0) == "READY"


def test_lifecycle_replacement_keeps_file_ready_and_preview_old() -> None:
    old, new = _asset(), inspect_image(product_photo(2, "PNG", (64, 48)))
    media = Media(1, 1, "a.png", "", 100.0, 100.0, "https://x/a.png", 1, ready=old, ready_version=1, versions={1: old})
    media.processing = Processing(200.0, new, 2)
    assert lifecycle.media_status(media, 200.5, 2.0) == "UPLOADED"
    assert lifecycle.file_status(media, 200.5, 2.0) == "READY"  # media-file-update-source-semantics.json
    assert lifecycle.visible_image(media, 200.5, 2.0) is None
    assert lifecycle.preview_image(media, 200.5, 2.0) == (old, 1)
    assert lifecycle.visible_image(media, 202.0, 2.0) == (new, 2)


def test_lifecycle_failure() -> None:
    media = Media(
        1,
        1,
        "a.png",
        "",
        100.0,
        100.0,
        "https://x/a.png",
        None,
        processing=Processing(100.0, failure("IMAGE_DOWNLOAD_FAILURE", "ConnectError"), 1),
    )
    assert lifecycle.media_status(media, 100.0, 1.0) == "UPLOADED"
    assert lifecycle.media_status(media, 101.0, 1.0) == "FAILED"
    assert lifecycle.file_status(media, 101.0, 1.0) == "FAILED"
    assert lifecycle.media_failure(media, 101.0, 1.0).code == "IMAGE_DOWNLOAD_FAILURE"
    assert lifecycle.visible_image(media, 101.0, 1.0) is None


def test_inspect_image_rejects_what_shopify_rejects() -> None:
    assert inspect_image(b"hello, not an image").code == "UNSUPPORTED_IMAGE_FILE_TYPE"
    truncated = product_photo(3, "PNG", (64, 64))[:200]
    assert inspect_image(truncated).code == "IMAGE_PROCESSING_FAILURE"
    wide = inspect_image(product_photo(4, "PNG", (1010, 10)))
    assert wide.code == "INVALID_IMAGE_ASPECT_RATIO"
    ok = inspect_image(product_photo(5, "WEBP", (80, 60)))
    assert (ok.mime_type, ok.extension, ok.width, ok.height) == ("image/webp", "webp", 80, 60)


def test_seeded_cursor_value_of_media_is_one_based_position() -> None:
    # media-file-mutation-first-lifecycle.json: {"last_id":44071803355442,"last_value":"1"} for the first media
    decoded = json.loads(base64.b64decode("eyJsYXN0X2lkIjo0NDA3MTgwMzM1NTQ0MiwibGFzdF92YWx1ZSI6IjEifQ=="))
    assert decoded == {"last_id": 44071803355442, "last_value": "1"}
    assert encode_cursor(44071803355442, "1") == "eyJsYXN0X2lkIjo0NDA3MTgwMzM1NTQ0MiwibGFzdF92YWx1ZSI6IjEifQ=="
