"""The Shopify cost pacer over a whole paged discovery of a large sandbox catalog (not a test).

    .venv/bin/python bench/shopify_pacer.py [--products 3000] [--restore-rate 100] [--bucket 2000]

Prints the THROTTLED answers the sandbox gave (target: zero) and the average spend in points per
second against the restore rate (target: at least 80%). Past 25,000 products the reading crosses
Shopify's pagination cap (a new `updated_at` range where it got to). The catalog's products are
spread over its history (one every 2 s), as in a store built up over time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import structlog
from harness import Row, command_line, emit

from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.sandbox import ShopifySandbox

TOKEN = "shpat_bench_token_1234"


async def discover_all(shop_url: str) -> tuple[int, float, object]:
    async with ShopifyClient(shop_url, TOKEN, "2026-07") as client:
        started = time.perf_counter()
        products = 0
        async for _ in client.iter_products(updated_since=None):
            products += 1
        return products, time.perf_counter() - started, client.stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--restore-rate", type=float, default=100.0)
    parser.add_argument("--bucket", type=float, default=2000.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    shop = ShopifySandbox(access_token=TOKEN, bucket_size=args.bucket, restore_rate=args.restore_rate)
    server = shop.start()
    try:
        shop.seed_catalog(args.products, 2, seed=1, spread_seconds=2.0 * args.products)
        products, took, stats = asyncio.run(discover_all(shop.shop_url))
        sandbox = shop.stats()
        spend = stats.points_spent / took
        print(
            f"paged discovery of {products} products (2 images each), bucket {args.bucket:.0f}, restore "
            f"{args.restore_rate:.0f}/s: {took:.1f} s, {stats.requests} requests, THROTTLED answers "
            f"{sandbox['throttled']}, spend {spend:.1f} points/s = {100 * spend / args.restore_rate:.0f}% of "
            f"the restore rate (the bucket starts full)"
        )
        command = command_line(
            "bench/shopify_pacer.py",
            "--products",
            args.products,
            "--restore-rate",
            f"{args.restore_rate:g}",
            "--bucket",
            f"{args.bucket:g}",
        )
        share = spend / args.restore_rate
        emit(
            [
                Row(
                    "Shopify discovery (paged)",
                    f"THROTTLED answers, {products:,} products",
                    sandbox["throttled"],
                    "",
                    target="0",
                    met=sandbox["throttled"] == 0,
                    command=command,
                ),
                Row(
                    "Shopify discovery (paged)",
                    f"average spend, {products:,} products (bucket starts full)",
                    spend,
                    "points/s",
                    limit=args.restore_rate,
                    target=">= 80% of the restore rate",
                    met=share >= 0.8,
                    command=command,
                ),
            ]
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
