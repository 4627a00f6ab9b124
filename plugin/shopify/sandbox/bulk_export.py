"""Running a bulk query against the store: the snapshot when an operation starts, and its JSONL file.

`run_query` is `bulkOperationRunQuery`: the validators (`bulk_query.check`), the concurrency
limit, then the root objects of the query's root connection are listed (resolved by the same
code as the ordinary connection, so `query:`/`sortKey:` mean the same) and counted with their
nested objects, and the operation is recorded (`bulk.BulkOperations.create`).

`lines` makes the file: the query's `node` selection is executed with the sandbox's own schema
and resolvers for a batch of roots at a time (`nodes(ids:)`), each root and each node of a
nested connection becomes one JSON line, a nested one with `__parentId` (its parent's id, last),
as Shopify writes them. Nothing holds the whole file: a generator makes it batch by batch, taking
the store lock for each batch only, so a 100,000-product catalog streams in constant memory.
Objects deleted since the operation started are left out; the others show their state when
the file is read (Shopify's file is frozen when the operation completes: a simplification).

With `BulkSettings.any_order_seed` (and `groupObjects: false`, what Shopify documents as "any
order"), each batch's lines are shuffled and some are held back for a later batch, so a child
may come before its parent or after other parents.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from functools import lru_cache
from typing import Any

import structlog
from graphql import DocumentNode, GraphQLError, GraphQLSchema, execute_sync, parse, print_ast
from graphql.execution.values import get_argument_values

from . import bulk_query
from .bulk import BulkOperation
from .store import Store

log = structlog.get_logger(__name__)

BATCH_ROOTS = 50  # roots executed per batch: the lock is held for one batch at a time
CHUNK_BYTES = 32 * 1024  # lines are sent in chunks of about this size

# The root connections a bulk query may run over: field -> (context, arguments) -> root objects,
# in order. Given by graphql_api, which owns what those connections mean.
RootFinder = Callable[[Any, dict[str, Any]], list[Any]]

# How many nodes a nested connection holds, without executing it: (node type, field) -> count.
NESTED_COUNTS: dict[tuple[str, str], Callable[[Store, Any], int]] = {
    ("Product", "media"): lambda store, product: len(store.product_media(product)),
}


def run_query(
    store: Store,
    ctx: Any,
    schema: GraphQLSchema,
    query: str,
    group_objects: bool,
    roots_of: dict[str, RootFinder],
    describe: Callable[[GraphQLError, DocumentNode], dict[str, Any]],
) -> dict[str, Any]:
    """bulkOperationRunQuery's payload."""
    errors = bulk_query.check(query, schema, describe)
    if errors:
        return {"bulkOperation": None, "userErrors": errors}
    refusal = store.bulk.refusal(ctx.now)
    if refusal is not None:
        return {"bulkOperation": None, "userErrors": [refusal]}
    plan = bulk_query.plan(query, schema)
    name = plan.root.field.name.value
    if name not in roots_of:  # no capture: a connection the sandbox has but cannot run in bulk
        return {
            "bulkOperation": None,
            "userErrors": [
                {
                    "field": ["query"],
                    "message": f"Invalid bulk query: the sandbox cannot run '{name}' in bulk",
                    "code": bulk_query.INVALID,
                }
            ],
        }
    arguments = get_argument_values(schema.query_type.fields[name], plan.root.field, {})  # type: ignore[union-attr, arg-type]  # the schema has a query root; no variables
    roots = roots_of[name](ctx, arguments)
    counters = [NESTED_COUNTS.get((plan.root.node_type.name, c.field.name.value)) for c in plan.root.children]
    nested = sum(count(store, root) for root in roots for count in counters if count is not None)
    op = store.bulk.create(
        query, group_objects, [root.gid for root in roots], len(roots) + nested, ctx.now, store.faults.take_bulk()
    )
    log.info(
        "bulk_operation_created",
        id=op.id,
        roots=len(roots),
        objects=op.object_count,
        error_code=op.error_code,
        partial=op.partial,
    )
    return {"bulkOperation": op, "userErrors": []}


