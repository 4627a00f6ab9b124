"""AigenSandbox: a loopback emulator of AI Gen Studio's `/api/v1`, plus a test-only inspection API.

    sandbox = AigenSandbox(window_seconds=5, seconds_per_item=0.05)
    server = sandbox.start()                 # uvicorn on 127.0.0.1, free port
    client = AigenClient("aigen_test_abcdefgh", sandbox.base_url)
    ...
    sandbox.close()

Public API (as the real service documents it):
    GET  /api/v1/product-image-enhancement-presets        public
    POST /api/v1/product-image-enhancements               Bearer key + Idempotency-Key
    GET  /api/v1/product-image-enhancements/{id}          Bearer key
    GET  /results/{enhancement_id}/{item_id}.png          result (and {item_id}_thumb.png), public
Inspection and faults (sandbox only, no auth):
    GET  /_sandbox/stats
    POST /_sandbox/faults      {"endpoint": "create"|"status", "status": 5xx|429, "retry_after"?: s, "count": n}
                               {"endpoint": "create", "mode": "drop_response" | "fail", "count": n}
                               {"endpoint": ..., "mode": "hang", "seconds": s, "count": n}
                               {"endpoint": ..., "mode": "html"|"reset"|"truncated"|"non_json"|"wrong_shape"}
                               {"endpoint": "webhook", "mode": "duplicate" | "late", "seconds"?: s}
                               (+ "skip", "probability": the plan language of sandbox_kit/faults.py)
    DELETE /_sandbox/faults
    POST /_sandbox/live_keys   {"key", "purchased", "available", "account"?}
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retouch.plugin.serve import LoopbackSandbox

from ....sandbox_kit.faults import (
    Fault,
    FaultBook,
    SandboxFaults,
    answer_for,
    answered_after_work,
    delay_for,
    fault_from_body,
    quoted_credentials,
    retry_after_headers,
)
from .. import contract
from .auth import bearer_key
from .processing import Processor, WebhookSender
from .state import ApiError, SandboxLimits, SandboxState
from .validation import PayloadError, refuse_private_webhook, validate_create, validate_idempotency_key

PRESETS = [
    {
        "id": "single_product_white_background",
        "name": "Single product white background",
        # [DOC] the only published description.
        "description": "Best for one clear product that should be isolated on a clean white or very light neutral ecommerce background.",
    },
    {
        "id": "marketplace_clean_catalog",
        "name": "Marketplace clean catalog",
        # Ours: not published.
        "description": "Marketplace-ready catalogue image: the product centred on pure white with even margins and true-to-life colours.",
    },
    {
        "id": "clean_catalog_group",
        "name": "Clean catalog group",
        # Ours: not published.
        "description": "For several products shown together: keeps every item, cleans the background and balances the group in the frame.",
    },
]

PROFILES = ("default", "production")
# [ASSUME] the code of a new enhancement is not stated (the reference shows 200 for an existing one):
# the production profile answers 202, the default profile 201 (contract.CREATED_STATUS).
PRODUCTION_CREATED_STATUS = 202

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


def _request_id(request: Request) -> str:
    """The client's X-Request-Id when usable, else a fresh `req_…` [DOC: echoed or generated]."""
    given = request.headers.get(contract.REQUEST_ID_HEADER)
    return given if given and _REQUEST_ID.match(given) else f"req_{uuid.uuid4().hex}"


def _json(
    body: dict[str, Any], request_id: str, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {**body, "request_id": request_id},
        status_code=status,
        headers={contract.REQUEST_ID_HEADER: request_id, **(headers or {})},
    )


def _error(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "request_id": request_id}},
        status_code=status,
        headers={contract.REQUEST_ID_HEADER: request_id, **(headers or {})},
    )


def _api_error(error: ApiError, request_id: str) -> JSONResponse:
    return _error(error.status, error.code, error.message, request_id, error.headers)


def _invalid(message: str, request_id: str) -> JSONResponse:
    return _error(
        400, contract.INVALID_PAYLOAD, f"The product image enhancement payload is invalid: {message}", request_id
    )


