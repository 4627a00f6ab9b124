"""The Shopify sandbox holding a large catalog (not a test): seed time, the sandbox's memory, and
how fast a plain GraphQL client pages the whole catalog through it.

    .venv/bin/python bench/shopify_sandbox_scale.py [--products 100000] [--images 3] [--page 50] [--images-fetched 30]

The sandbox runs in a child process (so its RSS is its own); this process is the client: plain
httpx, no pacing (the bucket is made too large to throttle). It prints:
- the seed time and the sandbox's RSS before and after seeding;
- a full paged discovery (the client's own ProductsPage document, sortKey UPDATED_AT, `first`
  products with 3 media each), split into `updated_at` windows of at most 25,000 products — the
  way past Shopify's pagination cap — with its requests, products/s and media/s;
- what the sandbox answers when a connection is paged past the 25,000th product (one unfiltered
  pass of cheap `first: 250` pages);
- the time to download some seeded images from the CDN (drawn on request);
- the sandbox's RSS after all that.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, command_line, emit  # noqa: E402

TOKEN = "shpat_bench_scale_token"
CAP = 25_000
BIG = 1e12  # bucket size and restore rate: never throttled


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _serve(products: int, images: int, spread: float, answers: mp.Queue, stop: mp.Event) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from retouch.plugin.shopify.sandbox import ShopifySandbox

    shop = ShopifySandbox(access_token=TOKEN, bucket_size=BIG, restore_rate=BIG)
    server = shop.start()
    rss_empty = _rss_mb()
    now = shop.store.clock()  # (about) the `now` the catalog is seeded at: the newest product's time
    started = time.perf_counter()
    summary = shop.seed_catalog(products, images, seed=1, spread_seconds=spread)
    took = time.perf_counter() - started
    answers.put(
        {
            "url": shop.shop_url,
            "seed_seconds": took,
            "rss_empty": rss_empty,
            "rss_seeded": _rss_mb(),
            "now": now,
            **summary,
        }
    )
    stop.wait()
    server.stop()


def _query() -> str:
    from retouch.plugin.shopify.operations import operation

    return operation("ProductsPage")


CAP_PROBE = """query Probe($after: String) {
  products(first: 250, after: $after, sortKey: UPDATED_AT) { pageInfo { hasNextPage endCursor } nodes { id } }
}"""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--page", type=int, default=50, help="products per page (cost 2 + 16 x page must be <= 1000)")
    parser.add_argument("--images-fetched", type=int, default=30)
    args = parser.parse_args()
    spread = 2.0 * args.products  # one product every 2 s: updated_at windows can split the catalog

    context = mp.get_context("spawn")
    answers, stop = context.Queue(), context.Event()
    child = context.Process(target=_serve, args=(args.products, args.images, spread, answers, stop), daemon=True)
    child.start()
    try:
        info = answers.get(timeout=600)
        print(
            f"seeded {info['products']:,} products / {info['media']:,} media in {info['seed_seconds']:.1f} s; "
            f"sandbox RSS {info['rss_empty']:.0f} MB empty -> {info['rss_seeded']:.0f} MB seeded"
        )
        endpoint = f"{info['url']}/admin/api/2026-07/graphql.json"
        headers = {"X-Shopify-Access-Token": TOKEN}
        query = _query()
        with httpx.Client(headers=headers, timeout=120) as client:

            def post(document: str, variables: dict) -> dict:
                answer = client.post(endpoint, json={"query": document, "variables": variables})
                answer.raise_for_status()
                return answer.json()

            # A full discovery, one updated_at window (at most CAP products) after another.
            newest = info["now"]
            oldest = newest - spread
            windows = max(1, -(-args.products // (CAP * 4 // 5)))  # 20,000 products a window
            edges = [oldest + (newest + 1 - oldest) * i / windows for i in range(windows + 1)]
            seen_products = seen_media = requests = 0
            started = time.perf_counter()
            for number, (low, high) in enumerate(zip(edges, edges[1:])):  # the outer windows are open-ended
                terms = ([] if number == 0 else [f"updated_at:>='{_iso(low)}'"]) + (
                    [] if number == windows - 1 else [f"updated_at:<'{_iso(high)}'"]
                )
                search = " AND ".join(terms) or None
                after = None
                while True:
                    body = post(query, {"first": args.page, "after": after, "query": search, "mediaFirst": 3})
                    requests += 1
                    if body.get("errors"):
                        raise SystemExit(f"discovery failed: {json.dumps(body['errors'])[:500]}")
                    connection = body["data"]["products"]
                    seen_products += len(connection["nodes"])
                    seen_media += sum(len(n["media"]["nodes"]) for n in connection["nodes"])
                    if not connection["pageInfo"]["hasNextPage"]:
                        break
                    after = connection["pageInfo"]["endCursor"]
            took = time.perf_counter() - started
            cost = body["extensions"]["cost"]["requestedQueryCost"]
            print(
                f"paged discovery: {seen_products:,} products / {seen_media:,} media in {took:.1f} s over "
                f"{windows} updated_at windows, {requests:,} requests of {args.page} products "
                f"(requested cost {cost}): {seen_products / took:,.0f} products/s, {seen_media / took:,.0f} media/s, "
                f"{1000 * took / requests:.1f} ms/request"
            )
            if seen_products != info["products"]:
                raise SystemExit(f"discovery saw {seen_products} products, the shop holds {info['products']}")

            # Past the cap: unfiltered, cheap pages of 250 until the sandbox refuses.
            after, depth, probe_started, refusal = None, 0, time.perf_counter(), None
            while True:
                body = post(CAP_PROBE, {"after": after})
                if body.get("errors"):
                    refusal = body
                    break
                connection = body["data"]["products"]
                depth += len(connection["nodes"])
                if not connection["pageInfo"]["hasNextPage"]:
                    break
                after = connection["pageInfo"]["endCursor"]
            probe_took = time.perf_counter() - probe_started
            if refusal is None:
                print(f"unfiltered paging reached the end ({depth:,} products) without a refusal")
            else:
                print(
                    f"unfiltered paging got {depth:,} products ({probe_took:.1f} s), then the page past "
                    f"{CAP:,}: {json.dumps({k: refusal[k] for k in ('errors', 'data')})}"
                )

            # Seeded images are drawn when the CDN is asked for them.
            probe = post(
                "query($q: String) { products(first: 10, query: $q, sortKey: UPDATED_AT) { nodes { "
                "media(first: 3) { nodes { ... on MediaImage { image { url } } } } } } }",
                {"q": None},
            )
            urls = [m["image"]["url"] for n in probe["data"]["products"]["nodes"] for m in n["media"]["nodes"]]
            urls = (urls * (1 + args.images_fetched // max(1, len(urls))))[: args.images_fetched]
            fetched_started = time.perf_counter()
            sizes = [len(client.get(url).content) for url in urls]
            fetched_took = time.perf_counter() - fetched_started
            distinct = len(set(urls))
            print(
                f"CDN: {len(urls)} image downloads ({distinct} distinct seeded photos drawn on request, the rest from "
                f"the LRU) in {fetched_took:.2f} s, {sum(sizes) / max(1, len(sizes)) / 1024:.0f} kB average"
            )
        rss_after = _rss_mb(child.pid)
        print(f"sandbox RSS after paging and downloads: {rss_after:.0f} MB")
        command = command_line(
            "bench/shopify_sandbox_scale.py", "--products", args.products, "--images", args.images, "--page", args.page
        )
        catalog = f"{args.products:,} products / {args.products * args.images:,} media"
        emit(
            [
                Row("Shopify sandbox at scale", f"seed time, {catalog}", info["seed_seconds"], "s", command=command),
                Row(
                    "Shopify sandbox at scale",
                    f"sandbox RSS seeded, {catalog}",
                    info["rss_seeded"],
                    "MB",
                    limit=400,
                    limit_kind="ceiling",
                    target="< 400 MB",
                    met=info["rss_seeded"] < 400,
                    command=command,
                ),
                Row(
                    "Shopify sandbox at scale",
                    f"sandbox RSS after paging, {catalog}",
                    rss_after,
                    "MB",
                    limit=400,
                    limit_kind="ceiling",
                    target="< 400 MB",
                    met=rss_after < 400,
                    command=command,
                ),
                Row(
                    "Shopify sandbox at scale",
                    f"paged discovery throughput, {args.page} products/page",
                    seen_products / took,
                    "products/s",
                    command=command,
                ),
            ]
        )
    finally:
        stop.set()
        child.join(timeout=30)
        if child.is_alive():
            child.terminate()


if __name__ == "__main__":
    main()
