"""Each client's operations, the error tree each may raise, and plausible answers to start from.

`run_operation` drives one operation against the AnsweringServer and returns None when the client
behaved (a result, or one of its documented errors), else the unexpected exception. Used by
tests/integration/test_bad_input_responses.py and bench/bad_input.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from retouch.plugin.providers.aigenstudio import AigenClient, SourceImage
from retouch.plugin.providers.aigenstudio.errors import AigenError
from retouch.plugin.providers.imagen.client import ImagenClient
from retouch.plugin.providers.imagen.errors import ImagenError
from retouch.plugin.providers.productai.client import ProductAIClient
from retouch.plugin.providers.productai.errors import ProductAIError
from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.errors import ShopifyError

AIGEN_KEY = "aigen_test_FUZZSECRET_key_1234"
IMAGEN_KEY = "imagen_FUZZSECRET_key"
PRODUCTAI_KEY = "pai_FUZZSECRET_key"
SHOP_TOKEN = "shpat_FUZZSECRET_token"

ITEM = {
    "id": "itm_1",
    "status": "completed",
    "external_id": "81234",
    "result_url": "{base}/r.jpg",
    "thumbnail_url": "{base}/t.jpg",
    "credits_reserved": 5,
    "credits_used": 5,
    "error_code": None,
    "error_message": None,
}
ENHANCEMENT = {
    "id": "enh_1",
    "status": "completed",
    "total_items": 1,
    "completed_items": 1,
    "failed_items": 0,
    "credits_reserved": 5,
    "credits_used": 5,
    "sandbox": True,
    "created_at": "2026-01-01T00:00:00Z",
    "completed_at": "2026-01-01T00:01:00Z",
    "items": [ITEM],
}
AIGEN = [
    {"presets": [{"id": "single_product_white_background", "name": "White", "description": "d"}]},
    {"enhancement": ENHANCEMENT, "remaining_paid_credits": 10},
    {"enhancement": {"id": "enh_1", "status": "queued", "total_items": 1, "credits_reserved": 5, "sandbox": True}},
    {"error": {"code": "rate_limited", "message": "slow down", "request_id": "req_1"}},
]
IMAGEN = [
    {
        "data": {
            "profiles": [{"profile_key": 5700, "profile_name": "P", "profile_type": "Personal", "image_type": "JPG"}]
        }
    },
    {"data": {"project_uuid": "p-1"}},
    {"data": {"files_list": [{"file_name": "1_2.jpg", "upload_link": "{base}/up?X-Amz-Signature=s"}]}},
    {"data": {"files_list": [{"file_name": "1_2.jpg", "download_link": "{base}/dl?X-Amz-Signature=s"}]}},
    {"data": {"status": "Completed"}},
    {"data": {"project_uuid": "p-1", "status": "Pending", "action": "edit"}},
    {"detail": "Project not found"},
    {"detail": [{"msg": "field required", "loc": ["body", "profile_key"]}]},
]
PRODUCTAI = [
    {"status": "OK", "data": {"id": 1}},
    {"status": "OK", "data": {"id": 1, "status": "COMPLETED", "image_url": "{base}/r.jpg"}},
    {"status": "OK", "data": {"id": 1, "status": "ERROR", "error": "could not read the image"}},
    {"name": "ApiError", "message": "OUT_OF_TOKENS", "details": "no tokens left"},
    {"code": "RATE_LIMITED", "message": "slow down"},
]
MEDIA = {
    "id": "gid://shopify/MediaImage/2",
    "mediaContentType": "IMAGE",
    "status": "READY",
    "alt": "",
    "mimeType": "image/jpeg",
    "image": {"url": "{base}/a.jpg", "width": 10, "height": 10},
    "originalSource": {"url": "{base}/a.jpg"},
    "mediaErrors": [],
    "updatedAt": "2026-01-01T00:00:00Z",
}
PAGE = {"hasNextPage": False, "endCursor": None}
PRODUCT = {
    "id": "gid://shopify/Product/1",
    "legacyResourceId": "1",
    "title": "T",
    "tags": ["a"],
    "updatedAt": "2026-01-01T00:00:00Z",
    "marker": {"value": "[]", "compareDigest": "d"},
    "media": {"nodes": [MEDIA], "pageInfo": PAGE},
}
COST = {
    "requestedQueryCost": 10,
    "actualQueryCost": 5,
    "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 1990, "restoreRate": 100},
}


def _shopify_answer(**data: Any) -> dict[str, Any]:
    return {"data": data, "extensions": {"cost": COST}}


SHOPIFY_ERRORS = [
    {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}], "extensions": {"cost": COST}},
    {"errors": [{"message": "denied", "extensions": {"code": "ACCESS_DENIED"}}]},
]
STAGED = {
    "stagedTargets": [
        {"url": "{base}/upload", "resourceUrl": "{base}/r", "parameters": [{"name": "key", "value": "v"}]}
    ],
    "userErrors": [],
}
# The plausible answer to each operation (fuzzing a shape the operation never reads finds little).
SHOPIFY = {
    "shop": [_shopify_answer(shop={"name": "Shop", "myshopifyDomain": "x.myshopify.com"})],
    "iter_products": [_shopify_answer(products={"nodes": [PRODUCT], "pageInfo": PAGE})],
    "get_product": [_shopify_answer(product=PRODUCT)],
    "get_media": [_shopify_answer(node=MEDIA)],
    "staged_upload": [_shopify_answer(stagedUploadsCreate=STAGED)],
    "replace_media_source": [
        _shopify_answer(fileUpdate={"files": [{"id": "gid://shopify/MediaImage/2"}], "userErrors": []})
    ],
    "add_media": [
        _shopify_answer(
            productUpdate={
                "product": {"id": "gid://shopify/Product/1", "media": {"nodes": [MEDIA]}},
                "userErrors": [{"field": ["media"], "message": "bad", "code": "INVALID"}],
            }
        )
    ],
    "move_media": [
        _shopify_answer(
            productReorderMedia={"job": {"id": "gid://shopify/Job/1", "done": False}, "mediaUserErrors": []},
            job={"id": "gid://shopify/Job/1", "done": True},
        )
    ],
    "set_marker": [_shopify_answer(metafieldsSet={"metafields": [{"compareDigest": "d2"}], "userErrors": []})],
    "delete_media": [_shopify_answer(fileDelete={"deletedFileIds": ["gid://shopify/MediaImage/2"], "userErrors": []})],
    "download": [],
}


async def _fast_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


class _Clock:
    """A clock that moves on when the client sleeps: pacing and retry waits cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds) if seconds == seconds else 0.0
        await asyncio.sleep(0)


