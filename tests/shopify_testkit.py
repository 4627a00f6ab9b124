"""Shared helpers for the Shopify client tests: the real schema, a fake clock, scripted responses.

`ScriptedShopify` is the handler of an `httpx.MockTransport`: it answers requests with a script of
exact responses or faults (the sequences a live store produces only by chance), records every
request, and checks every GraphQL request against the real Admin schema: the document must
validate and the variables must coerce to the declared types.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate
from graphql.execution.values import get_variable_values

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCHEMA_PATH = SHARED / "reference" / "shopify" / "admin-2026-07.graphql"

TOKEN = "shpat_FAKE_TOKEN_d41d8cd98f00b204e980"
SHOP_URL = "https://retouch-test.myshopify.com"
GRAPHQL_URL = "https://retouch-test.myshopify.com/admin/api/2026-07/graphql.json"


@cache
def real_schema() -> GraphQLSchema | None:
    """The real Admin 2026-07 schema, or None when ../shared is absent."""
    if not SCHEMA_PATH.exists():
        return None
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"), assume_valid=True)


def check_against_schema(payload: dict[str, Any]) -> None:
    """Assert that a GraphQL request body is valid for the real schema (no-op without it)."""
    schema = real_schema()
    if schema is None:
        return
    document = parse(payload["query"])
    errors = validate(schema, document)
    assert not errors, f"{payload.get('operationName')}: {errors}"
    (definition,) = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    coerced = get_variable_values(schema, definition.variable_definitions or (), payload.get("variables") or {})
    assert not isinstance(coerced, list), f"{payload.get('operationName')} variables: {coerced}"


class FakeTime:
    """A monotonic clock that only moves when the client sleeps; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def cost(
    requested: float = 10,
    actual: float | None = None,
    available: float = 1990,
    maximum: float = 2000,
    rate: float = 100,
) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": requested if actual is None else actual,
        "throttleStatus": {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate},
    }


def ok(data: dict[str, Any], **cost_args: Any) -> httpx.Response:
    """A successful GraphQL answer with `extensions.cost`."""
    return httpx.Response(200, json={"data": data, "extensions": {"cost": cost(**cost_args)}})


def throttled(requested: float, available: float, rate: float = 100, maximum: float = 2000) -> httpx.Response:
    """Shopify's THROTTLED answer: HTTP 200, an error with code THROTTLED, nothing executed."""
    return httpx.Response(
        200,
        json={
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": {
                        "maximumAvailable": maximum,
                        "currentlyAvailable": available,
                        "restoreRate": rate,
                    },
                }
            },
        },
    )


Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class ScriptedShopify:
    """MockTransport handler: answers with `steps` in order (responses, exceptions to raise, or callables)."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url == GRAPHQL_URL or request.url.path.endswith("/graphql.json"):
            check_against_schema(json.loads(request.content))
        assert self.steps, f"unexpected extra request {request.method} {request.url}"
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    def graphql_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith("/graphql.json")]

    def operation_names(self) -> list[str]:
        return [body["operationName"] for body in self.graphql_bodies()]


def media_node(
    media_id: str,
    *,
    status: str = "READY",
    url: str | None = None,
    alt: str | None = None,
    original_url: str | None = None,
) -> dict[str, Any]:
    """A `MediaFields` node of a MediaImage, as Shopify returns it."""
    return {
        "id": media_id,
        "mediaContentType": "IMAGE",
        "status": status,
        "alt": alt,
        "mimeType": "image/jpeg",
        "updatedAt": "2026-07-19T15:50:20Z",
        "image": None if url is None else {"url": url, "width": 600, "height": 400},
        "originalSource": None if original_url is None else {"url": original_url, "fileSize": 1234},
        "mediaErrors": [],
    }


def product_node(
    number: int,
    media: list[dict[str, Any]],
    *,
    media_next: str | None = None,
    marker: dict[str, Any] | None = None,
    updated_at: str = "2026-07-19T15:50:20Z",
) -> dict[str, Any]:
    """A `ProductFields` node; `media_next` is the end cursor when more media pages follow."""
    return {
        "id": f"gid://shopify/Product/{number}",
        "legacyResourceId": str(number),
        "title": f"Product {number}",
        "tags": ["summer"],
        "updatedAt": updated_at,
        "marker": marker,
        "media": {
            "pageInfo": {"hasNextPage": media_next is not None, "endCursor": media_next},
            "nodes": media,
        },
    }


def bulk_node(
    number: int = 7933223797042,
    status: str = "CREATED",
    *,
    url: str | None = None,
    partial: str | None = None,
    error_code: str | None = None,
    objects: int = 0,
) -> dict[str, Any]:
    """A `BulkOperationFields` node, shaped like the captured answers (counts as strings)."""
    return {
        "id": f"gid://shopify/BulkOperation/{number}",
        "status": status,
        "errorCode": error_code,
        "createdAt": "2026-06-16T08:06:19Z",
        "completedAt": None if status in ("CREATED", "RUNNING") else "2026-06-16T08:06:40Z",
        "objectCount": str(objects),
        "rootObjectCount": str(objects),
        "url": url,
        "partialDataUrl": partial,
    }
