"""Store methods for the provider's side: jobs (with their images' `submit`) and quota events.
A mixin of Store (storage/store.py), which gives it its engine and transactions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, delete, select

from .image_writes import apply_moves, set_fields
from .lifecycle import Move
from .models import Image, ImageState, Job, JobState, QuotaEvent


class ProviderTables:
    # Store gives these methods its engine and its transactions (`_read`, `_write`, `_session`).
    # ----- jobs -------------------------------------------------------------------------------

    def create_job(self, provider: str, idempotency_key: str, image_ids: Sequence[int],
                   options: str | None = None, backups: dict[int, str] | None = None) -> Job:
        """Write the job, its key and its request options, and move its images to `submitted`, in
        one transaction — before any request goes out, so a crash right after can only lead to a
        replay of this key with this body (fsync'd: it must survive a power cut too). `backups`:
        image id -> digest of its original, stored by pre-flight."""
        job = Job(provider=provider, idempotency_key=idempotency_key, state=JobState.PENDING,
                  image_count=len(image_ids), options=options)
        values = job.model_dump(exclude={"id"})
        with self._write(durable=True) as conn:
            job.id = conn.execute(sqlite_insert(Job).values(**values)).inserted_primary_key[0]
            moves = []
            for index, image_id in enumerate(image_ids):
                # A new backup of the original: a prune date of an earlier one no longer applies.
                fields = ({"backup_sha256": backups[image_id], "backup_pruned_at": None}
                          if backups and image_id in backups else {})
                moves.append(Move(image_id, "submit", (ImageState.DISCOVERED,),
                                  {"job_id": job.id, "item_index": index, **fields}))
            moved = apply_moves(conn, moves)
            assert moved == list(image_ids), sorted(set(image_ids) - set(moved))  # (rolls the whole job back)
        return job

    def job(self, job_id: int) -> Job | None:
        with self._read() as s:
            return s.get(Job, job_id)

    def jobs_in_state(self, *states: JobState) -> list[Job]:
        with self._read() as s:
            query = select(Job).where(col(Job.state).in_([str(x) for x in states])).order_by(col(Job.id))
            return list(s.exec(query))

    def update_job(self, job_id: int, **fields: Any) -> None:
        """One UPDATE, fsync'd: a job's row is what stops a provider from being paid twice."""
        with self._write(durable=True) as conn:
            if conn.execute(update(Job).where(col(Job.id) == job_id).values(**fields)).rowcount == 0:
                raise KeyError(job_id)

    def job_images(self, job_id: int) -> list[Image]:
        with self._read() as s:
            query = select(Image).where(Image.job_id == job_id).order_by(col(Image.item_index))
            return list(s.exec(query))

    def update_job_and_images(self, job_id: int, job_fields: dict[str, Any],
                              image_fields: dict[int, dict[str, Any]], moves: Sequence[Move] = ()) -> list[int]:
        """Record a provider answer for a job and its items atomically (fsync'd, like every job write):
        the job's fields, items' fields (no state), and items' transitions (`moves`, compare-and-set).
        Returns the ids the moves moved."""
        with self._write(durable=True) as conn:
            if job_fields and conn.execute(update(Job).where(col(Job.id) == job_id).values(**job_fields)).rowcount == 0:
                raise KeyError(job_id)  # as for a missing item, and as update_job says it
            set_fields(conn, image_fields)
            return apply_moves(conn, moves)

    # ----- provider quota ---------------------------------------------------------------------

    def add_quota_event(self, provider: str, kind: str, at: float, count: int = 1) -> None:
        with self._session() as s:
            s.add(QuotaEvent(provider=provider, kind=kind, at=at, count=count))

    def quota_events(self, provider: str, since: float) -> list[tuple[str, float, int]]:
        with self._read() as s:
            query = select(QuotaEvent).where(QuotaEvent.provider == provider, QuotaEvent.at >= since)
            return [(e.kind, e.at, e.count) for e in s.exec(query)]

    def jobs_created_since(self, provider: str, since: datetime) -> list[Job]:
        """This provider's jobs created at or after `since` (UTC), for the daily budget."""
        with self._read() as s:
            query = select(Job).where(Job.provider == provider, col(Job.created_at) >= since.astimezone(timezone.utc))
            return list(s.exec(query))

    def credits_used(self, provider: str) -> int:
        with self._read() as s:
            return int(s.exec(select(func.coalesce(func.sum(Job.credits_used), 0)).where(Job.provider == provider)).one())

    def prune_quota_events(self, before: float) -> None:
        with self._session() as s:
            s.exec(delete(QuotaEvent).where(col(QuotaEvent.at) < before))
