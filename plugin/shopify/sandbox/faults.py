"""Faults a test or a demo can ask the sandbox to inject, and the HTTP answers they produce.

The plan is a `FaultBook` (sandbox_kit/faults.py), so Shopify speaks the providers' fault
language: `count`, an exact schedule (`skip`) or a rate (`probability`, seeded), per endpoint:
- "graphql" (narrowed to one operationName by `operation`): `status` 429/500/502/503 (with or
  without `retry_after`) answered instead of executing — bodies as Shopify's edge sends them, JSON
  for 429 and 500, an HTML page for 502/503; `mode` "throttled" (the bucket is emptied when the
  request arrives: THROTTLED); "hang", "html", "reset", "truncated", "non_json", "wrong_shape";
- "media": `mode` "fail" — the next media created or replaced ends FAILED with `code`;
- "webhook" (the product webhooks the shop sends): `mode` "duplicate" (sent twice, same webhook
  id) or "late" (held back `seconds`, so later ones overtake it);
- "bulk" (the next bulk operations created, bulk.py): `mode` "fail" (FAILED with errorCode `code`:
  INTERNAL_SERVER_ERROR, TIMEOUT or ACCESS_DENIED; no data), "partial" (FAILED with `code`, the
  lines made before the failure at `partialDataUrl`, `url` null), "expired" (its results expire
  `seconds` after it completes; 0: EXPIRED at once);
- "bulk_download" (GET of a bulk result file): `status` (as the storage bucket answers: an XML
  error), or a `mode` of the graphql endpoint's: "truncated" cuts the JSONL off mid-stream (half
  its lines, then half a line, then the connection closes), "reset", "hang", "html", ...

Not thread-safe on its own: the store calls it under its lock (the book has its own lock too).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ...sandbox_kit.faults import ANSWER_MODES, WEBHOOK, WEBHOOK_MODES, Fault, FaultBook, retry_after_headers

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


@dataclass(frozen=True)
class FaultAnswer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def answer_for(fault: Fault) -> FaultAnswer:
    """The answer of a `status` fault, as Shopify's edge words it."""
    headers = retry_after_headers(fault)
    if fault.status == 429:
        body = (
            b'{"errors":"Exceeded 2 calls per second for api client. '
            b'Reduce request rates to resume uninterrupted service."}'
        )
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
    reason = {502: "Bad Gateway", 503: "Service Unavailable"}.get(fault.status, "Error")  # type: ignore[arg-type]  # a status fault has one
    title = f"{fault.status} {reason}"
    html = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return FaultAnswer(fault.status, html.encode(), "text/html; charset=utf-8", headers)  # type: ignore[arg-type]  # as above


GRAPHQL, MEDIA, BULK, BULK_DOWNLOAD = "graphql", "media", "bulk", "bulk_download"
BULK_MODES = ("fail", "partial", "expired")
BULK_ERROR_CODES = ("INTERNAL_SERVER_ERROR", "TIMEOUT", "ACCESS_DENIED")


def fault_book(seed: int = 0) -> FaultBook:
    return FaultBook(
        (GRAPHQL, MEDIA, WEBHOOK, BULK, BULK_DOWNLOAD),
        {
            **{mode: (GRAPHQL, BULK_DOWNLOAD) for mode in ANSWER_MODES},
            "throttled": (GRAPHQL,),
            "fail": (MEDIA, BULK),
            "partial": (BULK,),
            "expired": (BULK,),
            **{mode: (WEBHOOK,) for mode in WEBHOOK_MODES},
        },
        seed=seed,
    )


