"""The Shopify sandbox at catalog scale: seeded photos kept as recipes and drawn on request,
products kept sorted as they change (pages without sorting or filtering the catalog), the media
processing index behind `settle`, and Shopify's pagination cap (a smaller cap stands in for
25,000). The figures at 100,000 products / 300,000 media are bench/shopify_sandbox_scale.py's.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import FakeClock
from retouch.plugin.shopify.operations import operation
from retouch.plugin.shopify.sandbox import ShopifySandbox, photos, search
from retouch.plugin.shopify.sandbox.imaging import inspect_image
from retouch.plugin.shopify.sandbox.model import GeneratedImage, ImageAsset, iso
from retouch.plugin.shopify.sandbox.paging import (
    PAGINATION_CAP,
    PaginationLimit,
    SortedIndex,
    SortSpec,
    paginate,
    paginate_sorted,
)
from retouch.plugin.shopify.sandbox.store import _ADJECTIVES, _NOUNS, _TAGS

TOKEN = "shpat_sandbox_scale_test"
T0 = 1_795_000_000.0
P = 2.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def started(clock: FakeClock, **options: Any) -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(
        access_token=TOKEN, clock=clock, processing_seconds=P, bucket_size=1e9, restore_rate=1e9, **options
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def shop(clock: FakeClock) -> Iterator[ShopifySandbox]:
    yield from started(clock)


@pytest.fixture
def capped(clock: FakeClock) -> Iterator[ShopifySandbox]:
    yield from started(clock, pagination_cap=30)


def gql(sandbox: ShopifySandbox, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = httpx.post(
        f"{sandbox.shop_url}/admin/api/2026-07/graphql.json",
        timeout=30,
        json={"query": document, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


PAGE = """query Page($first: Int, $after: String, $last: Int, $before: String, $query: String,
                  $sortKey: ProductSortKeys, $reverse: Boolean) {
  products(first: $first, after: $after, last: $last, before: $before, query: $query, sortKey: $sortKey,
           reverse: $reverse) {
    pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
    nodes { id legacyResourceId title updatedAt }
  }
}"""


def page(sandbox: ShopifySandbox, **variables: Any) -> dict[str, Any]:
    given = {name: value for name, value in variables.items() if value is not None}
    return gql(sandbox, PAGE, {"sortKey": "UPDATED_AT", **given})


def every_product(sandbox: ShopifySandbox, size: int = 7, **variables: Any) -> list[str]:
    """The ids of every product the connection yields, page by page."""
    seen, after = [], None
    while True:
        body = page(sandbox, first=size, after=after, **variables)
        assert "errors" not in body, body["errors"]
        connection = body["data"]["products"]
        seen += [n["id"] for n in connection["nodes"]]
        if not connection["pageInfo"]["hasNextPage"]:
            return seen
        after = connection["pageInfo"]["endCursor"]


# ---------------------------------------------------------------------- seeded photos


def eager_photos(seed: int, products: int, images_per_product: int) -> list[bytes]:
    """The photos `seed` used to draw up front, in media order: the same draws from the same RNG."""
    rng = random.Random(seed)
    drawn = []
    for _ in range(products):
        rng.choice(_NOUNS)
        rng.choice(_ADJECTIVES)
        for _ in range(images_per_product):
            ext = rng.choices(["jpg", "png", "webp"], weights=[6, 3, 1])[0]
            drawn.append(photos.product_photo(rng.randrange(1_000_000), photos.format_for_filename(f"x.{ext}")))
        rng.sample(_TAGS, rng.randint(0, 3))
    return drawn


MEDIA = """query Media($first: Int!) {
  products(first: $first, sortKey: ID) {
    nodes { media(first: 10) { nodes { id status ... on MediaImage {
      mimeType image { url width height } originalSource { url fileSize } } } } }
  }
}"""


def test_seeded_photos_are_drawn_only_on_request_and_are_the_eager_bytes(shop, monkeypatch) -> None:
    expected = eager_photos(7, 4, 2)
    drawn: list[int] = []
    real_render = photos._render

    def counting_render(seed, size):
        drawn.append(seed)
        return real_render(seed, size)

    monkeypatch.setattr(photos, "_render", counting_render)
    photos.cached_photo.cache_clear()
    shop.seed_catalog(4, 2, seed=7)
    assert drawn == []  # seeding draws nothing

    nodes = [m for p in gql(shop, MEDIA, {"first": 10})["data"]["products"]["nodes"] for m in p["media"]["nodes"]]
    assert len(nodes) == 8 and {m["status"] for m in nodes} == {"READY"}
    assert drawn == []  # width, height and MIME type come from the recipe

    for node, data in zip(nodes, expected, strict=True):
        asset = inspect_image(data)
        assert isinstance(asset, ImageAsset)
        assert (node["mimeType"], node["image"]["width"], node["image"]["height"]) == (
            asset.mime_type,
            asset.width,
            asset.height,
        )
        assert node["originalSource"]["fileSize"] is None  # not known without drawing the photo
        served = httpx.get(node["image"]["url"], timeout=30)
        assert served.status_code == 200
        assert served.content == data  # byte for byte what eager seeding stored
        assert served.headers["content-type"] == asset.mime_type
        assert shop.media_bytes(node["id"]) == data
    assert len(drawn) == 8  # each photo drawn once, then served from the LRU

    media = shop.store.media_by_gid(nodes[0]["id"])
    assert isinstance(media.ready, GeneratedImage)
    legacy = shop.store.products[media.product_id].id
    assert shop.product(legacy)["media"][0]["sha256"] == hashlib.sha256(expected[0]).hexdigest()
    assert len(drawn) == 8


def test_seeding_the_same_seed_twice_gives_the_same_photos(clock) -> None:
    first = ShopifySandbox(clock=clock)
    second = ShopifySandbox(clock=clock)
    one = first.seed(3, 2, seed=11)
    two = second.seed(3, 2, seed=11)
    assert [p["title"] for p in one] == [p["title"] for p in two]
    assert [m["sha256"] for p in one for m in p["media"]] == [m["sha256"] for p in two for m in p["media"]]


def test_a_seeded_photo_replaced_by_the_merchant_keeps_its_old_version_on_the_cdn(shop, clock) -> None:
    (product,) = shop.seed(1, 1, seed=3)
    old = product["media"][0]
    old_bytes = httpx.get(old["url"], timeout=30).content
    clock.advance(5)
    new_bytes = photos.product_photo(99, "JPEG", (64, 64))
    replaced = shop.replace_image(old["id"], data=new_bytes)
    assert httpx.get(replaced["url"], timeout=30).content == new_bytes
    assert httpx.get(old["url"], timeout=30).content == old_bytes  # the earlier version's URL still serves it


# ---------------------------------------------------------------------- sorted catalog


def brute_force(sandbox: ShopifySandbox, key) -> list[str]:
    return [p.gid for p in sorted(sandbox.store.products.values(), key=key)]


def test_updated_at_filters_and_order_stay_right_after_edits_without_resorting(shop, clock, monkeypatch) -> None:
    shop.seed(40, 1, seed=5, spread_seconds=80)  # one product every 2 s, up to T0
    by_updated = lambda p: (int(p.updated_at), p.id)  # noqa: E731
    assert every_product(shop) == brute_force(shop, by_updated)
    index = shop.store.orders.index("UPDATED_AT")
    products = list(shop.store.products.values())

    clock.advance(10)
    mark = iso(clock.now)
    clock.advance(1)
    edited = [products[3], products[17], products[0]]
    shop.update_product(edited[0].id, title="Edited first")
    clock.advance(1)
    mutation = """mutation($product: ProductUpdateInput!) { productUpdate(product: $product) {
      product { id } userErrors { message } } }"""
    assert (
        gql(shop, mutation, {"product": {"id": edited[1].gid, "title": "Edited by the client"}})["data"][
            "productUpdate"
        ]["userErrors"]
        == []
    )
    clock.advance(1)
    shop.add_image(edited[2].id, "extra.png", data=photos.product_photo(5, "PNG", (32, 32)))
    clock.advance(1)
    gone = products[20]
    shop.delete_product(gone.id)

    assert shop.store.orders.index("UPDATED_AT") is index  # kept up to date, not rebuilt
    assert index.items == sorted(shop.store.products.values(), key=by_updated)
    assert every_product(shop) == brute_force(shop, by_updated)
    assert every_product(shop, 3, query=f"updated_at:>'{mark}'") == [p.gid for p in edited]
    assert every_product(shop, 3, query=f"updated_at:>='{mark}'", reverse=True) == [p.gid for p in edited[::-1]]
    older = [p.gid for p in sorted(products, key=by_updated) if p not in edited and p is not gone]
    assert every_product(shop, 5, query=f"updated_at:<='{mark}'") == older

    def between(low: float, high: float) -> list[str]:
        return [p.gid for p in sorted(shop.store.products.values(), key=by_updated) if low <= p.updated_at < high]

    assert every_product(shop, 5, query=f"updated_at:<'{iso(T0 - 40)}'") == between(0, T0 - 40)
    assert len(between(0, T0 - 40)) == 17  # products 0..19 but the 2 edited (and 0, now the newest)
    assert (
        every_product(shop, 4, query=f"updated_at:>='{iso(T0 - 40)}' AND updated_at:<'{iso(T0 - 20)}'")
        == between(T0 - 40, T0 - 20)
        == older[17:26]
    )
    # Other sort keys, built on first use and kept up to date as well.
    assert every_product(shop, 6, sortKey="TITLE") == brute_force(shop, lambda p: (p.title.lower(), p.id))
    shop.update_product(products[5].id, title="aaa first by title")
    assert every_product(shop, 6, sortKey="TITLE")[0] == products[5].gid
    assert every_product(shop, 9, sortKey="ID") == brute_force(shop, lambda p: p.id)

    # A page under an updated_at filter bisects to it: no product is tested against the query.
    tested: list[Any] = []
    real_matches = search.matches
    monkeypatch.setattr(search, "matches", lambda node, item, now: tested.append(item) or real_matches(node, item, now))
    body = page(shop, first=5, query=f"updated_at:>='{iso(T0 - 40)}'")
    assert len(body["data"]["products"]["nodes"]) == 5 and tested == []
    # Other filters are tested on the products a page passes, not on the whole catalog.
    body = page(shop, first=5, query="-tag:nonexistent")
    assert len(body["data"]["products"]["nodes"]) == 5 and 5 <= len({id(p) for p in tested}) <= 6


def test_backward_paging_and_page_info_match_the_brute_force_order(shop, clock) -> None:
    shop.seed(23, 0, seed=9, spread_seconds=46)
    order = brute_force(shop, lambda p: (int(p.updated_at), p.id))
    body = page(shop, last=5)["data"]["products"]
    assert [n["id"] for n in body["nodes"]] == order[-5:]
    assert body["pageInfo"]["hasPreviousPage"] and not body["pageInfo"]["hasNextPage"]
    before = page(shop, last=5, before=body["pageInfo"]["startCursor"])["data"]["products"]
    assert [n["id"] for n in before["nodes"]] == order[-10:-5]
    middle = page(shop, first=4, after=before["pageInfo"]["endCursor"], reverse=True)["data"]["products"]
    assert [n["id"] for n in middle["nodes"]] == order[:-6][::-1][:4]
    tagged = [
        p.gid for p in sorted(shop.store.products.values(), key=lambda p: (int(p.updated_at), p.id)) if "gift" in p.tags
    ]
    assert every_product(shop, 2, query="tag:gift") == tagged


def test_paging_a_sorted_index_answers_as_sorting_the_whole_list_does() -> None:
    """paginate_sorted (the catalog) against paginate (sort everything, then cut), many windows."""
    rng = random.Random(3)
    items = [(rng.randrange(12), n) for n in range(60)]  # (value, id): many equal values
    sort = SortSpec(lambda item: item[1], lambda item: item[0], lambda item: str(item[0]), int)
    index = SortedIndex(sort.key, items)
    ordered = sorted(items, key=sort.key)
    cursors = [None] + [sort.cursor(item) for item in ordered[::7]]
    filters = [None, lambda item: item[1] % 3 != 0]
    for matches in filters:
        kept = [item for item in items if matches is None or matches(item)]
        for reverse in (False, True):
            for after in cursors:
                for before in cursors[::3]:
                    for first, last in [(5, None), (None, 4), (6, 3), (0, None), (70, None)]:
                        window = dict(first=first, after=after, last=last, before=before, reverse=reverse)
                        want = paginate(kept, sort, **window)
                        got = paginate_sorted(index, sort, matches=matches, **window)
                        assert (got.items, got.has_previous, got.has_next) == (
                            want.items,
                            want.has_previous,
                            want.has_next,
                        ), window
                        for cap in (10, 25):
                            try:
                                paginate(kept, sort, cap=cap, **window)
                                refused_by_list = False
                            except PaginationLimit:
                                refused_by_list = True
                            try:
                                paginate_sorted(index, sort, matches=matches, cap=cap, **window)
                                refused_by_index = False
                            except PaginationLimit:
                                refused_by_index = True
                            assert refused_by_index == refused_by_list, (window, cap)
    # A span (a time filter on the sort field, bisected) is the same as filtering on it.
    span = index.span((3,), (8,))
    got = paginate_sorted(index, sort, span=span, first=100)
    assert got.items == [item for item in ordered if 3 <= item[0] < 8]


# ---------------------------------------------------------------------- settle index


def test_processing_media_become_ready_through_the_settle_index(shop, clock) -> None:
    shop.seed(30, 2, seed=1)
    product = next(iter(shop.store.products.values()))
    added = shop.add_image(product.id, "new.png", data=photos.product_photo(8, "PNG", (48, 48)), processing=True)
    store = shop.store
    media = store.media_by_gid(added["id"])
    assert store._processing == {media.id}  # the only media `settle` looks at
    job = gql(
        shop,
        """mutation($id: ID!, $moves: [MoveInput!]!) { productReorderMedia(id: $id, moves: $moves) {
        job { id done } mediaUserErrors { message } } }""",
        {"id": product.gid, "moves": [{"id": added["id"], "newPosition": "0"}]},
    )
    job_id = job["data"]["productReorderMedia"]["job"]["id"]
    status = """query($id: ID!) { node(id: $id) { ... on MediaImage { status image { width } } } }"""
    assert gql(shop, status, {"id": added["id"]})["data"]["node"] == {"status": "UPLOADED", "image": None}
    clock.advance(P)
    assert gql(shop, status, {"id": added["id"]})["data"]["node"] == {"status": "READY", "image": {"width": 48}}
    assert media.processing is None and store._processing == set()
    assert gql(shop, "query($id: ID!) { job(id: $id) { done } }", {"id": job_id})["data"]["job"]["done"]
    assert store.product_media(product)[0] is media and store._pending_jobs == set()

    # A replacement goes through processing again and is settled the same way.
    update = """mutation($files: [FileUpdateInput!]!) { fileUpdate(files: $files) { userErrors { code } } }"""
    staged = gql(
        shop,
        operation("StagedUploadsCreate"),
        {"input": [{"resource": "IMAGE", "filename": "new.png", "mimeType": "image/png", "httpMethod": "PUT"}]},
    )
    target = staged["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    replacement = photos.product_photo(9, "PNG", (40, 40))
    assert httpx.put(target["url"], content=replacement, timeout=30).status_code == 200
    body = gql(shop, update, {"files": [{"id": added["id"], "originalSource": target["resourceUrl"]}]})
    assert body["data"]["fileUpdate"]["userErrors"] == []
    assert store._processing == {media.id}
    clock.advance(P)
    assert gql(shop, status, {"id": added["id"]})["data"]["node"] == {"status": "READY", "image": {"width": 40}}
    assert shop.media_bytes(added["id"]) == replacement and store._processing == set()


# ---------------------------------------------------------------------- pagination cap


def test_the_cap_defaults_to_shopifys_25000() -> None:
    assert PAGINATION_CAP == 25_000 and ShopifySandbox().store.pagination_cap == 25_000


def refused(body: dict[str, Any]) -> bool:
    errors = body.get("errors") or []
    return (
        body.get("data") is None
        and len(errors) == 1
        and errors[0]["path"] == ["products"]
        and errors[0]["extensions"]["code"] == "BAD_REQUEST"
        and "30" in errors[0]["message"]
    )


@pytest.mark.parametrize("query", [None, "-tag:nonexistent"], ids=["unfiltered", "filtered"])
def test_paging_past_the_cap_is_refused(capped, query) -> None:
    capped.seed(75, 0, seed=2)
    after, seen = None, 0
    for _ in range(3):  # 3 pages of 10: exactly the cap
        body = page(capped, first=10, after=after, query=query)
        connection = body["data"]["products"]
        seen += len(connection["nodes"])
        assert connection["pageInfo"]["hasNextPage"]  # more follow, even at the cap
        after = connection["pageInfo"]["endCursor"]
    assert seen == 30
    assert refused(page(capped, first=10, after=after, query=query))  # the 31st product and on
    assert refused(page(capped, first=1, after=after, query=query))
    middle = page(capped, first=10, query=query)["data"]["products"]["pageInfo"]["endCursor"]
    middle = page(capped, first=10, after=middle, query=query)["data"]["products"]["pageInfo"]["endCursor"]
    assert refused(page(capped, first=15, after=middle, query=query))  # a page that would straddle it
    assert "errors" not in page(capped, first=10, after=middle, query=query)
    # From the other end the depth counts from the end: the last 10 are fine.
    assert len(page(capped, last=10, query=query)["data"]["products"]["nodes"]) == 10
    assert refused(page(capped, last=31, query=query))


def test_splitting_the_updated_at_range_reaches_every_product_past_the_cap(capped, clock) -> None:
    capped.seed(75, 1, seed=4, spread_seconds=150)  # one product every 2 s over the 150 s before T0
    assert refused(page(capped, first=10, after=page(capped, first=30)["data"]["products"]["pageInfo"]["endCursor"]))
    seen: list[str] = []
    for low, high in [(T0 - 150, T0 - 100), (T0 - 100, T0 - 50), (T0 - 50, T0 + 1)]:  # 25 products each
        seen += every_product(capped, 10, query=f"updated_at:>='{iso(low)}' AND updated_at:<'{iso(high)}'")
    assert seen == brute_force(capped, lambda p: (int(p.updated_at), p.id))
    assert len(seen) == 75
    # The admin API and media connections answer as before.
    assert len(capped.products()) == 75
