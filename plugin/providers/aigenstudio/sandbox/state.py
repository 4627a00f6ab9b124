"""The sandbox's memory and rules: keys, accounts, credits, quotas, idempotency, enhancements, faults.

No HTTP here: the app turns requests into calls on `SandboxState` and `ApiError`s into the error
envelope. Every public method takes the one lock, because the app (uvicorn's thread) and the
processing threads both change this state.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ....sandbox_kit.faults import WEBHOOK, WEBHOOK_MODES, FaultBook, answer_modes
from .. import contract
from .validation import CreatePayload


class ApiError(Exception):
    """An error response: HTTP status, envelope code and message, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class SandboxLimits:
    window_seconds: float = contract.WINDOW_SECONDS
    jobs_per_window: int = contract.JOBS_PER_WINDOW
    images_per_window: int = contract.IMAGES_PER_WINDOW
    polls_per_window: int = contract.POLLS_PER_WINDOW
    active_jobs_per_key: int = contract.ACTIVE_JOBS_PER_KEY
    active_jobs_per_account: int = contract.ACTIVE_JOBS_PER_ACCOUNT
    seconds_per_item: float = 1.0


class FixedWindow:
    """A counter that resets at multiples of `length` seconds since the epoch [ASSUME in contract]."""

    def __init__(self, limit: int, length: float) -> None:
        self.limit = limit
        self.length = length
        self.start = -math.inf
        self.used = 0

    def _roll(self, now: float) -> None:
        start = math.floor(now / self.length) * self.length
        if start != self.start:
            self.start, self.used = start, 0

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(0, self.limit - self.used)

    def add(self, now: float, count: int = 1) -> None:
        self._roll(now)
        self.used += count

    def reset_at(self, now: float) -> float:
        self._roll(now)
        return self.start + self.length

    def headers(self, now: float) -> dict[str, str]:
        """X-RateLimit-* for this window; the reset is rounded up to whole Unix seconds [ASSUME]."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining(now)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at(now))),
        }

    def exhausted(self, now: float, message: str) -> ApiError:
        retry_after = max(1, math.ceil(self.reset_at(now) - now))
        return ApiError(429, contract.RATE_LIMITED, message, {"Retry-After": str(retry_after), **self.headers(now)})


@dataclass
class Account:
    id: str
    purchased: int = 0  # lifetime purchased credits
    available: int = 0
    reserved: int = 0
    used: int = 0


@dataclass
class KeyRecord:
    key: str = field(repr=False)
    account: Account
    environment: str  # "test" | "live"
    jobs: FixedWindow
    images: FixedWindow
    polls: FixedWindow
    creations: int = 0
    replays: int = 0
    conflicts: int = 0
    rate_limited: int = 0
    insufficient_credits: int = 0  # 402s
    poll_count: int = 0
    charged_per_idempotency_key: Counter[str] = field(default_factory=Counter)  # images counted at creation
    images_by_external_id: Counter[str] = field(default_factory=Counter)
    # Images charged per source URL: a Shopify CDN URL names one picture (its file and version), so a
    # test can tell "charged at most once per picture" and "only merchant pictures were charged".
    images_by_source_url: Counter[str] = field(default_factory=Counter)

    @property
    def sandbox(self) -> bool:
        return self.environment == "test"


@dataclass
class ItemState:
    id: str
    external_id: str | None
    source_url: str
    credits_reserved: int
    status: str = "queued"
    credits_used: int = 0
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class EnhancementState:
    id: str
    key: KeyRecord = field(repr=False)
    payload: CreatePayload
    base_url: str  # where this sandbox was reached, for result URLs
    items: list[ItemState]
    created_at: float
    status: str = "queued"
    completed_at: float | None = None
    fail_items: bool = False  # a "fail" fault: every item of this job ends failed

    @property
    def active(self) -> bool:
        return self.status in contract.ACTIVE_STATUSES

    def item_json(self, item: ItemState) -> dict[str, Any]:
        done = item.status == "completed"
        base = f"{self.base_url}/results/{self.id}/{item.id}"
        return {
            "id": item.id,
            "status": item.status,
            "external_id": item.external_id,
            "result_url": f"{base}.png" if done else None,
            "thumbnail_url": f"{base}_thumb.png" if done else None,
            "credits_reserved": item.credits_reserved,
            "credits_used": item.credits_used,
            "error_code": item.error_code,
            "error_message": item.error_message,
        }

    def summary_json(self) -> dict[str, Any]:
        """The shape of a create response [DOC]."""
        return {
            "id": self.id,
            "status": self.status,
            "total_items": len(self.items),
            "credits_reserved": sum(item.credits_reserved for item in self.items),
            "sandbox": self.key.sandbox,
        }

    def full_json(self) -> dict[str, Any]:
        """The shape of a status response [DOC]."""
        return {
            **self.summary_json(),
            "completed_items": sum(item.status == "completed" for item in self.items),
            "failed_items": sum(item.status == "failed" for item in self.items),
            "credits_used": sum(item.credits_used for item in self.items),
            "created_at": _iso(self.created_at),
            "completed_at": None if self.completed_at is None else _iso(self.completed_at),
            "items": [self.item_json(item) for item in self.items],
        }


# Faults: "create" and "status" can answer a 5xx, hang or answer HTML; a create can also lose its answer.
API_FAULT_ENDPOINTS = ("create", "status")
FAULT_ENDPOINTS = (*API_FAULT_ENDPOINTS, WEBHOOK)
FAULT_MODES = {
    "drop_response": ("create",),
    "fail": ("create",),
    "quote_auth": API_FAULT_ENDPOINTS,
    **answer_modes(API_FAULT_ENDPOINTS),
    **{mode: (WEBHOOK,) for mode in WEBHOOK_MODES},
}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fingerprint(body: Any) -> str:
    """Same JSON, same fingerprint, whatever the key order or spacing."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _rollup(items: list[ItemState]) -> str:
    """[ASSUME] all completed -> completed; all failed -> failed; a mix -> partially_completed."""
    failed = sum(item.status == "failed" for item in items)
    if failed == 0:
        return "completed"
    return "failed" if failed == len(items) else "partially_completed"


