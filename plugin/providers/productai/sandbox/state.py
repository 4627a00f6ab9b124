"""The sandbox's memory and rules: keys and their tokens, the shared request budget, jobs, faults, stats.

No HTTP here: the app turns requests into calls on `SandboxState`, and `ApiError`s into answers.
Every public method takes the one lock, because the app (uvicorn's thread) and the job threads
both change this state. Two clocks: `clock` drives the rate-limit windows (tests may replace
it); jobs use time.monotonic, because they run on real threads that really wait.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ....sandbox_kit.faults import WEBHOOK, WEBHOOK_MODES, FaultBook, answer_modes
from . import contract
from .errors import ApiError, not_found, out_of_tokens, rate_limited, unauthorized
from .ratelimit import SlidingWindow, unlimited
from .validation import GenerateRequest, UpscaleRequest

FIRST_JOB_ID = 22292  # the id in the documentation's examples; ids then count up
# Faults: every endpoint can answer a 5xx, hang or answer HTML; generate and upscale can also
# start (and charge) their job and then lose the answer.
FAULT_MODES = {
    **answer_modes(contract.ENDPOINTS),
    "drop_response": ("generate", "upscale"),
    "fail": ("generate", "upscale"),
    **{mode: (WEBHOOK,) for mode in WEBHOOK_MODES},
}


@dataclass
class Account:
    """One API key = one account [ASSUME]: its tokens, its dashboard webhook URL, its stats."""

    key: str = field(repr=False)
    tokens: int
    window_seconds: float
    webhook_url: str | None = None
    requests: Counter[str] = field(default_factory=Counter)  # answered (not 429) requests by endpoint
    rate_limited: int = 0  # 429s answered to this key
    out_of_tokens: int = 0
    jobs_started: Counter[str] = field(default_factory=Counter)  # by kind
    tokens_spent: int = 0
    tokens_by_job: dict[int, int] = field(default_factory=dict)
    tokens_by_image_url: Counter[str] = field(default_factory=Counter)  # the product image of each job
    jobs_by_image_url: Counter[str] = field(default_factory=Counter)
    window: SlidingWindow = field(init=False)  # measures this key's busiest window

    def __post_init__(self) -> None:
        self.window = unlimited(self.window_seconds)


@dataclass
class Job:
    id: int
    account: Account = field(repr=False)
    kind: str  # "generate" | "upscale"
    request: GenerateRequest | UpscaleRequest
    tokens: int
    base_url: str  # where this sandbox was reached, for the result URL
    created_at: float  # time.monotonic()
    not_started_until: float
    outcome: str | None = None  # COMPLETED | ERROR (FAILED | TIMEOUT: production profile) once finished
    error_reason: str | None = None
    finished_at: float | None = None
    fail_reason: str | None = None  # a "fail" fault: the job ends in ERROR with this reason

    @property
    def image_urls(self) -> tuple[str, ...]:
        return self.request.image_urls if isinstance(self.request, GenerateRequest) else (self.request.image_url,)

    @property
    def result_url(self) -> str:
        return self.base_url + contract.RESULT_PATH.format(name=f"{self.id}.png")

    def status(self, now: float) -> str:
        if self.outcome is not None:
            return self.outcome
        return contract.NOT_STARTED if now < self.not_started_until else contract.RUNNING

    def data_json(self, now: float) -> dict[str, Any]:
        """`data` of a job answer [DOC]: prompt for generate jobs, image_url once COMPLETED, bare on ERROR."""
        status = self.status(now)
        data: dict[str, Any] = {"id": self.id, "status": status}
        if status in contract.FAILURE_STATUSES:
            return data
        if isinstance(self.request, GenerateRequest):
            data["prompt"] = self.request.prompt
        if status == contract.COMPLETED:
            data["image_url"] = self.result_url
        return data

    def inspection_json(self, now: float) -> dict[str, Any]:
        """Everything the sandbox knows, including what the public answer leaves out."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status(now),
            "model": getattr(self.request, "model", None),
            "image_urls": list(self.image_urls),
            "tokens": self.tokens,
            "error_reason": self.error_reason,
            "result_url": self.result_url if self.outcome == contract.COMPLETED else None,
        }


