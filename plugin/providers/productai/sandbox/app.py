"""ProductAISandbox: a loopback emulator of ProductAI's public API, plus a test-only inspection API.

    sandbox = ProductAISandbox(keys={"pai_key_1": 500}, job_seconds=0.1)
    sandbox.start()                         # uvicorn on 127.0.0.1, free port
    client = SomeProductAIClient("pai_key_1", sandbox.base_url)   # base_url ends in /v1, like the real one
    ...
    sandbox.close()

Public API (as ProductAI documents it, CONTRACTS.md §3; choices of ours are in contract.py):
    POST /v1/api/generate        x-api-key   {"model", "image_url": str | [str, str], "prompt"}
    POST /v1/api/upscale         x-api-key   {"image_url"}
    GET  /v1/api/job/{id}        x-api-key
    GET  /results/{id}.png       public: the result image
    All three API endpoints share one budget of 15 requests per sliding minute (per client IP by
    default); a job's tokens are deducted when it is accepted; a finished job is posted to the
    account's webhook URL, if one is set.
Inspection and faults (sandbox only, no auth, at the server root — `server_url`, not `base_url`):
    GET    /_sandbox/stats
    GET    /_sandbox/jobs/{id}       the job as the sandbox sees it, with the reason of an ERROR
    POST   /_sandbox/tokens          {"key", "tokens"}   register a key / set its balance
    POST   /_sandbox/webhook         {"key", "url": str | null}   the account's dashboard webhook
    POST   /_sandbox/faults          {"endpoint": "generate"|"upscale"|"job", "status": 5xx|429, "retry_after"?, "count": n}
                                     {"endpoint": ..., "mode": "hang", "seconds": s, "count": n}
                                     {"endpoint": ..., "mode": "html"|"reset"|"truncated"|"non_json"|"wrong_shape"}
                                     {"endpoint": "generate"|"upscale", "mode": "drop_response" | "fail", "count": n}
                                     {"endpoint": "webhook", "mode": "duplicate" | "late", "seconds"?: s}
                                     (+ "skip", "probability": the plan language of sandbox_kit/faults.py)
    DELETE /_sandbox/faults
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retouch.plugin.serve import LoopbackSandbox

from ....sandbox_kit.faults import (
    FaultBook,
    SandboxFaults,
    answer_for,
    answered_after_work,
    delay_for,
    fault_from_body,
    retry_after_headers,
)
from . import contract
from .errors import ApiError, api_error, bad_request, not_found, rate_limited, server_error, unauthorized
from .processing import DurationSpec, JobDurations, Processor
from .state import Account, SandboxState
from .validation import parse_json_object, validate_generate, validate_upscale
from .webhooks import WebhookSender

Handler = Callable[[Request, bytes, Account], dict[str, Any]]


def _answer(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body, status_code=error.status)


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"status": "OK", "data": data})


class ProductAISandbox(LoopbackSandbox, SandboxFaults):
    """ProductAI on loopback: x-api-key auth, validation, the shared rate limit, tokens, async jobs, webhooks."""

    def __init__(
        self,
        *,
        keys: Mapping[str, int] | None = None,
        webhook_url: str | None = None,
        job_seconds: DurationSpec = 1.0,
        upscale_seconds: DurationSpec | None = None,
        not_started_seconds: float = 0.0,
        seed: int | None = 0,
        requests_per_window: int = contract.REQUESTS_PER_WINDOW,
        window_seconds: float = contract.WINDOW_SECONDS,
        rate_limit_scope: str = contract.RATE_LIMIT_SCOPE,
        out_of_tokens_shape: str = contract.OUT_OF_TOKENS_ALTERNATE,
        webhook_retry_delays: tuple[float, ...] = contract.WEBHOOK_RETRY_DELAYS,
        clock: Callable[[], float] = time.monotonic,
        profile: str = "default",
        give_up_seconds: float | None = None,
    ) -> None:
        """
        profile: "default", or "production": answers as ProductAI's own client code shows the real
            service does [DOC: vendor code]: a failed job ends FAILED (not ERROR), a job longer than
            `give_up_seconds` ends TIMEOUT, and a new job shows NOT_STARTED before RUNNING.
        keys: API key -> token balance (more can be added with set_tokens).
        webhook_url: the dashboard webhook of every key registered here or later (set_webhook overrides).
        job_seconds / upscale_seconds: each job's duration from acceptance, fixed or a (min, max) range
            drawn with `seed` (benchmarks: (20, 40)).
        not_started_seconds: how long a new job shows NOT_STARTED to polls before RUNNING.
        window_seconds / requests_per_window / rate_limit_scope ("ip" | "key"): the shared budget.
        out_of_tokens_shape: "api_error", "code", or "alternate" between the two, starting with "api_error".
        clock: drives the rate-limit windows only (tests may pass a fake one).
        """
        if not_started_seconds < 0:
            raise ValueError("not_started_seconds cannot be negative")
        if profile not in contract.PROFILES:
            raise ValueError(f"profile must be one of {contract.PROFILES}")
        if profile == "production":
            not_started_seconds = max(not_started_seconds, 0.2)
        self._state = SandboxState(
            requests_per_window=requests_per_window,
            window_seconds=window_seconds,
            rate_limit_scope=rate_limit_scope,
            out_of_tokens_shape=out_of_tokens_shape,
            default_webhook_url=webhook_url,
            clock=clock,
        )
        self.profile = profile
        if profile == "production":
            self._state.failure_status = contract.FAILED
            self._state.give_up_seconds = give_up_seconds
        self._not_started_seconds = not_started_seconds
        self._stop = threading.Event()
        self._webhooks = WebhookSender(self._stop, self._state.faults, webhook_retry_delays)
        self._processor = Processor(
            self._state,
            self._webhooks,
            self._stop,
            generate_durations=JobDurations(job_seconds, seed),
            upscale_durations=JobDurations(
                job_seconds if upscale_seconds is None else upscale_seconds, None if seed is None else seed + 1
            ),
        )
        for key, tokens in (keys or {}).items():
            self.set_tokens(key, tokens)
        self.app = Starlette(
            routes=[
                Route(contract.GENERATE_PATH, self._generate, methods=["POST"]),
                Route(contract.UPSCALE_PATH, self._upscale, methods=["POST"]),
                Route(contract.JOB_PATH, self._job, methods=["GET"]),
                Route(contract.RESULT_PATH, self._result, methods=["GET"]),
                Route("/_sandbox/stats", self._stats_endpoint, methods=["GET"]),
                Route("/_sandbox/jobs/{job_id}", self._job_inspection_endpoint, methods=["GET"]),
                Route("/_sandbox/tokens", self._tokens_endpoint, methods=["POST"]),
                Route("/_sandbox/webhook", self._webhook_endpoint, methods=["POST"]),
                Route("/_sandbox/faults", self._faults_endpoint, methods=["POST", "DELETE"]),
            ],
            exception_handlers={HTTPException: self._http_exception, Exception: self._crash},
        )

    # --- running ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The stand-in for https://api.productai.photo/v1: what a client is configured with.
        Results and /_sandbox live at `server_url`."""
        return self.server_url + contract.API_PREFIX

    @property
    def faults(self) -> FaultBook:  # type: ignore[override]  # read-only here: the book lives in the shared state
        return self._state.faults

    def _shutdown(self) -> None:
        """The job threads and webhook deliveries stop with the server."""
        self._stop.set()
        self._webhooks.close()

    # --- inspection and faults (also over HTTP under /_sandbox) -----------------------------------

    def set_tokens(self, key: str, tokens: int) -> None:
        """Register `key` with this balance, or change its balance."""
        self._state.set_tokens(key, tokens)

    def set_webhook(self, key: str, url: str | None) -> None:
        """The account's dashboard webhook URL (None: none). Embed the secret token in its path."""
        self._state.set_webhook(key, url)

    def stats(self) -> dict[str, Any]:
        """Per key: requests by endpoint, 429s, OUT_OF_TOKENS, jobs started, tokens (left, spent, by job,
        by image URL), busiest window; the global busiest window; jobs by status; webhooks; faults."""
        stats = self._state.stats()
        stats["webhooks"] = self._webhooks.stats()
        return stats

    def job(self, job_id: int) -> dict[str, Any] | None:
        """A job as the sandbox sees it (kind, status, tokens, error_reason, result_url), or None."""
        return self._state.inspect_job(job_id)

    # --- the API ----------------------------------------------------------------------------------

    async def _serve(self, request: Request, endpoint: str, handle: Handler) -> Response:
        """Budget, then faults, then auth, then the endpoint itself: the order every API request takes."""
        raw = await request.body()  # received in full first: a "hang" is slow processing, not a slow upload
        key = request.headers.get(contract.API_KEY_HEADER)
        try:
            self._state.admit(endpoint, request.client.host if request.client else "", key)
        except ApiError as error:
            return _answer(error)
        fault = self.faults.take(endpoint)
        spoil = None  # the fault that breaks the answer after the work is done
        if fault is not None:
            if fault.status is not None:
                refusal = rate_limited() if fault.status == 429 else server_error(fault.status)
                return JSONResponse(refusal.body, status_code=refusal.status, headers=retry_after_headers(fault))
            if fault.mode == "fail":
                request.state.fail_job = True  # read by _start: the job is accepted, then fails
            elif answered_after_work(self.faults, fault):
                spoil = fault
            else:
                instead = answer_for(fault)
                if instead is not None:
                    return instead
                await delay_for(fault)
        try:
            if key is None and "authorization" in request.headers:
                raise unauthorized(f"Send the API key in the {contract.API_KEY_HEADER} header.")
            data = handle(request, raw, self._state.authenticate(key))
        except ApiError as error:
            return _answer(error)
        if spoil is not None:
            # The job exists and is paid for; only the answer is lost or broken ("crash between work and reply").
            return answer_for(spoil) or _answer(server_error(500))
        return _ok(data)

    def _start(self, request: Request, job_request: Any, account: Account) -> dict[str, Any]:
        job = self._state.start_job(account, job_request, str(request.base_url), self._not_started_seconds)
        if getattr(request.state, "fail_job", False):
            job.fail_reason = "The image could not be processed (injected)."
        self._processor.submit(job)
        data: dict[str, Any] = {"id": job.id, "status": contract.RUNNING}  # [DOC] always RUNNING here
        if job.kind == "generate":
            data["prompt"] = job_request.prompt
        return data

    async def _generate(self, request: Request) -> Response:
        def handle(request: Request, raw: bytes, account: Account) -> dict[str, Any]:
            return self._start(request, validate_generate(parse_json_object(raw)), account)

        return await self._serve(request, "generate", handle)

    async def _upscale(self, request: Request) -> Response:
        def handle(request: Request, raw: bytes, account: Account) -> dict[str, Any]:
            return self._start(request, validate_upscale(parse_json_object(raw)), account)

        return await self._serve(request, "upscale", handle)

    async def _job(self, request: Request) -> Response:
        def handle(request: Request, raw: bytes, account: Account) -> dict[str, Any]:
            job_id = request.path_params["job_id"]
            if not job_id.isdigit():
                raise bad_request("job_id must be an integer.")
            return self._state.job_data(account, int(job_id))

        return await self._serve(request, "job", handle)

    async def _result(self, request: Request) -> Response:
        stem, dot, extension = request.path_params["name"].rpartition(".")
        data = self._state.result(int(stem)) if dot and extension == "png" and stem.isdigit() else None
        if data is None:
            return _answer(not_found("Result not found."))
        return Response(
            data, media_type=contract.RESULT_CONTENT_TYPE, headers={"Cache-Control": "public, max-age=86400"}
        )

    # --- sandbox-only endpoints -------------------------------------------------------------------

    async def _admin(self, request: Request, act: Callable[[dict[str, Any]], None]) -> Response:
        try:
            act(parse_json_object(await request.body()))
        except ApiError as error:
            return _answer(error)
        except (ValueError, TypeError, KeyError) as exc:
            return _answer(bad_request(str(exc)))
        return JSONResponse({"ok": True})

    async def _stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _job_inspection_endpoint(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        found = self.job(int(job_id)) if job_id.isdigit() else None
        return JSONResponse(found) if found is not None else _answer(not_found("Job not found."))

    async def _tokens_endpoint(self, request: Request) -> Response:
        return await self._admin(request, lambda body: self.set_tokens(str(body["key"]), int(body["tokens"])))

    async def _webhook_endpoint(self, request: Request) -> Response:
        def act(body: dict[str, Any]) -> None:
            url = body.get("url")
            if url is not None and not isinstance(url, str):
                raise ValueError("url must be a string or null")
            self.set_webhook(str(body["key"]), url)

        return await self._admin(request, act)

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse({"ok": True})
        return await self._admin(request, lambda body: self.faults.add(fault_from_body(body)))

    # --- every other failure in the ApiError shape ------------------------------------------------

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = contract.NOT_FOUND if exc.status_code == 404 else "HTTP_ERROR"
        error = api_error(exc.status_code, message, str(exc.detail))
        return JSONResponse(error.body, status_code=error.status, headers=dict(exc.headers or {}))

    async def _crash(self, request: Request, exc: Exception) -> Response:
        return _answer(server_error(500))
