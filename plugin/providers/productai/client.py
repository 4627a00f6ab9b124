"""A thin async client for ProductAI's documented API (`/v1/api/...`, CONTRACTS.md §3).

One method per endpoint. Every failure is mapped to the exception tree in `errors.py` where it
enters. The client NEVER retries: ProductAI has no idempotency key and deducts tokens when a job
is accepted, so a second generate after a lost answer may be a second charge — the pipeline decides.

    async with ProductAIClient(api_key) as client:
        job_id = await client.generate(model="kontext-pro", image_url="https://...", prompt="...")
        status = await client.job(job_id)       # poll no faster than every 3-5 s: 15 requests/min in all

The API key only ever goes into the x-api-key header: never into logs, messages or reprs.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import pydantic
import structlog

from .. import reading
from ..http import ClosingClient, api_client, first_error
from . import contract
from .errors import (
    OUT_OF_TOKENS,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OutOfTokens,
    ProductAIError,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

BASE_URL = "https://api.productai.photo/v1"
API_KEY_HEADER = "x-api-key"
GENERATE_PATH = "/api/generate"
UPSCALE_PATH = "/api/upscale"
JOB_PATH = "/api/job/{job_id}"
JOB_STATUSES = contract.JOB_STATUSES
TERMINAL_STATUSES = contract.TERMINAL_STATUSES  # ERROR, FAILED, TIMEOUT and COMPLETED
# Where a job's failure reason might be, if ProductAI ever gives one (the documented ERROR data is bare).
_REASON_FIELDS = ("message", "error", "details", "reason")
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class JobStatus:
    id: int
    status: str  # NOT_STARTED | RUNNING | COMPLETED (image_url set) | ERROR | FAILED | TIMEOUT | another word
    image_url: str | None = None
    message: str | None = None  # the failure reason, when the answer gives one

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in contract.FAILURE_STATUSES


@dataclass(frozen=True)
class WebhookEvent:
    job_id: int | None  # None: the documented error payload carries no job id
    status: str  # "success" | "error"
    image_url: str | None  # set for "success"


# --- response shapes --------------------------------------------------------------------------------

_Id = pydantic.StrictInt


class _Started(pydantic.BaseModel):
    id: _Id


class _StartedBody(pydantic.BaseModel):
    status: Literal["OK"]
    data: _Started


class _Job(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    id: _Id
    status: Annotated[
        str, pydantic.StringConstraints(strict=True, min_length=1, max_length=100)
    ]  # tolerant: see contract
    image_url: pydantic.StrictStr | None = None


class _JobBody(pydantic.BaseModel):
    status: Literal["OK"]
    data: _Job


_started_body = pydantic.TypeAdapter(_StartedBody)
_job_body = pydantic.TypeAdapter(_JobBody)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP date; None if absent or garbled."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


# --- the client ---------------------------------------------------------------------------------------


class ProductAIClient(ClosingClient):
    """Async client for one ProductAI API key."""

    def __init__(
        self,
        api_key: str,
        base_url: str = BASE_URL,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or not api_key.isprintable() or api_key != api_key.strip():
            raise ValueError("the ProductAI API key must be a non-empty printable string without surrounding spaces")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._api_key = api_key
        # Requests by outcome ("ok", "rate_limited", "server_error", "client_error", "timeout",
        # "connection_error", "non_json_body"), for metrics; each request counts once.
        self.stats: Counter[str] = Counter()
        self._http = api_client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "retouch/productai"},
        )

    def __repr__(self) -> str:
        return f"ProductAIClient(base_url={str(self._http.base_url)!r})"

    # --- endpoints ----------------------------------------------------------------------------

    async def generate(self, *, model: str, image_url: str | list[str], prompt: str) -> int:
        """Start a generation job (its tokens are spent now); the job id."""
        urls = image_url if isinstance(image_url, str) else list(image_url)
        payload = {"model": model, "image_url": urls, "prompt": prompt}
        job_id = await self._start(GENERATE_PATH, payload)
        log.info("productai_job_started", kind="generate", model=model, job_id=job_id)
        return job_id

    async def upscale(self, *, image_url: str) -> int:
        """Start an upscale job (20 tokens, spent now); the job id."""
        job_id = await self._start(UPSCALE_PATH, {"image_url": image_url})
        log.info("productai_job_started", kind="upscale", job_id=job_id)
        return job_id

    async def job(self, job_id: int) -> JobStatus:
        """A job's current status; `image_url` once COMPLETED."""
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 0:
            raise ValueError("job_id must be a non-negative int")
        return await self._request("GET", JOB_PATH.format(job_id=job_id), parse=lambda body: self._job(job_id, body))

    def _job(self, job_id: int, body: Any) -> JobStatus:
        data = _job_body.validate_python(body).data
        if data.id != job_id:
            raise ValueError(f"the answer is about job {data.id}, not {job_id}")
        if data.status == "COMPLETED" and not (data.image_url and _is_http_url(data.image_url)):
            raise ValueError("COMPLETED without an http(s) image_url")
        if data.status not in JOB_STATUSES:
            reading.unknown_status("productai", job_id, data.status)
        extra = data.model_extra or {}
        reasons = [extra[name] for name in _REASON_FIELDS if isinstance(extra.get(name), str) and extra[name]]
        reason = reasons[0] if reasons else None
        return JobStatus(
            id=data.id,
            status=data.status,
            image_url=data.image_url if data.status == "COMPLETED" else None,
            message=self._clean(reason) if data.status in contract.FAILURE_STATUSES and reason else None,
        )

    # --- one request, every failure mapped ------------------------------------------------------

    async def _start(self, path: str, payload: dict[str, Any]) -> int:
        return await self._request(
            "POST", path, parse=lambda body: _started_body.validate_python(body).data.id, json_body=payload
        )

    async def _request(self, method: str, path: str, *, parse: Callable[[Any], T], json_body: Any = None) -> T:
        """Send one request and parse its JSON answer, or raise a ProductAIError. Never retried.
        Each request counts once in `stats`, by outcome."""
        headers = {API_KEY_HEADER: self._api_key}
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        try:
            response, body = await self._send(method, path, content, headers)
            try:
                result = parse(body)
            except (pydantic.ValidationError, ValueError) as exc:
                reason = first_error(exc) if isinstance(exc, pydantic.ValidationError) else str(exc)
                if OUT_OF_TOKENS in response.text:  # an error body with a 2xx status: still OUT_OF_TOKENS
                    raise self._error(method, path, response, body, True) from None
                raise UnexpectedResponse(None, f"{method} {path}: {reason}", status=response.status_code) from None
        except ProductAIError as exc:
            self.stats[_outcome(exc)] += 1
            raise
        self.stats["ok"] += 1
        return result

    async def _send(
        self, method: str, path: str, content: bytes | None, headers: dict[str, str]
    ) -> tuple[httpx.Response, Any]:
        try:
            response = await self._http.request(method, path, content=content, headers=headers)
        except httpx.InvalidURL:
            # httpx reads a redirect's Location even when it does not follow it; a garbled one raises this.
            raise ServiceUnavailable(
                "invalid_redirect", f"{method} {path} answered a redirect to an unusable URL"
            ) from None
        except httpx.TimeoutException:
            log.warning("productai_timed_out", method=method, path=path)
            raise ServiceUnavailable("timeout", f"{method} {path} timed out") from None
        except httpx.RequestError as exc:  # connect/read/write/protocol/decoding errors
            log.warning("productai_unreachable", method=method, path=path, error=type(exc).__name__)
            raise ServiceUnavailable("connection_error", f"{method} {path} failed: {type(exc).__name__}") from None
        log.debug("productai_requested", method=method, path=path, status=response.status_code)
        try:
            body, is_json = response.json(), True
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; nesting too deep
            body, is_json = None, False
        if response.is_success and is_json:
            return response, body
        raise self._error(method, path, response, body, is_json)

    def _error(self, method: str, path: str, response: httpx.Response, body: Any, is_json: bool) -> ProductAIError:
        status = response.status_code
        code, message = _code_and_message(body)
        code = self._clean(code) if code else code  # a code is server text too
        message = self._clean(message or f"{method} {path} answered HTTP {status}")
        # OUT_OF_TOKENS comes in two shapes and with any status [DOC]: look for it first, anywhere.
        if OUT_OF_TOKENS in response.text:
            log.warning("productai_out_of_tokens", path=path, status=status)
            return OutOfTokens(OUT_OF_TOKENS, message, status=status)
        if status == 429:
            return RateLimited(
                code,
                message,
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after"), time.time()),
            )
        if status in (401, 403):
            return AuthenticationFailed(code, message, status=status)
        if 300 <= status < 400:  # never followed: the key must not travel to another URL
            return UnexpectedResponse(code, f"{method} {path} answered a redirect (HTTP {status})", status=status)
        if not is_json:
            # A proxy's or maintenance page in place of the API: it says nothing about our request.
            return ServiceUnavailable(
                "non_json_body", f"{method} {path} answered HTTP {status} without JSON", status=status
            )
        if status >= 500 or status == 408:
            return ServiceUnavailable("server_error", message, status=status, code=code)
        if status == 404:
            return NotFound(code, message, status=status)
        if 400 <= status < 500:
            return InvalidRequest(code, message, status=status)
        return UnexpectedResponse(code, f"{method} {path} answered HTTP {status}: {message}", status=status)

    def _clean(self, text: str) -> str:
        """A server-supplied text, shortened, and never echoing the key back."""
        return text.replace(self._api_key, "[redacted]")[:_MAX_MESSAGE]


