"""HTTP routes of the Shopify sandbox (a Starlette app; `ShopifySandbox.app` builds it).

Shopify's side
    POST /admin/api/{version}/graphql.json     Admin GraphQL. Header `X-Shopify-Access-Token` must be
                                               the sandbox's static token or one it issued, neither
                                               expired nor revoked (else 401 with Shopify's body); an
                                               unknown {version} is 404. Body {query, variables, operationName}.
    POST /admin/oauth/access_token             the client credentials grant (oauth.py): form body
                                               grant_type, client_id, client_secret -> {access_token,
                                               scope, expires_in}; refusals 400 {error, error_description}
    PUT  /_staged/upload/{key}                 staged upload, raw body (targets with httpMethod PUT)
    POST /_staged/upload/{key}                 staged upload, multipart form: the target's parameters + `file`
                                               (201 with a GCS-style XML body, as success_action_status asks)
    GET  /_staged/files/{key}/{filename}       the `resourceUrl`: usable as `originalSource`, not readable
                                               by clients (403, like the private bucket)
    GET  /cdn/files/{filename}?v={version}     processed images, with their Content-Type
    GET  /_bulk/{key}.jsonl                    a bulk operation's `url`/`partialDataUrl` (no auth, like
                                               the signed storage URL): its JSONL, streamed (chunked);
                                               an unknown key is 404 NoSuchKey, an expired one 400
                                               ExpiredToken (XML, as the storage bucket answers)

Admin API for tests, the demo and store owners (JSON, no auth)
    POST   /_sandbox/products                  {"title", "tags": [], "images": [{"filename", "alt",
                                               "data_base64"?, "processing"?}]} -> product
    POST   /_sandbox/seed                      {"products": N, "images_per_product": 1, "seed": 0,
                                               "spread_seconds"?: 0, "summary"?: false} -> [product], or with
                                               "summary": {"products", "media", "first_id", "last_id"} (large catalogs)
    GET    /_sandbox/products                  every product with media and metafields
    GET    /_sandbox/products/{legacy_id}      one product
    PATCH  /_sandbox/products/{legacy_id}      {"title"?, "tags"?} -> product (bumps updatedAt)
    DELETE /_sandbox/products/{legacy_id}      -> {"deleted": gid}
    POST   /_sandbox/products/{legacy_id}/images   {"filename", "alt", "data_base64"?, "processing"?} -> media
    DELETE /_sandbox/media/{media_id}          numeric media id -> {"deleted": gid}
    GET    /_sandbox/stats                     {"graphql_requests", "operations", "throttled", "faults_served", ...}
    GET    /_sandbox/faults                    faults pending
    POST   /_sandbox/faults                    {"status": 429|500|502|503, "count": N, "retry_after"?, "operation"?}
                                               | {"throttle": true} | {"fail_media_processing": N, "code"?}
                                               | {"mode": hang|html|reset|truncated|non_json|wrong_shape|
                                                  throttled|fail, "seconds"?, "count"?, "operation"?}
                                               | {"endpoint": "bulk", "mode": fail|partial|expired, "code"?,
                                                  "seconds"?} | {"endpoint": "bulk_download", "status"?,
                                                  "mode"?: truncated|reset|hang|...}
                                               each with "skip"? and "probability"? (faults.py)
    DELETE /_sandbox/faults                    clear every pending fault
    GET    /_sandbox/tokens                    {"grants", "refused", "revoked", "lifetime", "scopes",
                                               "installed", "permitted", "reject_tokens"}
    PATCH  /_sandbox/tokens                    {"lifetime"?, "scopes"?, "installed"?, "permitted"?,
                                               "reject_tokens"?} -> the same
    DELETE /_sandbox/tokens                    revoke every token issued -> {"revoked": N}

A product is {"id", "legacy_id", "title", "tags", "created_at", "updated_at", "media": [...],
"metafields": {"<namespace>.<key>": {"id", "namespace", "key", "type", "value", "compare_digest",
"updated_at"}}}; a media is {"id", "product_id", "position" (zero-based), "status",
"file_status", "alt", "filename", "url", "sha256", "mime_type", "width", "height", "version",
"source_url", "errors", "created_at", "updated_at"} — `sha256`/`mime_type` describe the bytes the
CDN serves now (the previous image while a replacement is processing).
"""