class SandboxState:
    def __init__(self, limits: SandboxLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self.lock = threading.RLock()
        self._keys: dict[str, KeyRecord] = {}
        self._accounts: dict[str, Account] = {}
        self._enhancements: dict[str, EnhancementState] = {}
        # (account id, environment, Idempotency-Key) -> (body fingerprint, enhancement id, created at)
        self._idempotency: dict[tuple[str, str, str], tuple[str, str, float]] = {}
        self._results: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self.faults = FaultBook(FAULT_ENDPOINTS, FAULT_MODES)

    # --- keys and accounts ----------------------------------------------------------------------

    def _account(self, account_id: str) -> Account:
        return self._accounts.setdefault(account_id, Account(account_id))

    def _new_key(self, key: str, account: Account) -> KeyRecord:
        length = self.limits.window_seconds
        record = KeyRecord(
            key=key,
            account=account,
            environment="test" if contract.is_test_key(key) else "live",
            jobs=FixedWindow(self.limits.jobs_per_window, length),
            images=FixedWindow(self.limits.images_per_window, length),
            polls=FixedWindow(self.limits.polls_per_window, length),
        )
        self._keys[key] = record
        return record

    def add_live_key(self, key: str, *, purchased: int, available: int, account: str | None = None) -> None:
        """Register a live key (or change its account's credits)."""
        if not key.startswith(contract.LIVE_KEY_PREFIX) or not contract.API_KEY_PATTERN.match(key):
            raise ValueError("a live key looks like aigen_live_ followed by at least 8 letters, digits or _")
        if purchased < 0 or available < 0:
            raise ValueError("credits cannot be negative")
        with self.lock:
            record = self._keys.get(key)
            if record is None:
                account_id = account or f"acct_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
                record = self._new_key(key, self._account(account_id))
            elif account is not None and account != record.account.id:
                raise ValueError("this key already belongs to another account")
            record.account.purchased = purchased
            record.account.available = available

    def authenticate(self, key: str) -> KeyRecord:
        """The record of a valid key; test keys need no registration, live keys do."""
        with self.lock:
            record = self._keys.get(key)
            if record is not None:
                return record
            if contract.is_test_key(key) and contract.API_KEY_PATTERN.match(key):
                return self._new_key(key, self._account(f"acct_{hashlib.sha256(key.encode()).hexdigest()[:12]}"))
        raise ApiError(401, contract.INVALID_API_KEY, "The API key is invalid.")

    # --- create ---------------------------------------------------------------------------------

    def create(
        self, record: KeyRecord, idempotency_key: str, body: Any, payload: CreatePayload, base_url: str
    ) -> tuple[EnhancementState, bool, dict[str, str]]:
        """Accept a job, or replay the one this Idempotency-Key made. Returns (job, replayed, headers)."""
        now = self.clock()
        with self.lock:
            scope = (record.account.id, record.environment, idempotency_key)
            fingerprint = _fingerprint(body)
            known = self._idempotency.get(scope)
            if known is not None and now - known[2] <= contract.IDEMPOTENCY_RETENTION_SECONDS:
                if known[0] != fingerprint:
                    record.conflicts += 1
                    raise ApiError(
                        409,
                        contract.IDEMPOTENCY_CONFLICT,
                        "This Idempotency-Key was already used with a different request body.",
                    )
                record.replays += 1
                return self._enhancements[known[1]], True, record.jobs.headers(now)

            count = len(payload.images)
            try:
                self._check_limits(record, count, now)
                cost = self._check_credits(record, count)
            except ApiError as error:
                if error.status == 429:
                    record.rate_limited += 1
                elif error.status == 402:
                    record.insufficient_credits += 1
                raise

            record.jobs.add(now)
            record.images.add(now, count)
            record.creations += 1
            record.charged_per_idempotency_key[idempotency_key] += count
            per_item = cost // count if count else 0
            record.account.available -= cost
            record.account.reserved += cost
            items = []
            for image in payload.images:
                if image.external_id is not None:
                    record.images_by_external_id[image.external_id] += 1
                record.images_by_source_url[image.source_url] += 1
                items.append(ItemState(str(uuid.uuid4()), image.external_id, image.source_url, per_item))
            job = EnhancementState(str(uuid.uuid4()), record, payload, base_url.rstrip("/"), items, created_at=now)
            self._enhancements[job.id] = job
            self._idempotency[scope] = (fingerprint, job.id, now)
            return job, False, record.jobs.headers(now)

    def _active(self, predicate: Callable[[EnhancementState], bool]) -> list[EnhancementState]:
        return [job for job in self._enhancements.values() if job.active and predicate(job)]

    def _active_limit_error(self, active: list[EnhancementState], limit: int, now: float, what: str) -> ApiError:
        # Retry-After: a short estimate of when the earliest active job ends [ASSUME].
        left = min(sum(item.status in ("queued", "processing") for item in job.items) for job in active)
        retry_after = max(1, math.ceil(left * self.limits.seconds_per_item))
        headers = {
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(now + retry_after)),
        }
        return ApiError(429, contract.RATE_LIMITED, f"Too many active jobs {what}.", headers)

    def _check_limits(self, record: KeyRecord, count: int, now: float) -> None:
        by_key = self._active(lambda job: job.key is record)
        if len(by_key) >= self.limits.active_jobs_per_key:
            raise self._active_limit_error(by_key, self.limits.active_jobs_per_key, now, "for this API key")
        by_account = self._active(lambda job: job.key.account is record.account)
        if len(by_account) >= self.limits.active_jobs_per_account:
            raise self._active_limit_error(by_account, self.limits.active_jobs_per_account, now, "for this account")
        if record.jobs.remaining(now) < 1:
            raise record.jobs.exhausted(now, "Job creation limit reached for this window.")
        if record.images.remaining(now) < count:
            raise record.images.exhausted(now, "Image limit reached for this window.")

    def _check_credits(self, record: KeyRecord, count: int) -> int:
        """The credits to reserve (0 for sandbox keys), or 402."""
        if record.sandbox:
            return 0
        cost = count * contract.CREDITS_PER_IMAGE
        account = record.account
        if account.purchased < contract.MIN_LIFETIME_PURCHASED_CREDITS or account.available < cost:
            raise ApiError(
                402,
                contract.INSUFFICIENT_API_CREDITS,
                f"This request needs {cost} available API credits and at least "
                f"{contract.MIN_LIFETIME_PURCHASED_CREDITS} purchased credits.",
            )
        return cost

    def remaining_paid_credits(self, record: KeyRecord) -> int:
        with self.lock:
            return 0 if record.sandbox else record.account.available

    # --- status ---------------------------------------------------------------------------------

    def poll(self, record: KeyRecord, enhancement_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A status request: counts against the poll quota, 404 for unknown or foreign ids."""
        now = self.clock()
        with self.lock:
            if record.polls.remaining(now) < 1:
                record.rate_limited += 1
                raise record.polls.exhausted(now, "Status polling limit reached for this window.")
            record.polls.add(now)
            record.poll_count += 1
            headers = record.polls.headers(now)
            job = self._enhancements.get(enhancement_id)
            if job is None or job.key.account is not record.account or job.key.environment != record.environment:
                raise ApiError(404, contract.NOT_FOUND, "Enhancement not found.", headers)
            return job.full_json(), headers

    # --- processing (called from the worker) ----------------------------------------------------

    def start_processing(self, job: EnhancementState) -> None:
        with self.lock:
            job.status = "processing"

    def start_item(self, item: ItemState) -> None:
        with self.lock:
            item.status = "processing"

    def finish_item(
        self,
        job: EnhancementState,
        item: ItemState,
        *,
        result: tuple[bytes, bytes] | None,
        error: tuple[str, str] | None,
    ) -> dict[str, Any]:
        """Record an item's outcome, consume or release its credits; return its JSON."""
        with self.lock:
            account = job.key.account
            held = item.credits_reserved
            account.reserved -= held
            if result is not None:
                self._results[(job.id, item.id)] = result
                item.status = "completed"
                item.credits_used = held
                account.used += held
            else:
                item.status = "failed"
                item.error_code, item.error_message = error or (contract.ENHANCEMENT_FAILED, "failed")
                account.available += held  # released
            return job.item_json(item)

    def finish(self, job: EnhancementState) -> str:
        with self.lock:
            job.status = _rollup(job.items)
            job.completed_at = self.clock()
            return job.status

    def result(self, enhancement_id: str, item_id: str, thumbnail: bool) -> bytes | None:
        with self.lock:
            found = self._results.get((enhancement_id, item_id))
        return None if found is None else found[1 if thumbnail else 0]

    # --- inspection -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self.lock:
            keys = {
                key: {
                    "account": record.account.id,
                    "environment": record.environment,
                    "creations": record.creations,
                    "replays": record.replays,
                    "conflicts": record.conflicts,
                    "rate_limited": record.rate_limited,
                    "insufficient_credits": record.insufficient_credits,
                    "polls": record.poll_count,
                    "images_charged": sum(record.charged_per_idempotency_key.values()),
                    "charged_per_idempotency_key": dict(record.charged_per_idempotency_key),
                    "images_by_external_id": dict(record.images_by_external_id),
                    "images_by_source_url": dict(record.images_by_source_url),
                    "credits": {
                        "purchased": record.account.purchased,
                        "available": record.account.available,
                        "reserved": record.account.reserved,
                        "used": record.account.used,
                    },
                }
                for key, record in self._keys.items()
            }
            return {"keys": keys, "faults_pending": self.faults.pending(), "faults_served": self.faults.served()}