def _code_and_message(body: Any) -> tuple[str | None, str | None]:
    """(code, message) from either error shape: {"name":"ApiError","message":CODE,"details":text}
    or {"code":CODE,"message":text}."""
    if not isinstance(body, dict):
        return None, None

    def text(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value else None

    if text("code"):
        return text("code"), text("message") or text("details")
    if body.get("name") == "ApiError":
        return text("message"), text("details") or text("message")
    return None, text("message") or text("error") or text("details")


def _outcome(error: ProductAIError) -> str:
    """The metrics label of a failed request: a small, fixed set of words."""
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ServiceUnavailable):
        return error.reason if error.reason in ("timeout", "connection_error", "non_json_body") else "server_error"
    if isinstance(error, UnexpectedResponse):
        return "server_error"  # the server answered something the contract does not allow
    return "client_error"


# --- webhook ----------------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]{1,18}")


def parse_webhook(body: bytes) -> WebhookEvent:
    """The account webhook's payload [DOC]: {"status":"success","image_url","job_id":"12312"} (the id
    as a string) or {"status":"error"} (maybe with job_id). ValueError with a short reason otherwise.
    The webhook is unsigned: treat it as a hint to poll the job, never as the truth."""
    try:
        payload = json.loads(body)
    except (ValueError, TypeError):
        raise ValueError("webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("webhook body is not a JSON object")
    status = payload.get("status")
    if status not in ("success", "error"):
        raise ValueError("webhook status is not 'success' or 'error'")
    raw_id = payload.get("job_id")
    if raw_id is None:
        job_id = None
    elif isinstance(raw_id, str) and _DIGITS.fullmatch(raw_id):
        job_id = int(raw_id)
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool) and raw_id >= 0:
        job_id = raw_id  # tolerated: the API's own ids are ints
    else:
        raise ValueError("webhook job_id is not a job id")
    if status == "error":
        return WebhookEvent(job_id=job_id, status="error", image_url=None)
    if job_id is None:
        raise ValueError("success webhook without job_id")
    image_url = payload.get("image_url")
    if not isinstance(image_url, str) or not _is_http_url(image_url):
        raise ValueError("success webhook without an http(s) image_url")
    return WebhookEvent(job_id=job_id, status="success", image_url=image_url)