Operation = Callable[[Any, str], Awaitable[Any]]


async def _collect(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


@dataclass(frozen=True)
class Target:
    name: str
    errors: type[Exception]  # what the client may raise: its own error tree
    templates: list[Any] | dict[str, list[Any]]  # for every operation, or per operation

    def templates_for(self, operation: str) -> list[Any]:
        if isinstance(self.templates, dict):
            return self.templates[operation] + SHOPIFY_ERRORS
        return self.templates

    build: Callable[[str], Any]
    operations: dict[str, Operation]


def _imagen(base: str) -> ImagenClient:
    client = ImagenClient(IMAGEN_KEY, base + "/v1", timeout=5, retries=1, retry_base=0)
    client._sleep = _fast_sleep  # its documented seam for tests
    return client


def _shopify(base: str) -> ShopifyClient:
    clock = _Clock()
    return ShopifyClient(base, SHOP_TOKEN, timeout=5, max_attempts=2, clock=clock, sleep=clock.sleep)


TARGETS = [
    Target(
        "aigenstudio",
        AigenError,
        AIGEN,
        lambda base: AigenClient(AIGEN_KEY, base, timeout=5),
        {
            "list_presets": lambda c, b: c.list_presets(),
            "create_enhancement": lambda c, b: c.create_enhancement(
                idempotency_key="retouch-1",
                preset="single_product_white_background",
                preservation_level="strict",
                images=[SourceImage("81234", b + "/a.jpg")],
                webhook_url=b + "/hook",
            ),
            "get_enhancement": lambda c, b: c.get_enhancement("enh_1"),
        },
    ),
    Target(
        "imagen",
        ImagenError,
        IMAGEN,
        _imagen,
        {
            "list_profiles": lambda c, b: c.list_profiles(),
            "create_project": lambda c, b: c.create_project(),
            "upload_links": lambda c, b: c.upload_links("p-1", ["1_2.jpg"]),
            "upload": lambda c, b: c.upload(b + "/up?X-Amz-Signature=s", b"\xff\xd8jpeg"),
            "start_edit": lambda c, b: c.start_edit(
                "p-1", profile_key=5700, photography_type="OTHER", callback_url=b + "/hook", options={"crop": True}
            ),
            "edit_status": lambda c, b: c.edit_status("p-1"),
            "start_export": lambda c, b: c.start_export("p-1"),
            "export_status": lambda c, b: c.export_status("p-1"),
            "export_links": lambda c, b: c.export_links("p-1"),
            "download": lambda c, b: c.download(b + "/dl?X-Amz-Signature=s"),
        },
    ),
    Target(
        "productai",
        ProductAIError,
        PRODUCTAI,
        lambda base: ProductAIClient(PRODUCTAI_KEY, base, timeout=5),
        {
            "generate": lambda c, b: c.generate(model="kontext-pro", image_url=b + "/a.jpg", prompt="clean"),
            "upscale": lambda c, b: c.upscale(image_url=b + "/r.jpg"),
            "job": lambda c, b: c.job(1),
        },
    ),
    Target(
        "shopify",
        ShopifyError,
        SHOPIFY,
        _shopify,
        {
            "shop": lambda c, b: c.shop(),
            "iter_products": lambda c, b: _collect(c.iter_products()),
            "get_product": lambda c, b: c.get_product("gid://shopify/Product/1"),
            "get_media": lambda c, b: c.get_media("gid://shopify/MediaImage/2"),
            "staged_upload": lambda c, b: c.staged_upload("retouch-2.jpg", "image/jpeg", b"\xff\xd8jpeg"),
            "replace_media_source": lambda c, b: c.replace_media_source("gid://shopify/MediaImage/2", b + "/r"),
            "add_media": lambda c, b: c.add_media("gid://shopify/Product/1", b + "/r", "alt"),
            "move_media": lambda c, b: c.move_media(
                "gid://shopify/Product/1", "gid://shopify/MediaImage/2", 0, timeout=5
            ),
            "set_marker": lambda c, b: c.set_marker("gid://shopify/Product/1", ["gid://shopify/MediaImage/2"], "d"),
            "delete_media": lambda c, b: c.delete_media(["gid://shopify/MediaImage/2"]),
            "download": lambda c, b: c.download(b + "/a.jpg"),
        },
    ),
]
BY_NAME = {target.name: target for target in TARGETS}
SECRETS = (AIGEN_KEY, IMAGEN_KEY, PRODUCTAI_KEY, SHOP_TOKEN)


async def _drive(target: Target, operation: str, base: str) -> BaseException | None:
    client = target.build(base)
    try:
        await asyncio.wait_for(target.operations[operation](client, base), timeout=20)
    except target.errors as exc:
        text = f"{exc!s} {exc!r}"
        if any(secret in text for secret in SECRETS):
            return AssertionError(f"a secret in {type(exc).__name__}: {text[:300]}")
        return None
    except Exception as exc:  # anything else is a bug in the client, TimeoutError (a hang) included
        return exc
    finally:
        await client.aclose()
    return None


def run_operation(target: Target, operation: str, base: str) -> BaseException | None:
    """None when the client behaved; else what came out of it."""
    return asyncio.run(_drive(target, operation, base))
