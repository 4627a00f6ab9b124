"""Asynchronous jobs: each accepted job runs in its own daemon thread, advancing with nobody polling.

    NOT_STARTED (for `not_started_seconds`) -> RUNNING -> COMPLETED, no earlier than the job's
    drawn duration after it was accepted; or ERROR as soon as a source or the processing fails.

Durations are fixed, or drawn uniformly from a (min, max) range by a seeded RNG, so tests can run
in a fraction of a second and benchmarks can ask for ProductAI-like 20-40 s jobs reproducibly.
When a job finishes, the account's webhook (if one is set at that moment) gets the documented body.
"""

from __future__ import annotations

import random
import threading
import time

import structlog

from . import contract, imaging
from .sources import SourceError, fetch_source, source_client
from .state import Job, SandboxState
from .webhooks import WebhookSender

log = structlog.get_logger(__name__)

DurationSpec = float | tuple[float, float]


class JobDurations:
    """How long each job takes: a fixed number of seconds, or uniform in [min, max] from a seeded RNG."""

    def __init__(self, spec: DurationSpec, seed: int | None = 0) -> None:
        low, high = (spec, spec) if isinstance(spec, (int, float)) else spec
        if not 0 <= low <= high:
            raise ValueError("job durations need 0 <= min <= max")
        self._low, self._high = float(low), float(high)
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # jobs are accepted from several threads; the draws stay reproducible

    def draw(self) -> float:
        with self._lock:
            return self._random.uniform(self._low, self._high)


class Processor:
    def __init__(
        self,
        state: SandboxState,
        sender: WebhookSender,
        stop: threading.Event,
        *,
        generate_durations: JobDurations,
        upscale_durations: JobDurations,
    ) -> None:
        self._state = state
        self._sender = sender
        self._stop = stop
        self._durations = {"generate": generate_durations, "upscale": upscale_durations}

    def submit(self, job: Job) -> None:
        duration = self._durations[job.kind].draw()
        threading.Thread(target=self._run, args=(job, duration), daemon=True, name=f"productai-job:{job.id}").start()

    def _run(self, job: Job, duration: float) -> None:
        give_up = self._state.give_up_seconds
        if give_up is not None and duration > give_up:
            # The production profile: a job longer than the service is willing to wait ends in TIMEOUT.
            if self._stop.wait(max(0.0, job.created_at + give_up - time.monotonic())):
                return  # the sandbox is closing
            self._state.finish(job, result=None, error_reason="The job timed out.", outcome=contract.TIMEOUT)
            log.info("productai_job_finished", job_id=job.id, kind=job.kind, ok=False, status=contract.TIMEOUT)
            with self._state.lock:
                url = job.account.webhook_url
            self._sender.send(url, {"status": contract.WEBHOOK_ERROR})
            return
        if self._stop.wait(max(0.0, job.not_started_until - time.monotonic())):
            return  # the sandbox is closing
        result, reason = self._work(job)
        # A result is never early: the job takes its drawn duration, counted from acceptance
        # (NOT_STARTED included). A failure is reported as soon as it is known.
        if result is not None and self._stop.wait(max(0.0, job.created_at + duration - time.monotonic())):
            return  # the sandbox is closing
        self._state.finish(job, result=result, error_reason=reason)
        log.info("productai_job_finished", job_id=job.id, kind=job.kind, ok=result is not None)
        if result is not None:
            body = {"status": contract.WEBHOOK_SUCCESS, "image_url": job.result_url, "job_id": str(job.id)}
        else:
            body = {"status": contract.WEBHOOK_ERROR}
        with self._state.lock:
            url = job.account.webhook_url  # the dashboard setting when the job ends
        self._sender.send(url, body)

    def _work(self, job: Job) -> tuple[bytes | None, str | None]:
        """(result PNG, None) or (None, the reason the job failed)."""
        if job.fail_reason:  # an injected "fail": accepted and charged, then the work fails
            return None, job.fail_reason
        try:
            with source_client() as http:
                sources = [fetch_source(http, url) for url in job.image_urls]
            if job.kind == "upscale":
                return imaging.upscale(sources[0]), None
            return imaging.generate(sources[0]), None
        except SourceError as exc:
            return None, str(exc)
        except Exception as exc:  # any processing failure ends this job in ERROR, never kills the thread
            log.warning("productai_job_failed", job_id=job.id, error=type(exc).__name__)
            return None, f"The image could not be processed ({type(exc).__name__})."
