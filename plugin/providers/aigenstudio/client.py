"""A thin async client for AI Gen Studio's product image enhancement API (`/api/v1`).

One method per endpoint. Every failure is mapped to the exception tree in `errors.py` where it
enters; the client never retries — the pipeline decides, and it must retry a create with the SAME
Idempotency-Key so that a lost response never becomes a second charge.

    async with AigenClient(api_key, base_url) as client:
        result = await client.create_enhancement(idempotency_key=..., preset=..., preservation_level="strict",
                                                 images=[SourceImage("8123456789", "https://...")])
        job = await client.get_enhancement(result.enhancement.id)

The API key only ever goes into the Authorization header: never into logs, messages or reprs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pydantic
import structlog

from .. import reading
from ..http import ClosingClient, api_client, first_error
from . import contract
from .errors import (
    AigenError,
    AuthenticationFailed,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidPayload,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)
from .models import (
    CreateResult,
    Enhancement,
    Preset,
    SourceImage,
    enhancement_body,
    error_body,
    parse_rate_limit,
    parse_retry_after,
    presets_body,
)

log = structlog.get_logger(__name__)

# Non-retryable 4xx statuses, by the class that names them. 429, 408 and 5xx are handled apart.
_CLIENT_ERRORS: dict[int, type[AigenError]] = {
    400: InvalidPayload,
    401: AuthenticationFailed,
    402: InsufficientCredits,
    403: AuthenticationFailed,
    404: NotFound,
    409: IdempotencyConflict,
    413: InvalidPayload,
    422: InvalidPayload,
}


class AigenClient(ClosingClient):
    """Async client for one API key. `is_sandbox` is True for `aigen_test_…` keys."""

    def __init__(
        self,
        api_key: str,
        base_url: str = contract.BASE_URL,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not contract.API_KEY_PATTERN.match(api_key):
            raise ValueError(
                f"an AI Gen Studio API key starts with {contract.TEST_KEY_PREFIX!r} or {contract.LIVE_KEY_PREFIX!r}"
                " followed by at least 8 letters, digits or underscores"
            )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._api_key = api_key
        self.is_sandbox: bool = contract.is_test_key(api_key)
        # Requests by outcome ("ok", "rate_limited", "server_error", "client_error", "timeout",
        # "connection_error", "non_json_body"), for metrics; each attempt counts once.
        self.stats: Counter[str] = Counter()
        self._http = api_client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "retouch/aigenstudio"},
        )

    def __repr__(self) -> str:
        return f"AigenClient(base_url={str(self._http.base_url)!r}, is_sandbox={self.is_sandbox})"

    # --- endpoints ----------------------------------------------------------------------------

    async def list_presets(self) -> list[Preset]:
        """The presets (public endpoint: sent without the key)."""
        response, body = await self._request("GET", contract.PRESETS_PATH, authenticated=False)
        try:
            return list(presets_body.validate_python(body).presets)
        except pydantic.ValidationError as exc:
            raise self._unexpected(response, f"presets response: {first_error(exc)}") from None

    async def create_enhancement(
        self,
        *,
        idempotency_key: str,
        preset: str | None,
        preservation_level: str,
        images: Sequence[SourceImage],
        instructions: str | None = None,
        webhook_url: str | None = None,
    ) -> CreateResult:
        """Create an enhancement job (or get back the one this Idempotency-Key already created)."""
        payload: dict[str, Any] = {
            "preservation_level": preservation_level,
            "images": [{"external_id": image.external_id, "source_url": image.source_url} for image in images],
        }
        if preset is not None:  # [DOC: API reference] optional: the service then uses its default
            payload = {"preset": preset, **payload}
        if instructions is not None:
            payload["instructions"] = instructions
        if webhook_url is not None:
            payload["webhook_url"] = webhook_url
        response, body = await self._request(
            "POST",
            contract.ENHANCEMENTS_PATH,
            json_body=payload,
            headers={contract.IDEMPOTENCY_HEADER: idempotency_key},
        )
        if response.status_code not in {*contract.CREATED_STATUSES, contract.REPLAYED_STATUS}:
            raise self._unexpected(response, f"create answered HTTP {response.status_code}")
        try:
            parsed = enhancement_body.validate_python(body)
        except pydantic.ValidationError as exc:
            raise self._unexpected(response, f"create response: {first_error(exc)}") from None
        result = CreateResult(
            enhancement=self._read(parsed.enhancement),
            remaining_paid_credits=parsed.remaining_paid_credits,
            replayed=response.status_code == contract.REPLAYED_STATUS,
            rate_limit=parse_rate_limit(response.headers),
        )
        log.info(
            "created" if not result.replayed else "replayed",
            enhancement_id=result.enhancement.id,
            items=result.enhancement.total_items,
            credits_reserved=result.enhancement.credits_reserved,
        )
        return result

    async def get_enhancement(self, enhancement_id: str) -> Enhancement:
        """The current status of an enhancement and its items (items in the order they were sent)."""
        if not enhancement_id:
            raise ValueError("enhancement_id is empty")
        path = f"{contract.ENHANCEMENTS_PATH}/{quote(enhancement_id, safe='')}"
        response, body = await self._request("GET", path)
        try:
            enhancement = enhancement_body.validate_python(body).enhancement
        except pydantic.ValidationError as exc:
            raise self._unexpected(response, f"status response: {first_error(exc)}") from None
        return self._read(enhancement)

    @staticmethod
    def _read(enhancement: Enhancement) -> Enhancement:
        """The tolerant reader: derive missing statuses; log a status word we do not know (once per job)."""
        enhancement = enhancement.with_derived_status()
        if enhancement.status not in contract.ENHANCEMENT_STATUSES:
            reading.unknown_status("aigenstudio", enhancement.id, enhancement.status)
        for item in enhancement.items:
            if item.status not in contract.ITEM_STATUSES:
                reading.unknown_status("aigenstudio", enhancement.id, item.status, where="item")
        return enhancement

    # --- one request, every failure mapped ------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, Any]:
        """Send one request; return the response and its decoded JSON, or raise an AigenError."""
        request_id = f"req_{uuid.uuid4().hex}"
        all_headers = {contract.REQUEST_ID_HEADER: request_id, **(headers or {})}
        if authenticated:
            all_headers["Authorization"] = f"Bearer {self._api_key}"
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response, body = await self._send(method, path, content, all_headers, request_id)
        except AigenError as exc:
            self.stats[_outcome(exc)] += 1
            raise
        self.stats["ok"] += 1
        return response, body

    async def _send(
        self, method: str, path: str, content: bytes | None, all_headers: dict[str, str], request_id: str
    ) -> tuple[httpx.Response, Any]:
        try:
            response = await self._http.request(method, path, content=content, headers=all_headers)
        except httpx.InvalidURL:
            # httpx reads a redirect's Location even when it does not follow it; a garbled one raises this.
            raise ServiceUnavailable(
                "invalid_redirect", f"{method} {path} answered a redirect to an unusable URL", request_id=request_id
            ) from None
        except httpx.TimeoutException:
            log.warning("timed_out", method=method, path=path, request_id=request_id)
            raise ServiceUnavailable("timeout", f"{method} {path} timed out", request_id=request_id) from None
        except httpx.RequestError as exc:  # connect/read/write/protocol/decoding errors
            log.warning("unreachable", method=method, path=path, request_id=request_id, error=type(exc).__name__)
            raise ServiceUnavailable(
                "connection_error", f"{method} {path} failed: {type(exc).__name__}", request_id=request_id
            ) from None
        request_id = response.headers.get(contract.REQUEST_ID_HEADER) or request_id
        log.debug("requested", method=method, path=path, status=response.status_code, request_id=request_id)
        try:
            body = response.json()
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; nesting too deep
            body = None
            is_json = False
        else:
            is_json = True
        if response.is_success:
            if not is_json:
                # A maintenance page or a proxy's answer in place of the API: try again later.
                raise ServiceUnavailable(
                    "non_json_body",
                    f"{method} {path} answered HTTP {response.status_code} without JSON",
                    status=response.status_code,
                    request_id=request_id,
                )
            return response, body
        raise self._error(response, body if is_json else None, request_id)

    def _error(self, response: httpx.Response, body: Any, request_id: str) -> AigenError:
        status = response.status_code
        code: str | None = None
        message = f"HTTP {status}"
        if body is not None:
            try:
                detail = error_body.validate_python(body).error
            except pydantic.ValidationError:
                pass
            else:
                code = self._clean(detail.code) if detail.code else detail.code
                message = self._clean(detail.message or message)
                request_id = detail.request_id or request_id
        request_id = self._clean(request_id) if request_id else request_id
        if status == 429:
            return RateLimited(
                status,
                code,
                message,
                request_id,
                retry_after=parse_retry_after(response.headers, time.time()),
                rate_limit=parse_rate_limit(response.headers),
            )
        if status >= 500 or status == 408:
            reason = "server_error" if body is not None else "non_json_body"
            return ServiceUnavailable(reason, message, status=status, code=code, request_id=request_id)
        error_class = _CLIENT_ERRORS.get(status, UnexpectedResponse)
        return error_class(status, code, message, request_id)

    def _clean(self, text: str) -> str:
        """A server-supplied text never echoes the key back (the daemon scrubs again: this client is
        used on its own too)."""
        return text.replace(self._api_key, "[redacted]")

    def _unexpected(self, response: httpx.Response, message: str) -> UnexpectedResponse:
        request_id = response.headers.get(contract.REQUEST_ID_HEADER)
        return UnexpectedResponse(response.status_code, None, message, request_id)


def _outcome(error: AigenError) -> str:
    """The metrics label of a failed request: a small, fixed set of words."""
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ServiceUnavailable):
        return error.reason if error.reason in ("timeout", "connection_error", "non_json_body") else "server_error"
    return "client_error"
