"""The account webhook: an unsigned JSON POST to the dashboard URL when a job finishes.

ProductAI signs nothing [DOC]; the receiver's only protection is a secret token in the URL's
path, which this sender simply posts to. Only HTTP 200 counts as delivered [DOC: "must respond
with HTTP 200"]; other answers and network errors are retried a few times [ASSUME], from a small
thread pool so a slow receiver never holds up a job.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import structlog

from . import contract
from ...sandbox_faults import FaultBook, webhook_plan

log = structlog.get_logger(__name__)


class WebhookSender:
    def __init__(self, stop: threading.Event, faults: FaultBook,
                 retry_delays: tuple[float, ...] = contract.WEBHOOK_RETRY_DELAYS) -> None:
        self._stop = stop
        self._faults = faults
        self._retry_delays = retry_delays
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="productai-webhook")
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed_attempts = 0
        self.abandoned = 0

    def send(self, url: str | None, body: dict[str, Any]) -> None:
        if url is None or self._stop.is_set():
            return
        raw = json.dumps(body, separators=(",", ":")).encode()
        copies, hold_back = webhook_plan(self._faults)
        for _ in range(copies):
            self._pool.submit(self._deliver, url, raw, hold_back)

    def _deliver(self, url: str, raw: bytes, hold_back: float = 0.0) -> None:
        if hold_back and self._stop.wait(hold_back):  # a "late" fault: later webhooks overtake this one
            return
        with httpx.Client(timeout=contract.WEBHOOK_TIMEOUT_SECONDS, trust_env=False) as http:
            for delay in (0.0, *self._retry_delays):
                if delay and self._stop.wait(delay):
                    return
                try:
                    ok = http.post(url, content=raw, headers={"Content-Type": "application/json"}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    if ok:
                        self.delivered += 1
                        return
                    self.failed_attempts += 1
        with self._lock:
            self.abandoned += 1
        log.warning("productai_webhook_abandoned")  # never log the URL: its path holds the receiver's secret

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"delivered": self.delivered, "failed_attempts": self.failed_attempts, "abandoned": self.abandoned}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
