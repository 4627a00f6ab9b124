"""Catalog-scale discovery: one Shopify bulk export instead of thousands of pages.

`export` starts the export (or resumes the one this database started before a restart: its id
is kept in the meta table), polls it until it ends, and streams its JSONL into the `bulkline`
staging table in batches of `BATCH` lines. `BulkRead.products()` then reads the staged lines back a
chunk of products at a time, each with its media in line order (= position order), so memory
holds a batch or a chunk, never the catalog; discovery feeds them to the same per-product code as
the paged path. What to do after each answer is decided in `sync/bulk_decisions.py`.

Positions: no Media field says where a media stands, so a product's media are taken in line
order — the order Shopify writes a connection (sortKey: POSITION). Lines of different objects come
in any order; should siblings ever come shuffled too (the sandbox's any-order mode does that), the
recorded `Image.position` is off, nothing else: it is informational (nothing reads it to write).

Cancelled while the export runs (the daemon stops, Ctrl-C on resync): the export is cancelled at
Shopify, best effort within `CANCEL_TIMEOUT`, and forgotten. Cancelled after it completed: it is
kept, and the next pass reads its results (they stay seven days) instead of exporting again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from retouch.plugin.shopify.errors import ShopifyError, ShopifyResponseError, ShopifyUserError
from retouch.plugin.shopify.models import BulkOperation, Product, parse_product

from ..bulk_decisions import Next, after_poll, in_progress_wait, next_poll_in
from .context import Context

BULK_OPERATION = "bulk_operation_id"  # meta: the export this database started and has not read yet
BATCH = 500  # JSONL lines per staging transaction
PRODUCTS_PER_READ = 100  # products read back from staging per query
DOWNLOAD_TRIES = 3  # a cut-off download is started over this many times, then read as partial
CANCEL_TIMEOUT = 1.5  # seconds for the best-effort cancel when stopping (the daemon waits 2 s)
GONE = (403, 404, 410)  # what a results URL past its signature's expiry answers

Sleep = Callable[[float], Awaitable[object]]
_sleep: Sleep = asyncio.sleep  # (tests replace it: the waits are seconds to minutes)


def _is_collection(line: dict) -> bool:
    return str(line.get("id", "")).startswith("gid://shopify/Collection/")


@dataclass
class BulkRead:
    """A staged export. `complete` turns False when the data is partial (a FAILED export's
    partial data, a download that kept being cut off, a line that does not parse); `reason` says why."""

    operation: BulkOperation
    complete: bool
    reason: str | None = None
    ctx: Context | None = field(default=None, repr=False)

    def products(self) -> Iterator[Product]:
        assert self.ctx is not None
        store, after = self.ctx.store, 0
        while parents := store.staged_parents(after, PRODUCTS_PER_READ):
            children = store.staged_children([object_id for _, object_id, _ in parents])
            for _line, object_id, payload in parents:
                try:
                    node = json.loads(payload)
                    lines = [json.loads(child) for child in children[object_id]]
                    # A product's nested lines: its media, and the collections it belongs to ([[rules]]).
                    node["collections"] = {"nodes": [c for c in lines if _is_collection(c)]}
                    node["media"] = {"nodes": [m for m in lines if not _is_collection(m)]}
                    product = parse_product(node)
                except (KeyError, TypeError, ValueError) as exc:
                    self.complete, self.reason = False, "bad_line"
                    self.ctx.log.warning("bulk_line_unusable", object_id=object_id, problem=type(exc).__name__)
                    continue
                yield product
            after = parents[-1][0]

    def finish(self) -> None:
        """The lines are processed: empty the staging table and forget the export."""
        assert self.ctx is not None
        self.ctx.store.clear_bulk_lines()
        self.ctx.store.delete_meta(BULK_OPERATION)


async def export(ctx: Context, *, products: int | None = None, sleep: Sleep | None = None) -> BulkRead | None:
    """Run (or resume) the export of every product and stage its lines; None: page instead.
    `products`: how many the store has (productsCount), for aiming the polls at the export's end."""
    sleep = sleep or _sleep
    operation_id = ctx.store.get_meta(BULK_OPERATION)
    if operation_id:
        ctx.log.info("bulk_resumed", operation_id=operation_id)
    restarted = False
    running = operation_id is not None
    try:
        while True:
            if operation_id is None:
                started = await _start(ctx, sleep)
                if started is None:
                    return None
                operation_id = started.id
                ctx.store.set_meta(BULK_OPERATION, operation_id)
                running = True
                ctx.log.info("bulk_started", operation_id=operation_id)
            operation = await _wait(ctx, operation_id, sleep, products)
            running = False
            step = after_poll(operation)
            if step is Next.RESTART and not restarted:
                ctx.log.warning(
                    "bulk_results_gone",
                    operation_id=operation_id,
                    status=operation.status if operation else None,
                    then="a new export",
                )
                ctx.store.delete_meta(BULK_OPERATION)
                operation_id, restarted = None, True
                continue
            if step in (Next.READ, Next.READ_PARTIAL):
                assert operation is not None
                read = await _stage(ctx, operation, partial=step is Next.READ_PARTIAL)
                if read is not None:
                    return read
                if not restarted:
                    ctx.store.delete_meta(BULK_OPERATION)
                    operation_id, restarted = None, True
                    continue
            ctx.log.warning(
                "bulk_failed",
                operation_id=operation_id,
                status=operation.status if operation else None,
                error_code=operation.error_code if operation else None,
                then="paging",
            )
            ctx.store.delete_meta(BULK_OPERATION)
            return None
    except asyncio.CancelledError:
        if running and operation_id is not None:
            await _cancel(ctx, operation_id)
        raise


