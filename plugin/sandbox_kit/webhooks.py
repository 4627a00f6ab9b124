"""Webhook deliveries of the sandboxes (AI Gen Studio, ProductAI, Shopify): POST a body from a
small thread pool, so a slow receiver never holds up the service; retry after set delays; count
what became of each (delivered, failed attempts, abandoned).

The fault book decides per webhook (`webhook_plan`): a `duplicate` is the same delivery posted
twice, a `late` one is held back so later ones overtake it. What differs between the services —
the headers (a signature, a fresh timestamp per attempt), which answers count as received, what
an abandoned delivery may log — is the caller's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from .faults import FaultBook, webhook_plan

Headers = Callable[[], dict[str, str]]  # asked at each attempt (a timestamp may be part of them)


class WebhookPoster:
    def __init__(
        self,
        stop: threading.Event,
        faults: FaultBook,
        *,
        retry_delays: tuple[float, ...],
        timeout: float,
        thread_name: str,
        received: Callable[[httpx.Response], bool] = lambda response: response.is_success,
    ) -> None:
        self._stop = stop
        self._faults = faults
        self._retry_delays = retry_delays
        self._timeout = timeout
        self._received = received
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=thread_name)
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed_attempts = 0
        self.abandoned = 0

    def post(self, url: str, body: bytes, headers: Headers, on_abandoned: Callable[[], None]) -> None:
        """Deliver `body` to `url` in the background, as the fault book says (once, twice, late)."""
        if self._stop.is_set():
            return
        copies, hold_back = webhook_plan(self._faults)
        for _ in range(copies):
            self._pool.submit(self._deliver, url, body, headers, on_abandoned, hold_back)

    def _deliver(
        self, url: str, body: bytes, headers: Headers, on_abandoned: Callable[[], None], hold_back: float
    ) -> None:
        if hold_back and self._stop.wait(hold_back):  # a "late" fault: later deliveries overtake this one
            return
        with httpx.Client(timeout=self._timeout, trust_env=False) as http:
            for delay in (0.0, *self._retry_delays):
                if delay and self._stop.wait(delay):
                    return
                try:
                    ok = self._received(http.post(url, content=body, headers=headers()))
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    if ok:
                        self.delivered += 1
                        return
                    self.failed_attempts += 1
        with self._lock:
            self.abandoned += 1
        on_abandoned()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"delivered": self.delivered, "failed_attempts": self.failed_attempts, "abandoned": self.abandoned}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