class AigenSandbox(LoopbackSandbox, SandboxFaults):
    """AI Gen Studio on loopback: auth, validation, idempotency, quotas, credits, async jobs, webhooks."""

    def __init__(
        self,
        *,
        window_seconds: float = contract.WINDOW_SECONDS,
        jobs_per_window: int = contract.JOBS_PER_WINDOW,
        images_per_window: int = contract.IMAGES_PER_WINDOW,
        polls_per_window: int = contract.POLLS_PER_WINDOW,
        active_jobs_per_key: int = contract.ACTIVE_JOBS_PER_KEY,
        active_jobs_per_account: int = contract.ACTIVE_JOBS_PER_ACCOUNT,
        seconds_per_item: float = 1.0,
        clock: Callable[[], float] = time.time,
        profile: str = "default",
    ) -> None:
        """profile: "default", or "production": answers in the shapes the API reference shows (no
        `status` on the enhancement nor its items, a new enhancement answered 202) and refuses a
        `webhook_url` on a loopback or private address, as the real service does."""
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}")
        self.profile = profile
        limits = SandboxLimits(
            window_seconds=window_seconds,
            jobs_per_window=jobs_per_window,
            images_per_window=images_per_window,
            polls_per_window=polls_per_window,
            active_jobs_per_key=active_jobs_per_key,
            active_jobs_per_account=active_jobs_per_account,
            seconds_per_item=seconds_per_item,
        )
        self._state = SandboxState(limits, clock)
        self._stop = threading.Event()
        self._webhooks = WebhookSender(self._stop, clock, self._state.faults)
        self._processor = Processor(self._state, self._webhooks, seconds_per_item, self._stop)
        self.app = Starlette(
            routes=[
                Route(contract.PRESETS_PATH, self._presets, methods=["GET"]),
                Route(contract.ENHANCEMENTS_PATH, self._create, methods=["POST"]),
                Route(contract.ENHANCEMENTS_PATH + "/{enhancement_id}", self._status, methods=["GET"]),
                Route("/results/{enhancement_id}/{name}", self._result, methods=["GET"]),
                Route("/_sandbox/stats", self._stats_endpoint, methods=["GET"]),
                Route("/_sandbox/faults", self._faults_endpoint, methods=["POST", "DELETE"]),
                Route("/_sandbox/live_keys", self._live_keys_endpoint, methods=["POST"]),
            ],
            exception_handlers={HTTPException: self._http_exception, Exception: self._crash},
        )

    # --- running ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.server_url

    @property
    def faults(self) -> FaultBook:  # type: ignore[override]  # read-only here: the book lives in the shared state
        return self._state.faults

    def _shutdown(self) -> None:
        """The job threads and webhook deliveries stop with the server."""
        self._stop.set()
        self._webhooks.close()

    # --- inspection and faults (also over HTTP under /_sandbox) -----------------------------------

    def add_live_key(self, key: str, *, purchased: int, available: int, account: str | None = None) -> None:
        """Register a live key with its account's credits, or change those credits."""
        self._state.add_live_key(key, purchased=purchased, available=available, account=account)

    def stats(self) -> dict[str, Any]:
        """Per key: creations, replays, conflicts, rate_limited, insufficient_credits, polls, images charged, credits."""
        stats = self._state.stats()
        stats["webhooks"] = {"delivered": self._webhooks.delivered, "failed_attempts": self._webhooks.failed_attempts}
        return stats

    def enhancements(self) -> list[dict[str, Any]]:
        """Every enhancement created, in order: what it was asked (preset, level, the images' external ids)."""
        return [
            {
                "id": job.id,
                "preset": job.payload.preset,
                "preservation_level": job.payload.preservation_level,
                "external_ids": [item.external_id for item in job.items],
            }
            for job in list(self._state._enhancements.values())
        ]

    # --- the API ----------------------------------------------------------------------------------

    async def _presets(self, request: Request) -> Response:
        return _json({"presets": PRESETS}, _request_id(request))

    async def _fault(
        self, endpoint: str, request_id: str, request: Request | None = None
    ) -> tuple[Response | None, Fault | None]:
        """(an error response to send instead, or the fault that acts after the work: spoils its answer,
        or fails the job)."""
        fault = self.faults.take(endpoint)
        if fault is None:
            return None, None
        if fault.mode == "quote_auth":
            headers = request.headers if request is not None else {}
            return _error(400, contract.INVALID_PAYLOAD, quoted_credentials(headers), request_id), None
        if fault.status == 429:
            return _error(
                429, contract.RATE_LIMITED, "Too many requests.", request_id, retry_after_headers(fault)
            ), None
        if fault.status is not None:
            code = contract.SERVICE_UNAVAILABLE if fault.status == 503 else contract.INTERNAL_ERROR
            return _error(
                fault.status, code, "The service failed to process the request.", request_id, retry_after_headers(fault)
            ), None
        if answered_after_work(self.faults, fault) or fault.mode == "fail":
            return None, fault
        instead = answer_for(fault)
        if instead is not None:
            return instead, None
        await delay_for(fault)
        return None, None

    async def _create(self, request: Request) -> Response:
        request_id = _request_id(request)
        raw_body = await request.body()  # received in full first: a "hang" is slow processing, not a slow upload
        instead, spoil = await self._fault("create", request_id, request)
        if instead is not None:
            return instead
        try:
            record = self._state.authenticate(bearer_key(request.headers, request.query_params.multi_items()))
            try:
                idempotency_key = validate_idempotency_key(request.headers.get(contract.IDEMPOTENCY_HEADER))
                if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
                    raise PayloadError("Content-Type must be application/json")
                try:
                    body = json.loads(raw_body)
                except (ValueError, UnicodeDecodeError):
                    raise PayloadError("the body is not valid JSON") from None
                payload = validate_create(body)
                if self.profile == "production":
                    refuse_private_webhook(payload)
            except PayloadError as exc:
                return _invalid(str(exc), request_id)
            job, replayed, headers = self._state.create(record, idempotency_key, body, payload, str(request.base_url))
        except ApiError as error:
            return _api_error(error, request_id)
        with self._state.lock:
            summary = job.summary_json()  # before the worker starts: a new job answers "queued" [DOC]
        if not replayed:
            job.fail_items = spoil is not None and spoil.mode == "fail"
            self._processor.submit(job)
        if spoil is not None and spoil.mode != "fail":
            # The job exists and is charged; only the answer is lost or broken ("crash between send and record").
            return answer_for(spoil) or _error(
                500, contract.INTERNAL_ERROR, "The service failed to process the request.", request_id
            )
        body_out = {
            "enhancement": self._shaped(summary),
            "remaining_paid_credits": self._state.remaining_paid_credits(record),
        }
        status = contract.REPLAYED_STATUS if replayed else contract.CREATED_STATUS
        if self.profile == "production" and not replayed:
            status = PRODUCTION_CREATED_STATUS
        return _json(body_out, request_id, status, headers)

    def _shaped(self, enhancement: dict[str, Any]) -> dict[str, Any]:
        """The enhancement as this profile answers it: the production profile leaves out every `status`
        [DOC: API reference examples]; the client derives them from the counts and the items."""
        if self.profile != "production":
            return enhancement
        shaped = {name: value for name, value in enhancement.items() if name != "status"}
        if "items" in shaped:
            shaped["items"] = [{n: v for n, v in item.items() if n != "status"} for item in shaped["items"]]
        return shaped

    async def _status(self, request: Request) -> Response:
        request_id = _request_id(request)
        instead, _ = await self._fault("status", request_id, request)
        if instead is not None:
            return instead
        try:
            record = self._state.authenticate(bearer_key(request.headers, request.query_params.multi_items()))
            enhancement, headers = self._state.poll(record, request.path_params["enhancement_id"])
        except ApiError as error:
            return _api_error(error, request_id)
        return _json({"enhancement": self._shaped(enhancement)}, request_id, 200, headers)

    async def _result(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        stem, dot, extension = name.rpartition(".")
        thumbnail = stem.endswith("_thumb")
        item_id = stem.removesuffix("_thumb")
        data = (
            self._state.result(request.path_params["enhancement_id"], item_id, thumbnail)
            if dot and extension == "png"
            else None
        )
        if data is None:
            return _error(404, contract.NOT_FOUND, "Result not found.", _request_id(request))
        return Response(
            data, media_type=contract.RESULT_CONTENT_TYPE, headers={"Cache-Control": "public, max-age=86400"}
        )

    # --- sandbox-only endpoints -------------------------------------------------------------------

    async def _stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise PayloadError("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise PayloadError("the body must be a JSON object")
        return body

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse({"ok": True})
        try:
            body = await self._body(request)
            self.faults.add(fault_from_body(body))
        except (PayloadError, ValueError, TypeError) as exc:
            return _error(400, contract.INVALID_PAYLOAD, str(exc), _request_id(request))
        return JSONResponse({"ok": True})

    async def _live_keys_endpoint(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            self.add_live_key(
                str(body.get("key", "")),
                purchased=int(body.get("purchased", 0)),
                available=int(body.get("available", 0)),
                account=body.get("account"),
            )
        except (PayloadError, ValueError, TypeError) as exc:
            return _error(400, contract.INVALID_PAYLOAD, str(exc), _request_id(request))
        return JSONResponse({"ok": True})

    # --- every other failure in the envelope ------------------------------------------------------

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = (
            contract.NOT_FOUND
            if exc.status_code == 404
            else "method_not_allowed"
            if exc.status_code == 405
            else "http_error"
        )
        return _error(exc.status_code, code, str(exc.detail), _request_id(request), dict(exc.headers or {}))

    async def _crash(self, request: Request, exc: Exception) -> Response:
        return _error(500, contract.INTERNAL_ERROR, "The service failed to process the request.", _request_id(request))