class SandboxState:
    def __init__(
        self,
        *,
        requests_per_window: int,
        window_seconds: float,
        rate_limit_scope: str,
        out_of_tokens_shape: str,
        default_webhook_url: str | None,
        clock: Callable[[], float],
    ) -> None:
        if rate_limit_scope not in ("ip", "key"):
            raise ValueError("rate_limit_scope must be 'ip' or 'key'")
        if out_of_tokens_shape not in (*contract.OUT_OF_TOKENS_SHAPES, contract.OUT_OF_TOKENS_ALTERNATE):
            raise ValueError(f"out_of_tokens_shape must be one of {contract.OUT_OF_TOKENS_SHAPES} or 'alternate'")
        self.requests_per_window = requests_per_window
        self.window_seconds = window_seconds
        self.rate_limit_scope = rate_limit_scope
        self.out_of_tokens_shape = out_of_tokens_shape
        self.default_webhook_url = default_webhook_url  # every new account starts with it
        self.clock = clock
        self.failure_status = (
            contract.ERROR
        )  # the production profile says FAILED (or TIMEOUT), as the vendor's code does
        self.give_up_seconds: float | None = None  # production profile: a longer job ends in TIMEOUT
        self.lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._windows: dict[str, SlidingWindow] = {}  # by client IP or key, per rate_limit_scope
        self._jobs: dict[int, Job] = {}
        self._results: dict[int, bytes] = {}
        self._ids = itertools.count(FIRST_JOB_ID)
        self._out_of_tokens_answers = 0
        self.faults = FaultBook((*contract.ENDPOINTS, WEBHOOK), FAULT_MODES)

    # --- keys --------------------------------------------------------------------------------------

    def set_tokens(self, key: str, tokens: int) -> None:
        """Register `key` with this token balance, or change its balance."""
        if not key:
            raise ValueError("key must not be empty")
        if tokens < 0:
            raise ValueError("tokens cannot be negative")
        with self.lock:
            account = self._accounts.get(key)
            if account is None:
                self._accounts[key] = Account(key, tokens, self.window_seconds, webhook_url=self.default_webhook_url)
            else:
                account.tokens = tokens

    def set_webhook(self, key: str, url: str | None) -> None:
        """The account's dashboard webhook URL (None: no webhook)."""
        with self.lock:
            account = self._accounts.get(key)
            if account is None:
                raise ValueError("unknown key: set its tokens first")
            account.webhook_url = url

    def authenticate(self, key: str | None) -> Account:
        with self.lock:
            account = self._accounts.get(key) if key else None
        if account is None:
            raise unauthorized(
                "Invalid API key." if key else f"Missing API key: send it in the {contract.API_KEY_HEADER} header."
            )
        return account

    # --- the shared budget -------------------------------------------------------------------------

    def admit(self, endpoint: str, client_ip: str, key: str | None) -> None:
        """Count one request against the budget, or raise the 429 (which counts for nothing)."""
        now = self.clock()
        scope = client_ip if self.rate_limit_scope == "ip" else (key or "")
        with self.lock:
            window = self._windows.setdefault(scope, SlidingWindow(self.requests_per_window, self.window_seconds))
            account = self._accounts.get(key) if key else None
            if not window.try_acquire(now):
                if account is not None:
                    account.rate_limited += 1
                raise rate_limited()
            if account is not None:
                account.requests[endpoint] += 1
                account.window.try_acquire(now)

    # --- jobs ----------------------------------------------------------------------------------------

    def start_job(
        self, account: Account, request: GenerateRequest | UpscaleRequest, base_url: str, not_started_seconds: float
    ) -> Job:
        """Deduct the tokens and create the job, or raise OUT_OF_TOKENS (nothing deducted)."""
        kind = "generate" if isinstance(request, GenerateRequest) else "upscale"
        cost = request.tokens
        with self.lock:
            if account.tokens < cost:
                account.out_of_tokens += 1
                raise self._out_of_tokens()
            account.tokens -= cost
            now = time.monotonic()
            job = Job(
                id=next(self._ids),
                account=account,
                kind=kind,
                request=request,
                tokens=cost,
                base_url=base_url.rstrip("/"),
                created_at=now,
                not_started_until=now + not_started_seconds,
            )
            self._jobs[job.id] = job
            account.jobs_started[kind] += 1
            account.tokens_spent += cost
            account.tokens_by_job[job.id] = cost
            account.tokens_by_image_url[job.image_urls[0]] += cost
            account.jobs_by_image_url[job.image_urls[0]] += 1
            return job

    def _out_of_tokens(self) -> ApiError:
        shape = self.out_of_tokens_shape
        if shape == contract.OUT_OF_TOKENS_ALTERNATE:
            shape = contract.OUT_OF_TOKENS_SHAPES[self._out_of_tokens_answers % len(contract.OUT_OF_TOKENS_SHAPES)]
        self._out_of_tokens_answers += 1
        return out_of_tokens(shape)

    def job_data(self, account: Account, job_id: int) -> dict[str, Any]:
        """The `data` of a status answer; 404 for unknown ids and other keys' jobs."""
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None or job.account is not account:
                raise not_found(f"Job {job_id} not found.")
            return job.data_json(time.monotonic())

    def finish(self, job: Job, *, result: bytes | None, error_reason: str | None, outcome: str | None = None) -> None:
        with self.lock:
            if outcome is not None:  # a job the service gave up on (TIMEOUT)
                job.outcome = outcome
                job.error_reason = error_reason
            elif result is not None:
                self._results[job.id] = result
                job.outcome = contract.COMPLETED
            else:
                job.outcome = self.failure_status
                job.error_reason = error_reason or "The job failed."
                if contract.REFUND_ON_ERROR:
                    job.account.tokens += job.tokens
            job.finished_at = time.monotonic()

    def result(self, job_id: int) -> bytes | None:
        with self.lock:
            return self._results.get(job_id)

    def inspect_job(self, job_id: int) -> dict[str, Any] | None:
        with self.lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.inspection_json(time.monotonic())

    # --- inspection ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self.lock:
            keys = {
                key: {
                    "tokens": account.tokens,
                    "tokens_spent": account.tokens_spent,
                    "tokens_by_job": {str(job_id): tokens for job_id, tokens in account.tokens_by_job.items()},
                    "tokens_by_image_url": dict(account.tokens_by_image_url),
                    "jobs_by_image_url": dict(account.jobs_by_image_url),
                    "jobs_started": {kind: account.jobs_started[kind] for kind in ("generate", "upscale")},
                    "requests": {endpoint: account.requests[endpoint] for endpoint in contract.ENDPOINTS},
                    "rate_limited": account.rate_limited,
                    "out_of_tokens": account.out_of_tokens,
                    "max_requests_per_window": account.window.peak,
                    "webhook_url": account.webhook_url,
                }
                for key, account in self._accounts.items()
            }
            return {
                "keys": keys,
                "rate_limit": {
                    "scope": self.rate_limit_scope,
                    "limit": self.requests_per_window,
                    "window_seconds": self.window_seconds,
                    # the busiest window of any scope (IP or key): never above `limit`
                    "max_requests_per_window": max((window.peak for window in self._windows.values()), default=0),
                },
                "jobs": {
                    "total": len(self._jobs),
                    "by_status": dict(Counter(job.status(time.monotonic()) for job in self._jobs.values())),
                },
                "faults_pending": self.faults.pending(),
                "faults_served": self.faults.served(),
            }
