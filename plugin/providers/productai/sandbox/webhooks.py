"""The account webhook: an unsigned JSON POST to the dashboard URL when a job finishes.

ProductAI signs nothing [DOC]; the receiver's only protection is a secret token in the URL's
path, which this sender simply posts to. Only HTTP 200 counts as delivered [DOC: "must respond
with HTTP 200"]; other answers and network errors are retried a few times [ASSUME], from a small
thread pool so a slow receiver never holds up a job.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import structlog

from ....sandbox_kit.faults import FaultBook
from ....sandbox_kit.webhooks import WebhookPoster
from . import contract

log = structlog.get_logger(__name__)
HEADERS = {"Content-Type": "application/json"}


class WebhookSender(WebhookPoster):
    def __init__(
        self, stop: threading.Event, faults: FaultBook, retry_delays: tuple[float, ...] = contract.WEBHOOK_RETRY_DELAYS
    ) -> None:
        super().__init__(
            stop,
            faults,
            retry_delays=retry_delays,
            timeout=contract.WEBHOOK_TIMEOUT_SECONDS,
            thread_name="productai-webhook",
            received=lambda response: response.status_code == 200,
        )

    def send(self, url: str | None, body: dict[str, Any]) -> None:
        if url is not None:
            # Never log the URL: its path holds the receiver's secret.
            self.post(
                url,
                json.dumps(body, separators=(",", ":")).encode(),
                lambda: HEADERS,
                lambda: log.warning("productai_webhook_abandoned"),
            )