from __future__ import annotations

import binascii
import json
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ...sandbox_kit.faults import answer_for as transport_answer
from ...sandbox_kit.faults import close_connection, delay_for, retry_after_headers
from . import bulk_export
from .graphql_api import Context, sandbox_schema
from .store import SandboxError

if TYPE_CHECKING:
    from .sandbox import ShopifySandbox

log = structlog.get_logger(__name__)

UNAUTHORIZED_BODY = b'{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}'
NOT_FOUND_BODY = b'{"errors":"Not Found"}'
JSON_TYPE = "application/json; charset=utf-8"


def _gcs_error(status: int, code: str) -> Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
    return Response(body, status_code=status, media_type="application/xml")


def _form_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """Fields of a multipart/form-data body (stdlib email parser; python-multipart is not a dependency)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return {}
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = part.get_payload(decode=True) or b""  # type: ignore[assignment]  # decode=True: bytes
    return fields


class JsonlStream(StreamingResponse):
    """A bulk result file as Shopify's storage serves it (`application/jsonl`), sent while it is
    made (chunked: no Content-Length); `cut`: the connection closes before its end."""

    def __init__(self, chunks: Any, cut: bool = False) -> None:
        super().__init__(chunks, media_type="application/jsonl")
        self.cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.cut:
            await super().__call__(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await close_connection(scope, receive)  # no final chunk: the client sees the body end early


_STORAGE_ERRORS = {429: "TooManyRequests", 500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}


def build_app(sandbox: ShopifySandbox) -> Starlette:
    store = sandbox.store

    def base_of(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def graphql(request: Request) -> Response:
        if request.path_params["version"] != sandbox.api_version:
            return Response(NOT_FOUND_BODY, status_code=404, media_type=JSON_TYPE)
        if not sandbox.token_matches(request.headers.get("X-Shopify-Access-Token")):
            with store.lock:
                store.stats.unauthorized += 1
            return Response(UNAUTHORIZED_BODY, status_code=401, media_type=JSON_TYPE)
        raw = await request.body()
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = None
        request_base = base_of(request)
        base_url = sandbox.base_url or request_base
        answer = await run_in_threadpool(sandbox.graphql.handle, body, base_url, (base_url, request_base))
        if answer.instead is not None:
            return answer.instead
        headers = {"X-Shopify-API-Version": sandbox.api_version, **(answer.headers or {})}
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=headers)

    async def access_token(request: Request) -> Response:
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        status, body = sandbox.tokens.grant(form)
        return JSONResponse(body, status_code=status)

    async def staged_upload(request: Request) -> Response:
        key = request.path_params["key"]
        raw = await request.body()
        if request.method == "PUT":
            data, form_key = raw, None
        else:
            fields = _form_fields(request.headers.get("content-type", ""), raw)
            if "file" not in fields or "key" not in fields:
                return _gcs_error(400, "InvalidArgument")
            data, form_key = fields["file"], fields["key"].decode()

        def receive() -> str | None:
            with store.lock:
                return store.receive_upload(key, data, form_key)

        problem = await run_in_threadpool(receive)
        if problem is not None:
            return _gcs_error(403 if problem == "AccessDenied" else 400, problem)
        log.info("staged_upload_received", key=key, bytes=len(data), method=request.method)
        if request.method == "PUT":
            return Response(status_code=200)
        location = f"{base_of(request)}/_staged/files/{key}"
        xml = (
            f"<?xml version='1.0' encoding='UTF-8'?><PostResponse><Location>{location}</Location>"
            f"<Bucket>shopify-staged-uploads</Bucket><Key>{form_key}</Key></PostResponse>"
        )
        return Response(xml, status_code=201, media_type="application/xml")

    async def staged_file(_request: Request) -> Response:
        return _gcs_error(403, "AccessDenied")

    async def cdn(request: Request) -> Response:
        filename = request.path_params["filename"]

        def lookup() -> Any:
            with store.lock:
                return store.cdn_file(filename, request.query_params.get("v"))

        asset = await run_in_threadpool(lookup)
        if asset is None:
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        return Response(asset.data, media_type=asset.mime_type, headers={"Cache-Control": "public, max-age=31536000"})

    async def bulk_file(request: Request) -> Response:
        def look_up() -> tuple[Any, Any, float]:
            with store.lock:
                return (
                    store.faults.take_bulk_download(),
                    store.bulk.by_key.get(request.path_params["key"]),
                    store.clock(),
                )

        fault, op, now = await run_in_threadpool(look_up)
        if fault is not None:
            log.info("fault_served", kind=fault.kind, endpoint="bulk_download")
        await delay_for(fault)
        if fault is not None and fault.status is not None:
            response = _gcs_error(fault.status, _STORAGE_ERRORS.get(fault.status, "InternalError"))
            response.headers.update(retry_after_headers(fault))
            return response
        instead = transport_answer(fault) if fault is not None and fault.mode != "truncated" else None
        if instead is not None:
            return instead
        if op is None:
            return _gcs_error(404, "NoSuchKey")
        if not op.readable(now):  # no capture: what an expired signed storage URL answers
            return _gcs_error(400, "ExpiredToken") if now >= op.expires_at else _gcs_error(404, "NoSuchKey")
        request_base = base_of(request)
        base_url = sandbox.base_url or request_base
        seed = None if op.group_objects else store.bulk_settings.any_order_seed
        lines = bulk_export.lines(
            store,
            sandbox_schema(),
            Context(store, now, base_url, (base_url, request_base)),
            op,
            locked=True,
            any_order_seed=seed,
        )
        cut = fault is not None and fault.mode == "truncated"
        if cut:
            lines = bulk_export.cut_midway(lines, keep=op.counts(now)[0] // 2)
        log.info("bulk_file_served", id=op.id, cut=cut)
        return JsonlStream(bulk_export.chunked(lines), cut=cut)

    # ---------------------------------------------------------------- admin

    async def admin_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value

    def admin(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                body = await admin_json(request) if request.method in ("POST", "PATCH") else {}
                result = await run_in_threadpool(handler, request, body)
            except SandboxError as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except (ValueError, TypeError, KeyError, binascii.Error) as exc:
                return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
            return JSONResponse(result)

        return endpoint

    def create_product(_request: Request, body: dict[str, Any]) -> Any:
        return sandbox.add_product(str(body["title"]), body.get("tags") or [], body.get("images") or [])

    def seed(_request: Request, body: dict[str, Any]) -> Any:
        args = (int(body.get("products", 10)), int(body.get("images_per_product", 1)), int(body.get("seed", 0)))
        spread = float(body.get("spread_seconds", 0.0))
        if body.get("summary"):
            return sandbox.seed_catalog(*args, spread_seconds=spread)
        return sandbox.seed(*args, spread_seconds=spread)

    def list_products(_request: Request, _body: dict[str, Any]) -> Any:
        return sandbox.products()

    def get_product(request: Request, _body: dict[str, Any]) -> Any:
        return sandbox.product(request.path_params["legacy_id"])

    def patch_product(request: Request, body: dict[str, Any]) -> Any:
        return sandbox.update_product(request.path_params["legacy_id"], title=body.get("title"), tags=body.get("tags"))

    def delete_product(request: Request, _body: dict[str, Any]) -> Any:
        legacy_id = request.path_params["legacy_id"]
        sandbox.delete_product(legacy_id)
        return {"deleted": f"gid://shopify/Product/{legacy_id}"}

    def add_image(request: Request, body: dict[str, Any]) -> Any:
        return sandbox.add_image(
            request.path_params["legacy_id"],
            str(body.get("filename") or "image.jpg"),
            str(body.get("alt") or ""),
            data_base64=body.get("data_base64"),
            processing=bool(body.get("processing", False)),
        )

    def delete_media(request: Request, _body: dict[str, Any]) -> Any:
        media_id = request.path_params["media_id"]
        sandbox.delete_media(media_id)
        return {"deleted": f"gid://shopify/MediaImage/{media_id}"}

    def patch_media(request: Request, body: dict[str, Any]) -> Any:
        return sandbox.set_alt(request.path_params["media_id"], str(body["alt"]))

    def add_variant(request: Request, body: dict[str, Any]) -> Any:
        return sandbox.add_variant(
            request.path_params["legacy_id"], str(body["title"]), [str(m) for m in body.get("media_ids") or []]
        )

    def stats(_request: Request, _body: dict[str, Any]) -> Any:
        return sandbox.stats()

    def tokens(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            return {"revoked": sandbox.tokens.revoke()}
        if request.method == "PATCH":
            sandbox.tokens.configure(
                lifetime=float(body["lifetime"]) if body.get("lifetime") is not None else None,
                scopes=str(body["scopes"]) if body.get("scopes") is not None else None,
                installed=bool(body["installed"]) if body.get("installed") is not None else None,
                permitted=bool(body["permitted"]) if body.get("permitted") is not None else None,
                reject_tokens=bool(body["reject_tokens"]) if body.get("reject_tokens") is not None else None,
            )
        return sandbox.tokens.stats()

    def faults(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            sandbox.clear_faults()
        elif request.method == "POST":
            return sandbox.add_fault(
                status=int(body["status"]) if body.get("status") is not None else None,
                count=int(body.get("count", 1)),
                retry_after=float(body["retry_after"]) if body.get("retry_after") is not None else None,
                operation=body.get("operation"),
                throttle=bool(body.get("throttle", False)) or body.get("mode") == "throttled",
                fail_media_processing=int(body.get("fail_media_processing", 0)),
                code=str(body["code"]) if body.get("code") else None,
                mode=None if body.get("mode") in (None, "throttled") else str(body["mode"]),
                seconds=float(body.get("seconds", 0.0)),
                skip=int(body.get("skip", 0)),
                probability=float(body.get("probability", 1.0)),
                endpoint=body.get("endpoint"),
            )
        return sandbox.faults()

    routes = [
        Route("/admin/api/{version}/graphql.json", graphql, methods=["POST"]),
        Route("/admin/oauth/access_token", access_token, methods=["POST"]),
        Route("/_staged/upload/{key}", staged_upload, methods=["PUT", "POST"]),
        Route("/_staged/files/{key}/{filename:path}", staged_file, methods=["GET"]),
        Route("/cdn/files/{filename}", cdn, methods=["GET"]),
        Route("/_bulk/{key}.jsonl", bulk_file, methods=["GET"]),
        Route("/_sandbox/products", admin(create_product), methods=["POST"]),
        Route("/_sandbox/products", admin(list_products), methods=["GET"]),
        Route("/_sandbox/seed", admin(seed), methods=["POST"]),
        Route("/_sandbox/products/{legacy_id}", admin(get_product), methods=["GET"]),
        Route("/_sandbox/products/{legacy_id}", admin(patch_product), methods=["PATCH"]),
        Route("/_sandbox/products/{legacy_id}", admin(delete_product), methods=["DELETE"]),
        Route("/_sandbox/products/{legacy_id}/images", admin(add_image), methods=["POST"]),
        Route("/_sandbox/products/{legacy_id}/variants", admin(add_variant), methods=["POST"]),
        Route("/_sandbox/media/{media_id}", admin(delete_media), methods=["DELETE"]),
        Route("/_sandbox/media/{media_id}", admin(patch_media), methods=["PATCH"]),
        Route("/_sandbox/stats", admin(stats), methods=["GET"]),
        Route("/_sandbox/faults", admin(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/tokens", admin(tokens), methods=["GET", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)
