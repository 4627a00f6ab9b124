"""Bulk query operations: their records and lifecycle, computed from timestamps (no timers, no threads).

An operation is CREATED for `BulkSettings.created_seconds`, then RUNNING for
`seconds_per_object` x its objects (a big catalog takes a while), then COMPLETED; its results
expire `expiry_seconds` after that (Shopify: 7 days), when it reads EXPIRED and its URL answers
an expired-link error. `bulkOperationCancel` makes a CREATED or RUNNING operation CANCELING, then
CANCELED `cancel_seconds` later. `objectCount`/`rootObjectCount` grow while it runs.

What it will find is decided when it is created: the ids of its root objects then (the snapshot
the JSONL file is made of) and how many objects they hold; the lines themselves are made from the
store when the file is read (`bulk_export`), so an object deleted meanwhile is left out.

Up to `MAX_IN_PROGRESS` operations per app and shop are CREATED, RUNNING or CANCELING at once
(2026-01+); one more is refused with OPERATION_IN_PROGRESS, worded as in
2026-04/bulk-operations/bulk-operation-run-query-concurrency-limit.json (field null).

Injected faults (taken when an operation is created; faults.py): "fail" ends it FAILED with an
errorCode and no data, "partial" FAILED with the lines of the first half of its roots at
`partialDataUrl`, both half-way through; "expired" makes its results expire `seconds` after it
completes (0: it reads EXPIRED as soon as it is done).

The caller holds the store lock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .model import gid, parse_gid

CREATED, RUNNING, COMPLETED, CANCELING, CANCELED, FAILED, EXPIRED = (
    "CREATED",
    "RUNNING",
    "COMPLETED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "EXPIRED",
)
IN_PROGRESS = (CREATED, RUNNING, CANCELING)
MAX_IN_PROGRESS = 5
ERROR_CODES = ("INTERNAL_SERVER_ERROR", "TIMEOUT", "ACCESS_DENIED")
FIRST_BULK_ID = 7933223797042  # from the concurrency capture, with Shopify's usual stride
ID_STRIDE = 32768
SEVEN_DAYS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class BulkSettings:
    """How long operations take in the sandbox's time; `any_order_seed`: when set, the lines of a
    result come in a shuffled order (children before their parent, or long after it), drawn from
    this seed, so that clients are tested against the "any order" Shopify promises."""

    created_seconds: float = 0.2
    seconds_per_object: float = 0.0001
    cancel_seconds: float = 0.2
    expiry_seconds: float = SEVEN_DAYS
    any_order_seed: int | None = None


@dataclass
class BulkOperation:
    id: int
    query: str
    group_objects: bool
    created_at: float
    started_at: float  # RUNNING from
    done_at: float  # COMPLETED (or FAILED) at
    expires_at: float  # url / partialDataUrl stop working at
    roots: list[str] = field(repr=False)  # gids of the root objects, in output order
    object_count: int  # roots and their nested objects
    key: str = field(default_factory=lambda: secrets.token_hex(14), repr=False)  # the download path
    canceled_at: float | None = None
    cancel_seconds: float = 0.0
    error_code: str | None = None
    partial: bool = False  # FAILED with the lines made before the failure
    file_size: int | None = None  # once known (bulk_export)

    @property
    def gid(self) -> str:
        return gid("BulkOperation", self.id)

    def status(self, now: float) -> str:
        if self.canceled_at is not None:
            return CANCELING if now < self.canceled_at + self.cancel_seconds else CANCELED
        if now < self.started_at:
            return CREATED
        if now < self.done_at:
            return RUNNING
        if self.error_code is not None:
            return FAILED
        return EXPIRED if now >= self.expires_at else COMPLETED

    def progress(self, now: float) -> float:
        """The share of its objects processed at `now` (0..1; one that fails stops half-way)."""
        until = min(now, self.canceled_at) if self.canceled_at is not None else now
        if until >= self.done_at:
            share = 1.0
        elif until <= self.started_at:
            share = 0.0
        else:
            share = (until - self.started_at) / (self.done_at - self.started_at)
        return share / 2 if self.error_code is not None else share

    def counts(self, now: float) -> tuple[int, int]:
        """(objectCount, rootObjectCount) at `now`."""
        share = self.progress(now)
        return int(self.object_count * share), int(len(self.roots) * share)

    def data_roots(self) -> list[str]:
        """The roots whose lines the file holds: all of them, or those done before a failure."""
        return self.roots[: len(self.roots) // 2] if self.partial else self.roots

    def readable(self, now: float) -> bool:
        """Whether its file (url or partialDataUrl) can be downloaded at `now`."""
        status = self.status(now)
        return (status == COMPLETED or (status == FAILED and self.partial)) and now < self.expires_at


class BulkOperations:
    """The shop's bulk operations (for the one app the sandbox serves)."""

    def __init__(self, settings: BulkSettings) -> None:
        self.settings = settings
        self.by_id: dict[int, BulkOperation] = {}
        self.by_key: dict[str, BulkOperation] = {}
        self._next_id = FIRST_BULK_ID

    def get(self, value: str) -> BulkOperation | None:
        parsed = parse_gid(value)
        return self.by_id.get(parsed[1]) if parsed and parsed[0] == "BulkOperation" else None

    def in_progress(self, now: float) -> list[BulkOperation]:
        return [op for op in self.by_id.values() if op.status(now) in IN_PROGRESS]

    def refusal(self, now: float) -> dict[str, Any] | None:
        """The userError for one operation too many, else None."""
        running = self.in_progress(now)
        if len(running) < MAX_IN_PROGRESS:
            return None
        return {
            "field": None,
            "code": "OPERATION_IN_PROGRESS",
            "message": "A bulk query operation for this app and shop is already in progress: "
            + ", ".join(op.gid for op in running)
            + ".",
        }

    def create(
        self, query: str, group_objects: bool, roots: list[str], object_count: int, now: float, fault: Any = None
    ) -> BulkOperation:
        """A new operation over `roots` holding `object_count` objects; `fault` from the fault plan."""
        s = self.settings
        started = now + s.created_seconds
        done = started + s.seconds_per_object * object_count
        op = BulkOperation(
            id=self._next_id,
            query=query,
            group_objects=group_objects,
            created_at=now,
            started_at=started,
            done_at=done,
            expires_at=done + s.expiry_seconds,
            roots=roots,
            object_count=object_count,
        )
        if fault is not None and fault.mode in ("fail", "partial"):
            op.error_code = fault.code or "INTERNAL_SERVER_ERROR"
            op.partial = fault.mode == "partial"
            op.done_at = started + (done - started) / 2  # it fails half-way through
            op.expires_at = op.done_at + s.expiry_seconds
        elif fault is not None and fault.mode == "expired":
            op.expires_at = done + fault.seconds
        self._next_id += ID_STRIDE
        self.by_id[op.id] = op
        self.by_key[op.key] = op
        return op

    def cancel(self, value: str, now: float) -> dict[str, Any]:
        """bulkOperationCancel's payload (its errors have no capture: plain wording, UserError without code)."""
        op = self.get(value)
        if op is None:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
            }
        status = op.status(now)
        if status not in (CREATED, RUNNING):
            return {
                "bulkOperation": op,
                "userErrors": [
                    {"field": None, "message": f"A bulk operation cannot be canceled when it is {status.lower()}"}
                ],
            }
        op.canceled_at = now
        op.cancel_seconds = self.settings.cancel_seconds
        return {"bulkOperation": op, "userErrors": []}