@lru_cache(maxsize=64)
def _batch_document(query: str, schema: GraphQLSchema) -> tuple[DocumentNode, bulk_query.Plan]:
    """`nodes(ids: $ids) { ... on <node type> <the query's node selection> }` and the query's fragments."""
    plan = bulk_query.plan(query, schema)
    type_name = plan.root.node_type.name
    selections = " ".join(
        f"... on {type_name} {print_ast(node.selection_set)}"
        for node in plan.root.nodes
        if node.selection_set is not None
    )
    fragments = "\n".join(print_ast(f) for f in plan.fragments)
    text = f"query BulkBatch($ids: [ID!]!) {{ nodes(ids: $ids) {{ {selections or '__typename'} }} }}\n{fragments}"
    return parse(text), plan


def _flatten(
    obj: dict[str, Any], connections: Iterable[bulk_query.Connection], parent_id: str | None
) -> Iterator[dict[str, Any]]:
    """The lines of one object: itself without its nested connections, then their nodes."""
    children = []
    for connection in connections:
        value = obj.pop(connection.key, None) or {}
        children += [
            (edge["node"], connection.children)
            for edge in value.get("edges") or ()
            if edge and edge.get("node") is not None
        ]
    yield obj if parent_id is None else {**obj, "__parentId": parent_id}
    for child, nested in children:
        yield from _flatten(child, nested, obj.get("id"))


def lines(
    store: Store,
    schema: GraphQLSchema,
    ctx: Any,
    op: BulkOperation,
    *,
    locked: bool = False,
    any_order_seed: int | None = None,
) -> Iterator[bytes]:
    """The JSON lines of `op`'s file, one root batch at a time. `locked`: take the store lock for
    each batch (the caller does not hold it); `any_order_seed`: shuffle (see the module docstring)."""
    document, plan = _batch_document(op.query, schema)
    rng = random.Random(any_order_seed * 1_000_003 + op.id) if any_order_seed is not None else None
    roots = op.data_roots()
    held: list[bytes] = []
    for start in range(0, len(roots), BATCH_ROOTS):
        with store.lock if locked else nullcontext():
            now = store.clock()
            store.settle(now)
            result = execute_sync(
                schema,
                document,
                context_value=dataclasses.replace(ctx, now=now),
                variable_values={"ids": roots[start : start + BATCH_ROOTS]},
            )
        for error in result.errors or ():
            log.error("bulk_line_failed", id=op.id, error=error.message)
        batch = [
            json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
            for obj in (result.data or {}).get("nodes") or ()
            if obj is not None
            for line in _flatten(obj, plan.root.children, None)
        ]
        if rng is not None:
            batch = held + batch
            rng.shuffle(batch)
            held, batch = batch[: len(batch) // 4], batch[len(batch) // 4 :]
        yield from batch
    yield from held


def chunked(source: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Lines joined into chunks of about `size` bytes (one write each, not one per line)."""
    pending: list[bytes] = []
    length = 0
    for line in source:
        pending.append(line)
        length += len(line)
        if length >= size:
            yield b"".join(pending)
            pending, length = [], 0
    if pending:
        yield b"".join(pending)


def cut_midway(source: Iterable[bytes], keep: int) -> Iterator[bytes]:
    """The first `keep` lines, then the first half of the next one: a download cut off mid-stream."""
    for index, line in enumerate(source):
        if index >= keep:
            yield line[: max(1, len(line) // 2)]
            return
        yield line


def file_size(store: Store, schema: GraphQLSchema, ctx: Any, op: BulkOperation) -> int:
    """`fileSize`: the bytes of the file, counted once by making it (caller holds the lock)."""
    if op.file_size is None:
        op.file_size = sum(len(line) for line in lines(store, schema, ctx, op))
    return op.file_size