async def _start(ctx: Context, sleep: Sleep) -> BulkOperation | None:
    tries = 0
    while True:
        try:
            return await ctx.shopify.start_bulk_products()
        except ShopifyUserError as exc:
            if "OPERATION_IN_PROGRESS" not in exc.codes:
                raise
            wait = in_progress_wait(tries)
            if wait is None:
                ctx.log.warning(
                    "bulk_busy",
                    tries=tries + 1,
                    then="paging",
                    note="the app already runs as many bulk queries as Shopify allows",
                )
                return None
            ctx.log.info("bulk_busy", wait=wait, try_=tries + 1)
            await sleep(wait)
            tries += 1


async def _wait(ctx: Context, operation_id: str, sleep: Sleep, products: int | None) -> BulkOperation | None:
    polls, since = 0, ctx.clock()
    while True:
        operation = await ctx.shopify.bulk_operation(operation_id)
        if after_poll(operation) is not Next.WAIT:
            ctx.log.info("bulk_polled", operation_id=operation_id, polls=polls + 1)
            return operation
        assert operation is not None
        if operation.status == "CREATED" or operation.root_object_count == 0:
            since = ctx.clock()  # the pace is measured from when it started exporting
        await sleep(
            next_poll_in(
                polls, running_for=ctx.clock() - since, roots_done=operation.root_object_count, roots_total=products
            )
        )
        polls += 1
        if polls % 10 == 0:
            ctx.log.info(
                "bulk_running", operation_id=operation_id, status=operation.status, objects=operation.object_count
            )


async def _stage(ctx: Context, operation: BulkOperation, *, partial: bool) -> BulkRead | None:
    """Stream the result into the staging table; None when its URL is gone (expired)."""
    url = operation.partial_data_url if partial else operation.url
    reason = operation.error_code or operation.status.lower() if partial else None
    read = BulkRead(operation, complete=not partial, reason=reason, ctx=ctx)
    if partial:
        ctx.log.warning(
            "bulk_partial",
            operation_id=operation.id,
            status=operation.status,
            error_code=operation.error_code,
            note="what arrived is read; the cursor stays",
        )
    store = ctx.store
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        store.clear_bulk_lines()
        if url is None:  # COMPLETED without a file: nothing matched
            return read
        batch: list[tuple[str, str | None, str]] = []
        try:
            async for line in ctx.shopify.iter_jsonl(url):
                object_id = line.get("id")
                if not isinstance(object_id, str):
                    read.complete, read.reason = False, "bad_line"
                    continue
                parent = line.pop("__parentId", None)
                batch.append((object_id, parent if isinstance(parent, str) else None, json.dumps(line)))
                if len(batch) >= BATCH:
                    store.stage_bulk_lines(batch)
                    batch = []
            store.stage_bulk_lines(batch)
            ctx.log.info("bulk_staged", operation_id=operation.id, lines=store.staged_line_count())
            return read
        except ShopifyResponseError as exc:
            store.stage_bulk_lines(batch)  # good lines before the cut count if this was the last try
            if exc.status in GONE:
                ctx.log.warning("bulk_results_gone", operation_id=operation.id, status=exc.status)
                store.clear_bulk_lines()
                return None
            ctx.log.warning("bulk_download_cut", operation_id=operation.id, attempt=attempt, reason=str(exc)[:200])
    read.complete, read.reason = False, "download_cut"
    return read


async def _cancel(ctx: Context, operation_id: str) -> None:
    """Best effort: a stopping daemon does not wait on Shopify for long."""
    try:
        await asyncio.wait_for(ctx.shopify.cancel_bulk_operation(operation_id), CANCEL_TIMEOUT)
        ctx.log.info("bulk_cancelled", operation_id=operation_id)
    except (ShopifyError, TimeoutError, asyncio.CancelledError) as exc:
        ctx.log.warning("bulk_cancel_failed", operation_id=operation_id, reason=type(exc).__name__)
    ctx.store.delete_meta(BULK_OPERATION)
