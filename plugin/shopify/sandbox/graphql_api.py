"""The Admin GraphQL endpoint: the subset schema (`schema.graphql`) executed with graphql-core.

`GraphQLService.handle(body, base_url, bases)` answers one POSTed `{query, variables, operationName}` the
way Shopify does, in this order: injected HTTP fault -> syntax/validation errors -> pagination
limits -> MAX_COST_EXCEEDED -> THROTTLED (bucket) -> execution with `extensions.cost`. It holds
the store lock for the whole request (resolvers are synchronous and run in a worker thread).

Shapes taken from Shopify (captures and docs): validation errors ("Field 'x' doesn't exist on type
'Y'", code undefinedField, media-staged-uploads-create-user-errors-shape.json) and MAX_COST_EXCEEDED
come without `extensions.cost`; THROTTLED comes with it, `actualQueryCost: null`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import structlog
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    Visitor,
    build_schema,
    execute_sync,
    parse,
    validate,
    visit,
)
from graphql.error import GraphQLSyntaxError

from ...sandbox_kit.faults import answer_for as transport_answer
from . import bulk_export, lifecycle, profiles, search
from .bulk import COMPLETED, EXPIRED, FAILED, BulkOperation
from .catalog import TIME_FIELDS, product_sort
from .catalog import db_time as _db_time
from .catalog import parse_db_time as _parse_db_time
from .cost import MAX_QUERY_COST, ActualCost, analyze
from .faults import answer_for
from .model import Collection, Media, Metafield, Product, ReorderJob, gid, iso, parse_gid
from .paging import InvalidCursor, Page, PaginationLimit, SortSpec, paginate, paginate_sorted
from .store import SHOP_NUMERIC_ID, Store

log = structlog.get_logger(__name__)

RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
LIMITS_DOC = "https://shopify.dev/docs/api/usage/limits#pagination-limits"


@dataclass
class Context:
    store: Store
    now: float
    base_url: str
    bases: tuple[str, ...]  # every base URL that designates this sandbox (for own-URL sources)


# ---------------------------------------------------------------------- sort orders


_product_sort = product_sort  # the product orders live in catalog.py, kept sorted by the store


def _media_sort(sort_key: str, positions: dict[int, int]) -> SortSpec[Media]:
    if sort_key == "ID":
        return SortSpec(lambda m: m.id, lambda m: m.id, lambda m: str(m.id), int)
    # Shopify's media cursors carry the one-based position (media-file-mutation-first-lifecycle.json).
    return SortSpec(lambda m: m.id, lambda m: positions[m.id], lambda m: str(positions[m.id] + 1), lambda v: int(v) - 1)


def _pagination_limit(cap: int) -> GraphQLError:
    """Paging past the cap. Assumed shape (see paging.py: Shopify documents the cap and, for the
    Storefront API, that such queries "return an error", but no capture shows the error): a
    top-level error on the connection's path (so `data` is null: the connections are non-null),
    worded like the sandbox's other connection-limit error, with Shopify's generic BAD_REQUEST code."""
    return GraphQLError(
        f"The connection cannot be paginated beyond its first {cap} records. Use filters (for example "
        "an updated_at range) to narrow the results.",
        extensions={"code": "BAD_REQUEST", "documentation": LIMITS_DOC},
    )


def _page(items: list[Any], sort: SortSpec[Any], cap: int | None = None, **window: Any) -> dict[str, Any]:
    try:
        return paginate(items, sort, cap=cap, **window).as_connection()
    except InvalidCursor:
        raise GraphQLError("Invalid cursor for current pagination sort.") from None  # no capture
    except PaginationLimit as exc:
        raise _pagination_limit(exc.cap) from None


# ---------------------------------------------------------------------- resolvers


def _ctx(info: Any) -> Context:
    return info.context


def _checked_gid(value: str) -> str:
    if parse_gid(value) is None and not value.startswith("gid://shopify/Job/"):
        raise GraphQLError(
            f"Invalid global id '{value}'",
            extensions={"code": "argumentLiteralsIncompatible", "typeName": "CoercionError"},
        )
    return value


def resolve_shop(_root: Any, info: Any) -> dict[str, Any]:
    store = _ctx(info).store
    return {
        "id": gid("Shop", SHOP_NUMERIC_ID),
        "name": store.shop_name,
        "myshopifyDomain": f"{store.shop_name}.myshopify.com",
        # graphql-core calls a callable dict value with the field's arguments.
        "metafield": lambda _info, key, namespace=None: store.shop_metafields.get((store.namespace(namespace), key)),
    }


def _matching_products(ctx: Context, query: str | None) -> list[Product]:
    predicate = search.parse_query(query)
    return [p for p in ctx.store.products.values() if search.matches(predicate, p, ctx.now) and _indexed(ctx, query, p)]


def _indexed(ctx: Context, query: str | None, product: Product) -> bool:
    """A search (`query:`) sees a product only once the lagging search index has caught up (profiles.py)."""
    return not query or profiles.indexed(ctx.store, product, ctx.now)


def resolve_products(
    _root: Any,
    info: Any,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    sortKey: str = "ID",
    query: str | None = None,
) -> Any:
    """A page of the catalog from the store's sorted index of `sortKey`: a time filter on the sort
    field narrows it by bisection; other filters are tested on the products the page passes."""
    ctx = _ctx(info)
    store = ctx.store
    node = search.parse_query(query)
    index = store.orders.index(sortKey)
    span = None
    if sortKey in TIME_FIELDS:
        low, high, node = search.time_range(node, TIME_FIELDS[sortKey], ctx.now)
        span = index.span(None if low is None else (low,), None if high is None else (high,))
    now = ctx.now
    matches = None if node is None else (lambda product: search.matches(node, product, now))
    lagging = bool(query) and profiles.search_lags(store)
    if lagging:  # what a search sees changes as the index catches up: no remembered offsets
        matched = matches
        matches = lambda product: profiles.indexed(store, product, now) and (matched is None or matched(product))
    offset_key = (query, sortKey, bool(reverse))
    known = (
        store.offsets.get((*offset_key, after)) if matches is not None and after is not None and not lagging else None
    )
    try:
        page: Page[Product] = paginate_sorted(
            index,
            product_sort(sortKey),
            span=span,
            matches=matches,
            first=first,
            after=after,
            last=last,
            before=before,
            reverse=reverse,
            cap=store.pagination_cap,
            known_offset=known,
        )
    except InvalidCursor:
        raise GraphQLError("Invalid cursor for current pagination sort.") from None  # no capture
    except PaginationLimit as exc:
        raise _pagination_limit(exc.cap) from None
    if matches is not None and page.offset is not None and page.cursors and not lagging:
        store.offsets.put((*offset_key, page.cursors[-1]), page.offset + len(page.items))
    return page.as_connection()


def resolve_products_count(
    _root: Any, info: Any, query: str | None = None, limit: int | None = 10000
) -> dict[str, Any]:
    """Shopify counts up to `limit` (default 10,000; null: no limit) and says AT_LEAST above it
    (capture bulk-operation-run-query-group-objects.json: `{count: 1456, precision: EXACT}`)."""
    ctx = _ctx(info)
    predicate = search.parse_query(query)
    count = sum(
        1 for p in ctx.store.products.values() if search.matches(predicate, p, ctx.now) and _indexed(ctx, query, p)
    )
    if limit is not None and count > limit:
        return {"count": limit, "precision": "AT_LEAST"}
    return {"count": count, "precision": "EXACT"}


def _bulk_products(ctx: Context, args: dict[str, Any]) -> list[Product]:
    """The roots of a bulk `products(...)`: what the connection holds, in its order (a bulk query
    pages through everything, so `first`/`last` only cut it short when given)."""
    found = sorted(
        _matching_products(ctx, args.get("query")),
        key=_product_sort(args.get("sortKey", "ID")).key,
        reverse=bool(args.get("reverse")),
    )
    if args.get("first") is not None:
        found = found[: args["first"]]
    if args.get("last") is not None:
        found = found[-args["last"] :] if args["last"] else []
    return found


BULK_ROOTS: dict[str, bulk_export.RootFinder] = {"products": _bulk_products}


def resolve_webhook_subscriptions(
    _root: Any,
    info: Any,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    sortKey: str = "CREATED_AT",
    uri: str | None = None,
    topics: list[str] | None = None,
) -> Any:
    found = [
        s
        for s in _ctx(info).store.subscriptions.by_id.values()
        if (uri is None or s.uri == uri) and (topics is None or s.topic in topics)
    ]
    if sortKey == "ID":
        sort: SortSpec[Any] = SortSpec(lambda s: s.id, lambda s: s.id, lambda s: str(s.id), int)
    else:
        sort = SortSpec(lambda s: s.id, lambda s: int(s.created_at), lambda s: _db_time(s.created_at), _parse_db_time)
    return _page(
        found,
        sort,
        _ctx(info).store.pagination_cap,
        first=first,
        after=after,
        last=last,
        before=before,
        reverse=reverse,
    )


def resolve_product(_root: Any, info: Any, id: str) -> Product | None:
    return _ctx(info).store.product_by_gid(_checked_gid(id))


def resolve_node(_root: Any, info: Any, id: str) -> Any:
    return _ctx(info).store.node(_checked_gid(id))


def resolve_nodes(_root: Any, info: Any, ids: list[str]) -> list[Any]:
    store = _ctx(info).store
    return [store.node(_checked_gid(value)) for value in ids]


def resolve_job(_root: Any, info: Any, id: str) -> ReorderJob | None:
    return _ctx(info).store.job_by_gid(_checked_gid(id))


def resolve_bulk_operation(_root: Any, info: Any, id: str) -> BulkOperation | None:
    return _ctx(info).store.bulk.get(_checked_gid(id))


def resolve_product_media(
    product: Product,
    info: Any,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    sortKey: str = "POSITION",
) -> Any:
    store = _ctx(info).store
    media = store.product_media(product)
    positions = {m.id: i for i, m in enumerate(media)}
    return _page(
        media,
        _media_sort(sortKey, positions),
        store.pagination_cap,
        first=first,
        after=after,
        last=last,
        before=before,
        reverse=reverse,
    )


def resolve_product_collections(
    product: Product,
    info: Any,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
) -> Any:
    """The collections a product belongs to, by id (Shopify's default sortKey for this connection)."""
    store = _ctx(info).store
    collections = [store.collections[n] for n in product.collection_ids if n in store.collections]
    by_id: SortSpec[Any] = SortSpec(lambda c: c.id, lambda c: c.id, lambda c: str(c.id), int)
    return _page(
        sorted(collections, key=lambda c: c.id),
        by_id,
        store.pagination_cap,
        first=first,
        after=after,
        last=last,
        before=before,
        reverse=reverse,
    )


def resolve_metafield(product: Product, info: Any, key: str, namespace: str | None = None) -> Metafield | None:
    return product.metafields.get((_ctx(info).store.namespace(namespace), key))


def _image(media: Media, shown: Any, ctx: Context) -> dict[str, Any] | None:
    if shown is None:
        return None
    asset, version = shown
    return {
        "id": gid("ImageSource", media.id),
        "url": ctx.store.cdn_url(ctx.base_url, media, version),
        "width": asset.width,
        "height": asset.height,
        "altText": media.alt,
    }


def _media_image(media: Media, info: Any) -> dict[str, Any] | None:
    ctx = _ctx(info)
    return _image(media, lifecycle.visible_image(media, ctx.now, ctx.store.processing_seconds), ctx)


def _media_preview(media: Media, info: Any) -> dict[str, Any]:
    ctx = _ctx(info)
    p = ctx.store.processing_seconds
    shown = lifecycle.preview_image(media, ctx.now, p)
    status = lifecycle.READY if shown is not None else lifecycle.media_status(media, ctx.now, p)
    return {"status": status, "image": _image(media, shown, ctx)}


def _media_errors(media: Media, info: Any) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    fail = lifecycle.media_failure(media, ctx.now, ctx.store.processing_seconds)
    return [{"code": fail.code, "message": fail.message, "details": fail.details}] if fail else []


MEDIA_IMAGE_FIELDS = {
    "id": lambda m, _i: m.gid,
    "alt": lambda m, _i: m.alt,
    "mediaContentType": lambda m, _i: "IMAGE",
    "status": lambda m, i: lifecycle.media_status(m, _ctx(i).now, _ctx(i).store.processing_seconds),
    "fileStatus": lambda m, i: lifecycle.file_status(m, _ctx(i).now, _ctx(i).store.processing_seconds),
    "mimeType": lambda m, _i: m.ready.mime_type if m.ready else None,
    "createdAt": lambda m, _i: iso(m.created_at),
    "updatedAt": lambda m, _i: iso(m.updated_at),
    "image": _media_image,
    "preview": _media_preview,
    "originalSource": lambda m, _i: {"url": m.source_url, "fileSize": m.source_size},
    "mediaErrors": _media_errors,
}

PRODUCT_FIELDS = {
    "id": lambda p, _i: p.gid,
    "legacyResourceId": lambda p, _i: str(p.id),
    "title": lambda p, _i: p.title,
    "tags": lambda p, _i: list(p.tags),
    "productType": lambda p, _i: p.product_type,
    "vendor": lambda p, _i: p.vendor,
    "status": lambda p, _i: p.status,
    "collections": resolve_product_collections,
    "createdAt": lambda p, _i: iso(p.created_at),
    "updatedAt": lambda p, _i: iso(p.updated_at),
    "media": resolve_product_media,
    "metafield": resolve_metafield,
}

COLLECTION_FIELDS = {"id": lambda c, _i: c.gid, "handle": lambda c, _i: c.handle, "title": lambda c, _i: c.title}

METAFIELD_FIELDS = {
    "id": lambda m, _i: m.gid,
    "namespace": lambda m, _i: m.namespace,
    "key": lambda m, _i: m.key,
    "type": lambda m, _i: m.type,
    "value": lambda m, _i: m.value,
    "compareDigest": lambda m, _i: m.compare_digest,
    "createdAt": lambda m, _i: iso(m.created_at),
    "updatedAt": lambda m, _i: iso(m.updated_at),
}

SUBSCRIPTION_FIELDS = {
    "id": lambda s, _i: s.gid,
    "topic": lambda s, _i: s.topic,
    "uri": lambda s, _i: s.uri,
    "createdAt": lambda s, _i: iso(s.created_at),
    "updatedAt": lambda s, _i: iso(s.updated_at),
}


def _bulk_status(op: BulkOperation, info: Any) -> str:
    return op.status(_ctx(info).now)


def _bulk_url(op: BulkOperation, info: Any, partial: bool) -> str | None:
    """`url` (partial False) or `partialDataUrl`: the file on the sandbox's own server, while readable."""
    ctx = _ctx(info)
    if not op.readable(ctx.now) or op.partial != partial:
        return None
    return f"{ctx.base_url}/_bulk/{op.key}.jsonl?Expires={int(op.expires_at)}"


def _bulk_file_size(op: BulkOperation, info: Any) -> str | None:
    ctx = _ctx(info)
    if op.status(ctx.now) != COMPLETED:
        return None
    return str(bulk_export.file_size(ctx.store, info.schema, ctx, op))


BULK_OPERATION_FIELDS = {
    "id": lambda op, _i: op.gid,
    "status": _bulk_status,
    "type": lambda _op, _i: "QUERY",
    "errorCode": lambda op, i: op.error_code if _bulk_status(op, i) == FAILED else None,
    "createdAt": lambda op, _i: iso(op.created_at),
    "completedAt": lambda op, i: iso(op.done_at) if _bulk_status(op, i) in (COMPLETED, FAILED, EXPIRED) else None,
    "objectCount": lambda op, i: str(op.counts(_ctx(i).now)[0]),
    "rootObjectCount": lambda op, i: str(op.counts(_ctx(i).now)[1]),
    "fileSize": _bulk_file_size,
    "url": lambda op, i: _bulk_url(op, i, partial=False),
    "partialDataUrl": lambda op, i: _bulk_url(op, i, partial=True),
    "query": lambda op, _i: op.query,
}

JOB_FIELDS = {
    "id": lambda j, _i: j.gid,
    "done": lambda j, i: _ctx(i).now >= j.due_at,
}


MUTATIONS: dict[str, Any] = {  # Mutation field -> (store, context, arguments) -> payload
    "stagedUploadsCreate": lambda store, ctx, a: store.staged_uploads_create(a["input"], ctx.base_url, ctx.now),
    "fileUpdate": lambda store, ctx, a: store.file_update(a["files"], ctx.bases, ctx.now),
    "productUpdate": lambda store, ctx, a: store.product_update(a.get("product"), a.get("media"), ctx.bases, ctx.now),
    "productReorderMedia": lambda store, ctx, a: store.product_reorder_media(a["id"], a["moves"], ctx.now),
    "metafieldsSet": lambda store, ctx, a: store.metafields_set(a["metafields"], ctx.now),
    "fileDelete": lambda store, ctx, a: store.file_delete(a["fileIds"], ctx.now),
    "webhookSubscriptionCreate": lambda store, ctx, a: profiles.webhook_subscription_create(
        store, a["topic"], a["webhookSubscription"], ctx.now
    ),
    "webhookSubscriptionDelete": lambda store, ctx, a: store.subscriptions.delete(a["id"]),
    "bulkOperationRunQuery": lambda store, ctx, a: bulk_export.run_query(
        store,
        ctx,
        sandbox_schema(),  # type: ignore[has-type]  # a cached function, defined below
        a["query"],
        a["groupObjects"],
        BULK_ROOTS,
        shopify_validation_error,
    ),
    "bulkOperationCancel": lambda store, ctx, a: store.bulk.cancel(a["id"], ctx.now),
}


def _mutation(name: str) -> Any:
    def resolve(_root: Any, info: Any, **args: Any) -> Any:
        ctx = _ctx(info)
        return MUTATIONS[name](ctx.store, ctx, args)

    return resolve


def _resolve_type(value: Any, *_args: Any) -> str:
    if isinstance(value, Product):
        return "Product"
    if isinstance(value, Media):
        return "MediaImage"
    if isinstance(value, Metafield):
        return "Metafield"
    if isinstance(value, BulkOperation):
        return "BulkOperation"
    if isinstance(value, Collection):
        return "Collection"
    return "Shop"


@cache
def sandbox_schema() -> GraphQLSchema:
    """The subset schema with the sandbox's resolvers attached (built once per process)."""
    sdl = (resources.files(__package__) / "schema.graphql").read_text(encoding="utf-8")
    schema = build_schema(sdl)
    query = schema.type_map["QueryRoot"].fields  # type: ignore[attr-defined]  # an object type
    for name, resolver in {
        "shop": resolve_shop,
        "products": resolve_products,
        "product": resolve_product,
        "productsCount": resolve_products_count,
        "node": resolve_node,
        "nodes": resolve_nodes,
        "job": resolve_job,
        "webhookSubscriptions": resolve_webhook_subscriptions,
        "bulkOperation": resolve_bulk_operation,
    }.items():
        query[name].resolve = resolver
    for name, field_def in schema.type_map["Mutation"].fields.items():  # type: ignore[attr-defined]  # an object type
        field_def.resolve = _mutation(name)
    for type_name, resolvers in {
        "Product": PRODUCT_FIELDS,
        "MediaImage": MEDIA_IMAGE_FIELDS,
        "Collection": COLLECTION_FIELDS,
        "Metafield": METAFIELD_FIELDS,
        "Job": JOB_FIELDS,
        "WebhookSubscription": SUBSCRIPTION_FIELDS,
        "BulkOperation": BULK_OPERATION_FIELDS,
    }.items():
        fields = schema.type_map[type_name].fields  # type: ignore[attr-defined]  # object types
        for name, resolver in resolvers.items():  # type: ignore[attr-defined]  # each a dict of resolvers
            fields[name].resolve = resolver
    for interface in ("Node", "Media", "File"):
        schema.type_map[interface].resolve_type = _resolve_type  # type: ignore[attr-defined]  # interfaces
    return schema


# ---------------------------------------------------------------------- errors


class _FieldPaths(Visitor):
    """Finds the path Shopify reports for a field node: ["query Name", "field", "subfield", ...]."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.target = target
        self.stack: list[str] = []
        self.found: list[str] | None = None

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        self.stack.append(f"{node.operation.value} {node.name.value}" if node.name else node.operation.value)

    def enter_fragment_definition(self, node: Any, *_: Any) -> None:
        self.stack.append(f"fragment {node.name.value}")

    def leave_operation_definition(self, *_: Any) -> None:
        self.stack.pop()

    def leave_fragment_definition(self, *_: Any) -> None:
        self.stack.pop()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.stack.append(node.alias.value if node.alias else node.name.value)
        if node is self.target:
            self.found = list(self.stack)

    def leave_field(self, *_: Any) -> None:
        self.stack.pop()


_UNDEFINED_FIELD = re.compile(r"^Cannot query field '(?P<field>\w+)' on type '(?P<type>\w+)'")


def shopify_validation_error(error: GraphQLError, document: DocumentNode) -> dict[str, Any]:
    """graphql-core's validation error in Shopify's words where we know them."""
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    match = _UNDEFINED_FIELD.match(error.message)
    if match and error.nodes:
        finder = _FieldPaths(error.nodes[0])
        visit(document, finder)
        formatted["message"] = f"Field '{match['field']}' doesn't exist on type '{match['type']}'"
        if finder.found:
            formatted["path"] = finder.found
        formatted["extensions"] = {"code": "undefinedField", "typeName": match["type"], "fieldName": match["field"]}
    return formatted


@lru_cache(maxsize=256)
def _parse(query: str) -> DocumentNode:
    return parse(query)


@lru_cache(maxsize=256)
def _validation_errors(query: str) -> tuple[GraphQLError, ...]:
    return tuple(validate(sandbox_schema(), _parse(query)))


def operation_name_of(document: DocumentNode, requested: str | None) -> str | None:
    if requested:
        return requested
    names = [d.name.value for d in document.definitions if isinstance(d, OperationDefinitionNode) and d.name]
    return names[0] if len(names) == 1 else None


# ---------------------------------------------------------------------- the endpoint


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] | None = None
    instead: Any = None  # an injected fault's own ASGI response (a reset, a truncated body, ...)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers)


def _max_cost_exceeded(requested: int) -> Answer:
    return _json(
        200,
        {
            "errors": [
                {
                    "message": f"Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\n"
                    "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
                    "cost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk "
                    "operations should be used instead.\nSee https://shopify.dev/api/usage/bulk-operations/queries "
                    "for usage details.\n",
                    "extensions": {
                        "code": "MAX_COST_EXCEEDED",
                        "cost": requested,
                        "maxCost": MAX_QUERY_COST,
                        "documentation": RATE_LIMITS_DOC,
                    },
                }
            ]
        },
    )


@dataclass(frozen=True)
class _Request:
    query: str
    variables: dict[str, Any]
    document: DocumentNode | None
    syntax_error: GraphQLSyntaxError | None
    operation: str | None


def _read_request(body: Any) -> _Request | Answer:
    """The POSTed {query, variables, operationName}, parsed; a 400 answer when unusable."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return _json(400, {"errors": {"query": "Required parameter missing or invalid"}})
    variables = body.get("variables") or {}
    if isinstance(variables, str):  # some clients send the variables as a JSON string
        try:
            variables = json.loads(variables or "{}")
        except ValueError:
            variables = None
    if not isinstance(variables, dict):
        return _json(400, {"errors": {"variables": "Invalid variables"}})
    try:
        document, syntax_error = _parse(body["query"]), None
    except GraphQLSyntaxError as exc:
        document, syntax_error = None, exc
    operation = operation_name_of(document, body.get("operationName")) if document else body.get("operationName")
    return _Request(body["query"], variables, document, syntax_error, operation)


class GraphQLService:
    """Answers Admin GraphQL requests for one store (see the module docstring for the order of checks)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.schema = sandbox_schema()

    def handle(self, body: Any, base_url: str, bases: tuple[str, ...]) -> Answer:
        request = _read_request(body)
        if isinstance(request, Answer):
            return request
        store = self.store
        with store.lock:
            store.stats.graphql_requests += 1
            label = request.operation or "(anonymous)"
            store.stats.operations[label] = store.stats.operations.get(label, 0) + 1
            fault = store.faults.take_graphql(request.operation)
            if fault is not None and fault.mode != "throttled":
                store.stats.faults_served += 1
                log.info("fault_served", kind=fault.kind, operation=request.operation)
            if fault is not None and fault.status is not None:
                answer = answer_for(fault)
                return Answer(answer.status, answer.body, answer.content_type, answer.headers)
            instead = None if fault is None else transport_answer(fault)
            if instead is not None:
                return Answer(instead.status_code, b"", instead=instead)
        if fault is not None and fault.mode == "hang":
            time.sleep(fault.seconds)  # in the request's worker thread, outside the lock: a slow store
        with store.lock:
            requested = self._requested_cost(request)
            if isinstance(requested, Answer):
                return requested
            forced = fault is not None and fault.mode == "throttled"
            if forced:
                store.bucket.drain()
            if forced or not store.bucket.take(requested):
                store.stats.throttled += 1
                log.info("throttled", operation=request.operation, requested=requested)
                return _json(
                    200,
                    {
                        "errors": [
                            {
                                "message": "Throttled",
                                "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC},
                            }
                        ],
                        "extensions": {
                            "cost": {
                                "requestedQueryCost": requested,
                                "actualQueryCost": None,
                                "throttleStatus": store.bucket.status(),
                            }
                        },
                    },
                )
            return self._execute(request, requested, base_url, bases)

    def _requested_cost(self, request: _Request) -> int | Answer:
        """The cost to charge, or the answer that stops the request before execution."""
        if request.document is None:
            assert request.syntax_error is not None
            return _json(200, {"errors": [request.syntax_error.formatted]})
        errors = _validation_errors(request.query)
        if errors:
            return _json(200, {"errors": [shopify_validation_error(e, request.document) for e in errors]})
        try:
            analysis = analyze(self.schema, request.document, request.operation, request.variables)
        except Exception:  # variables too odd to read: execution reports them, at no cost
            log.exception("cost_analysis_failed", operation=request.operation)
            return 0
        if analysis.problems:
            return _json(200, {"errors": [e.formatted for e in analysis.problems]})
        if analysis.requested > MAX_QUERY_COST:
            self.store.stats.max_cost_exceeded += 1
            return _max_cost_exceeded(analysis.requested)
        return analysis.requested

    def _execute(self, request: _Request, requested: int, base_url: str, bases: tuple[str, ...]) -> Answer:
        store = self.store
        now = store.clock()
        store.settle(now)
        counter = ActualCost()
        assert request.document is not None
        result = execute_sync(
            self.schema,
            request.document,
            context_value=Context(store, now, base_url, bases),
            variable_values=request.variables,
            operation_name=request.operation,
            middleware=[counter],
        )
        actual = min(counter.total, requested)
        store.bucket.give_back(requested - actual)  # Shopify refunds what a query did not use
        label = request.operation or "(anonymous)"
        store.stats.points[label] = store.stats.points.get(label, 0) + actual
        payload: dict[str, Any] = {}
        if result.errors:
            for error in result.errors:
                if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
                    log.error("resolver_failed", operation=request.operation, error=repr(error.original_error))
            payload["errors"] = [e.formatted for e in result.errors]
        payload["data"] = result.data
        payload["extensions"] = {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": store.bucket.status(),
            }
        }
        return _json(200, payload)
