"""Asynchronous processing of accepted enhancements, and webhook delivery.

One daemon thread per job (at most `active_jobs_per_account` run per account): queued ->
processing -> items complete one after another, item i no earlier than `seconds_per_item * (i + 1)`
after the job started -> completed / partially_completed / failed. Each item downloads its
source with the documented rules (CONTRACTS.md §1, Source images — except that loopback is
allowed here, the real service rejects it) and runs `enhance`. A bad source fails that item only.

Webhooks go out from a small thread pool, signed as documented, retried on non-2xx or network
errors a few times; best-effort, like the real thing (the status endpoint stays the truth).
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from PIL import Image, UnidentifiedImageError

from ....sandbox_kit.faults import FaultBook
from ....sandbox_kit.webhooks import WebhookPoster
from .. import contract, webhooks
from . import enhance
from .state import EnhancementState, ItemState, SandboxState

log = structlog.get_logger(__name__)

WEBHOOK_RETRY_DELAYS = (0.2, 1.0, 3.0)  # seconds before each retry after the first attempt
WEBHOOK_TIMEOUT_SECONDS = 5.0


class SourceError(Exception):
    """A source image that cannot be used: fails its item with `code` and `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def source_client() -> httpx.Client:
    return httpx.Client(
        follow_redirects=True,
        max_redirects=contract.MAX_SOURCE_REDIRECTS,
        timeout=contract.SOURCE_TIMEOUT_SECONDS,
        trust_env=False,  # sources are fetched directly, never through an environment proxy
    )


def fetch_source(http: httpx.Client, url: str) -> bytes:
    """The source's bytes, checked: ≤ 10 MB, ≤ 3 redirects, 10 s, a JPEG/PNG/WebP whose Content-Type matches."""
    deadline = time.monotonic() + contract.SOURCE_TIMEOUT_SECONDS
    chunks: list[bytes] = []
    try:
        with http.stream("GET", url) as response:
            if not response.is_success:
                raise SourceError(contract.SOURCE_DOWNLOAD_FAILED, f"The source answered HTTP {response.status_code}.")
            declared = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > contract.MAX_SOURCE_BYTES:
                raise SourceError(contract.SOURCE_TOO_LARGE, "The source is larger than 10 MB.")
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > contract.MAX_SOURCE_BYTES:
                    raise SourceError(contract.SOURCE_TOO_LARGE, "The source is larger than 10 MB.")
                if time.monotonic() > deadline:
                    raise SourceError(contract.SOURCE_DOWNLOAD_FAILED, "The source download timed out.")
                chunks.append(chunk)
    except httpx.TooManyRedirects:
        raise SourceError(contract.SOURCE_DOWNLOAD_FAILED, "The source redirected more than 3 times.") from None
    except httpx.TimeoutException:
        raise SourceError(contract.SOURCE_DOWNLOAD_FAILED, "The source download timed out.") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceError(
            contract.SOURCE_DOWNLOAD_FAILED, f"The source could not be downloaded ({type(exc).__name__})."
        ) from None
    data = b"".join(chunks)
    check_source_type(data, declared)
    return data


def check_source_type(data: bytes, declared: str) -> None:
    """JPEG, PNG or WebP bytes, announced with the matching Content-Type."""
    try:
        sniffed = Image.open(io.BytesIO(data)).format
    except (UnidentifiedImageError, OSError, ValueError):
        sniffed = None
    expected = contract.SOURCE_CONTENT_TYPES.get(sniffed or "")
    if expected is None:
        raise SourceError(contract.UNSUPPORTED_SOURCE_TYPE, "The source is not a JPEG, PNG or WebP image.")
    if declared != expected:
        raise SourceError(
            contract.SOURCE_CONTENT_TYPE_MISMATCH,
            f"The source's Content-Type {declared or '(none)'!r} does not match its {sniffed} bytes.",
        )


class WebhookSender(WebhookPoster):
    """Signed, retried, best-effort webhook deliveries from a small thread pool."""

    def __init__(
        self,
        stop: threading.Event,
        clock: Callable[[], float],
        faults: FaultBook,
        retry_delays: tuple[float, ...] = WEBHOOK_RETRY_DELAYS,
    ) -> None:
        super().__init__(
            stop, faults, retry_delays=retry_delays, timeout=WEBHOOK_TIMEOUT_SECONDS, thread_name="aigen-webhook"
        )
        self._clock = clock

    def send(self, job: EnhancementState, body: dict[str, Any]) -> None:
        url = job.payload.webhook_url
        if url is None:
            return
        event_id = f"evt_{uuid.uuid4().hex}"  # a duplicate is the same event (same id) delivered again
        raw = json.dumps(body, separators=(",", ":")).encode()
        api_key = job.key.key

        def headers() -> dict[str, str]:
            timestamp = str(int(self._clock()))  # fresh at each attempt, so receivers' skew checks pass
            return {
                "Content-Type": "application/json",
                contract.SIGNATURE_HEADER: webhooks.sign(api_key, timestamp, event_id, raw),
                contract.TIMESTAMP_HEADER: timestamp,
                contract.EVENT_ID_HEADER: event_id,
            }

        self.post(url, raw, headers, lambda: log.warning("webhook_abandoned", event_id=event_id))


class Processor:
    """Runs each accepted job in its own thread; status advances without any request."""

    def __init__(
        self, state: SandboxState, sender: WebhookSender, seconds_per_item: float, stop: threading.Event
    ) -> None:
        self._state = state
        self._sender = sender
        self._seconds_per_item = seconds_per_item
        self._stop = stop

    def submit(self, job: EnhancementState) -> None:
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"aigen-job:{job.id[:8]}").start()

    def _run(self, job: EnhancementState) -> None:
        self._state.start_processing(job)
        started = time.monotonic()
        with source_client() as http:
            for position, item in enumerate(job.items):
                self._state.start_item(item)
                result, error = self._work(http, job, item)
                due = started + (position + 1) * self._seconds_per_item
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return  # the sandbox is closing
                item_json = self._state.finish_item(job, item, result=result, error=error)
                event = contract.EVENT_ITEM_COMPLETED if result is not None else contract.EVENT_ITEM_FAILED
                self._sender.send(job, {"type": event, "enhancement_id": job.id, "item": item_json})
        status = self._state.finish(job)
        log.info("enhancement_finished", enhancement_id=job.id, status=status)
        self._sender.send(
            job, {"type": contract.EVENT_ENHANCEMENT_COMPLETED, "enhancement_id": job.id, "status": status}
        )

    def _work(
        self, http: httpx.Client, job: EnhancementState, item: ItemState
    ) -> tuple[tuple[bytes, bytes] | None, tuple[str, str] | None]:
        if job.fail_items:  # an injected "fail": accepted, then the work fails
            return None, (contract.ENHANCEMENT_FAILED, "The image could not be enhanced.")
        try:
            data = fetch_source(http, item.source_url)
            image = enhance.enhance(data, preset=job.payload.preset, preservation_level=job.payload.preservation_level)
            return (enhance.to_png(image), enhance.to_png(enhance.thumbnail(image))), None
        except SourceError as exc:
            return None, (exc.code, exc.message)
        except Exception as exc:  # any processing failure fails this item, never the thread
            log.warning("item_failed", enhancement_id=job.id, item_id=item.id, error=type(exc).__name__)
            return None, (contract.ENHANCEMENT_FAILED, "The image could not be enhanced.")
