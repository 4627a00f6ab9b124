"""Faults a test or a demo can ask the sandbox to inject, and the HTTP answers they produce.

- HTTP faults: the next N GraphQL requests (optionally only those with a given operationName) are
  answered with 429/500/502/503 instead of being executed. Bodies are what Shopify's edge sends:
  JSON for 429 and 500, an HTML page for 502/503.
- throttle: the next GraphQL request is THROTTLED (the bucket is emptied when it arrives).
- media processing failures: the next N media created or replaced end FAILED with a given code.

Not thread-safe on its own: the store calls it under its lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

HTTP_FAULT_STATUSES = (429, 500, 502, 503)
MEDIA_FAILURE_CODES = (
    "UNKNOWN",
    "IMAGE_DOWNLOAD_FAILURE",
    "IMAGE_PROCESSING_FAILURE",
    "MEDIA_TIMEOUT_ERROR",
    "UNSUPPORTED_IMAGE_FILE_TYPE",
    "INVALID_IMAGE_FILE_SIZE",
    "INVALID_IMAGE_ASPECT_RATIO",
    "INVALID_IMAGE_RESOLUTION",
)


@dataclass
class HttpFault:
    status: int
    remaining: int
    retry_after: float | None = None
    operation: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "remaining": self.remaining, "retry_after": self.retry_after,
                "operation": self.operation}


@dataclass(frozen=True)
class FaultAnswer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _retry_after(seconds: float) -> str:
    # The header carries whole seconds; round up so a client never comes back too early.
    whole = int(seconds)
    return str(whole if whole == seconds else whole + 1)


def answer_for(fault: HttpFault) -> FaultAnswer:
    headers = {"Retry-After": _retry_after(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.status == 429:
        body = (b'{"errors":"Exceeded 2 calls per second for api client. '
                b'Reduce request rates to resume uninterrupted service."}')
        return FaultAnswer(429, body, "application/json; charset=utf-8", headers)
    if fault.status == 500:
        request_id = str(uuid.uuid4())
        body = (
            '{"errors":[{"message":"Internal error. Looks like something went wrong on our end.\\nRequest ID: '
            + request_id
            + '","extensions":{"code":"INTERNAL_SERVER_ERROR","requestId":"'
            + request_id
            + '"}}]}'
        ).encode()
        return FaultAnswer(500, body, "application/json; charset=utf-8", {**headers, "X-Request-Id": request_id})
    reason = {502: "Bad Gateway", 503: "Service Unavailable"}[fault.status]
    title = f"{fault.status} {reason}"
    html = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return FaultAnswer(fault.status, html.encode(), "text/html; charset=utf-8", headers)


@dataclass
class FaultPlan:
    http: list[HttpFault] = field(default_factory=list)
    throttle_next: bool = False
    media_failures: list[str] = field(default_factory=list)  # one failure code per coming media

    def add(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: float | None = None,
        operation: str | None = None,
        throttle: bool = False,
        fail_media_processing: int = 0,
        code: str = "IMAGE_PROCESSING_FAILURE",
    ) -> None:
        """Add faults (validated first: a bad request adds nothing)."""
        if status is not None and status not in HTTP_FAULT_STATUSES:
            raise ValueError(f"status must be one of {HTTP_FAULT_STATUSES}")
        if count < 1 or fail_media_processing < 0:
            raise ValueError("count must be >= 1 and fail_media_processing >= 0")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if fail_media_processing and code not in MEDIA_FAILURE_CODES:
            raise ValueError(f"code must be one of {MEDIA_FAILURE_CODES}")
        if status is None and not throttle and not fail_media_processing:
            raise ValueError("nothing to inject: give status, throttle or fail_media_processing")
        if status is not None:
            self.http.append(HttpFault(status, count, retry_after, operation))
        if throttle:
            self.throttle_next = True
        self.media_failures.extend([code] * fail_media_processing)

    def take_http(self, operation: str | None) -> HttpFault | None:
        """The fault that answers this request, if any (its count goes down by one)."""
        for fault in self.http:
            if fault.operation is None or fault.operation == operation:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.http.remove(fault)
                return fault
        return None

    def take_throttle(self) -> bool:
        taken, self.throttle_next = self.throttle_next, False
        return taken

    def take_media_failure(self) -> str | None:
        return self.media_failures.pop(0) if self.media_failures else None

    def clear(self) -> None:
        self.http.clear()
        self.throttle_next = False
        self.media_failures.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "http": [f.as_dict() for f in self.http],
            "throttle_next": self.throttle_next,
            "fail_media_processing": list(self.media_failures),
        }