@dataclass
class FaultPlan:
    book: FaultBook = field(default_factory=fault_book)

    def add(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: float | None = None,
        operation: str | None = None,
        throttle: bool = False,
        fail_media_processing: int = 0,
        code: str | None = None,
        mode: str | None = None,
        seconds: float = 0.0,
        skip: int = 0,
        probability: float = 1.0,
        endpoint: str | None = None,
    ) -> None:
        """Add faults (validated first: a bad request adds nothing). `status` or `mode` go to GraphQL
        requests; `throttle` is mode "throttled"; `fail_media_processing` N media end FAILED;
        `endpoint` "bulk" or "bulk_download" sends `status`/`mode` there instead."""
        if endpoint in (BULK, BULK_DOWNLOAD):
            self.book.add(
                self._bulk_fault(endpoint, status, mode, code, count, seconds, skip, probability, retry_after)
            )
            return
        if endpoint not in (None, GRAPHQL, MEDIA, WEBHOOK):
            raise ValueError(f"endpoint must be one of {GRAPHQL}, {MEDIA}, {WEBHOOK}, {BULK}, {BULK_DOWNLOAD}")
        code = code or "IMAGE_PROCESSING_FAILURE"
        if status is not None and status not in HTTP_FAULT_STATUSES:
            raise ValueError(f"status must be one of {HTTP_FAULT_STATUSES}")
        if count < 1 or fail_media_processing < 0:
            raise ValueError("count must be >= 1 and fail_media_processing >= 0")
        if fail_media_processing and code not in MEDIA_FAILURE_CODES:
            raise ValueError(f"code must be one of {MEDIA_FAILURE_CODES}")
        if mode == "fail":
            fail_media_processing, mode = fail_media_processing or count, None
        plan: dict[str, Any] = {"skip": skip, "probability": probability}
        faults = []
        if mode in WEBHOOK_MODES:
            faults.append(Fault(WEBHOOK, count=count, mode=mode, seconds=seconds, **plan))
        elif status is not None or mode is not None:
            faults.append(
                Fault(
                    GRAPHQL,
                    count=count,
                    status=status,
                    mode=mode,
                    seconds=seconds,
                    retry_after=retry_after,
                    operation=operation,
                    **plan,
                )
            )
        if throttle:
            faults.append(
                Fault(GRAPHQL, count=1 if status is not None else count, mode="throttled", operation=operation, **plan)
            )
        if fail_media_processing:
            faults.append(Fault(MEDIA, count=fail_media_processing, mode="fail", code=code, **plan))
        if not faults:
            raise ValueError("nothing to inject: give status, mode, throttle or fail_media_processing")
        for fault in faults:
            self.book.check(fault)
        for fault in faults:
            self.book.add(fault)

    @staticmethod
    def _bulk_fault(
        endpoint: str,
        status: int | None,
        mode: str | None,
        code: str | None,
        count: int,
        seconds: float,
        skip: int,
        probability: float,
        retry_after: float | None,
    ) -> Fault:
        if endpoint == BULK:
            if status is not None or mode not in BULK_MODES:
                raise ValueError(f"a bulk fault is a mode: one of {', '.join(BULK_MODES)}")
            if mode != "expired" and (code or "INTERNAL_SERVER_ERROR") not in BULK_ERROR_CODES:
                raise ValueError(f"code must be one of {BULK_ERROR_CODES}")
            if seconds < 0:
                raise ValueError("seconds must be 0 or more")
            code = None if mode == "expired" else code or "INTERNAL_SERVER_ERROR"
        elif status is not None and status not in HTTP_FAULT_STATUSES:
            raise ValueError(f"status must be one of {HTTP_FAULT_STATUSES}")
        return Fault(
            endpoint,
            count=count,
            status=status,
            mode=mode,
            seconds=seconds,
            code=code,
            skip=skip,
            probability=probability,
            retry_after=retry_after,
        )

    def take_bulk(self) -> Fault | None:
        """The fault that meets the bulk operation being created, if any."""
        return self.book.take(BULK)

    def take_bulk_download(self) -> Fault | None:
        """The fault that meets this download of a bulk result file, if any."""
        return self.book.take(BULK_DOWNLOAD)

    def take_graphql(self, operation: str | None) -> Fault | None:
        """The fault that meets this GraphQL request, if any."""
        return self.book.take(GRAPHQL, operation)

    def take_media_failure(self) -> str | None:
        fault = self.book.take(MEDIA)
        return None if fault is None else fault.code or "IMAGE_PROCESSING_FAILURE"

    def clear(self) -> None:
        self.book.clear()

    def as_dict(self) -> dict[str, Any]:
        pending = self.book.as_list()
        http, throttle_next, media, webhook, bulk = [], False, [], [], []
        for fault in pending:
            if fault["endpoint"] in (BULK, BULK_DOWNLOAD):
                bulk.append(
                    {
                        key: fault[key]
                        for key in (
                            "endpoint",
                            "mode",
                            "status",
                            "retry_after",
                            "code",
                            "count",
                            "seconds",
                            "skip",
                            "probability",
                        )
                        if key in fault
                    }
                )
            elif fault["endpoint"] == WEBHOOK:
                webhook.append(
                    {key: fault[key] for key in ("mode", "count", "seconds", "skip", "probability") if key in fault}
                )
            elif fault["endpoint"] == MEDIA:
                media.extend([fault.get("code", "IMAGE_PROCESSING_FAILURE")] * fault["count"])
            elif fault.get("mode") == "throttled":
                throttle_next = True
            else:
                entry = {
                    "status": fault.get("status"),
                    "remaining": fault["count"],
                    "retry_after": fault.get("retry_after"),
                    "operation": fault.get("operation"),
                }
                # The rest of the plan, only where it differs from "the next request, for sure".
                entry.update(
                    {
                        key: fault[key]
                        for key in ("mode", "seconds", "skip", "probability")
                        if key in fault and fault[key] not in (0, 0.0, 1.0)
                    }
                )
                http.append(entry)
        return {
            "http": http,
            "throttle_next": throttle_next,
            "fail_media_processing": media,
            "webhook": webhook,
            "bulk": bulk,
        }
