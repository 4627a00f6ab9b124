"""SQLModel tables: the daemon's truth about every image, job and provider call.

States of an image (see ARCHITECTURE.md, "the life of one image"):

    baseline                      existed before the first run with new_only; never processed
    discovered ─► submitted ─► enhanced ─► backed_up ─► written ─► done
         │             │            │           │   ▲       │
         └─ skipped    └─ failed ◄──┴───────────┤   │ approve   reverted (after `retouch revert`)
                                                ▼   │
                                         awaiting_review ─► rejected   (only when [review] is on)

Every move, with the fields it sets and clears, is one row of the table in lifecycle.py; the
store changes `state` only through it (Store.transition, a compare-and-set).

Every column that records an outside effect has an "intent" twin written before the call
(`Job.idempotency_key` before the create request, `Image.write_source` before the Shopify
mutation), so a restart can finish or reconcile whatever was in flight.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum

from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 6

# What brings a database of an older version up to date, one list of statements per version step.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "ALTER TABLE image ADD COLUMN retries INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE job ADD COLUMN credits_used INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE job ADD COLUMN options VARCHAR",
    ],
    2: [
        "ALTER TABLE job ADD COLUMN provider_state VARCHAR",
        "ALTER TABLE image ADD COLUMN paid_attempts INTEGER NOT NULL DEFAULT 0",
    ],
    3: ["ALTER TABLE image ADD COLUMN write_mode VARCHAR"],
    4: [
        "ALTER TABLE image ADD COLUMN reverted_at FLOAT",
        "ALTER TABLE image ADD COLUMN backup_pruned_at FLOAT",
        "ALTER TABLE image ADD COLUMN rule VARCHAR",
    ],
    5: [
        "ALTER TABLE image ADD COLUMN product_title VARCHAR",
        "ALTER TABLE image ADD COLUMN result_sha256 VARCHAR",
        "ALTER TABLE image ADD COLUMN approved_at FLOAT",
        "ALTER TABLE image ADD COLUMN review_note VARCHAR",
    ],
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def epoch(moment: datetime) -> float:
    """Unix seconds of a stored datetime (SQLite hands them back without a time zone: UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class ImageState(StrEnum):
    BASELINE = "baseline"
    DISCOVERED = "discovered"
    SUBMITTED = "submitted"
    ENHANCED = "enhanced"
    BACKED_UP = "backed_up"
    AWAITING_REVIEW = "awaiting_review"  # the result is kept locally until the owner approves it
    WRITTEN = "written"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    REVERTED = "reverted"
    REJECTED = "rejected"  # the owner refused the result; the original stays in Shopify


# States in which an image is still on its way: the queue.
PENDING_STATES = (
    ImageState.DISCOVERED,
    ImageState.SUBMITTED,
    ImageState.ENHANCED,
    ImageState.BACKED_UP,
    ImageState.AWAITING_REVIEW,
    ImageState.WRITTEN,
)
# The queue minus what waits for the owner: what the daemon (and the provider) still has to work on.
# A run that waits for its images to settle waits for these, not for a review that may take days.
WORK_STATES = tuple(state for state in PENDING_STATES if state is not ImageState.AWAITING_REVIEW)
FINAL_STATES = (
    ImageState.DONE,
    ImageState.FAILED,
    ImageState.SKIPPED,
    ImageState.BASELINE,
    ImageState.REVERTED,
    ImageState.REJECTED,
)


class JobState(StrEnum):
    PENDING = "pending"  # key written, the provider has not (knowingly) accepted it yet
    SUBMITTED = "submitted"  # accepted: has a provider id, being polled
    FINISHED = "finished"  # terminal at the provider; items were recorded
    FAILED = "failed"  # rejected for good (409, 400); its images carry the reason


class Image(SQLModel, table=True):
    id: int = Field(default=None, primary_key=True)  # None only until the first flush; every stored row has one
    media_id: str = Field(unique=True, index=True)
    product_id: str = Field(index=True)
    product_legacy_id: str
    state: str = Field(index=True)
    source_url: str | None = None  # CDN URL of the original when it was discovered (None until READY)
    filename: str | None = None  # original's file name; its extension must be kept on replace
    mime_type: str | None = None
    alt: str | None = None
    position: int = 0
    job_id: int | None = Field(default=None, foreign_key="job.id", index=True)
    item_index: int | None = None  # position in the job's request, to map results back
    result_url: str | None = None
    backup_sha256: str | None = None
    # [backup] keep: an image ever reverted keeps its original; a pruned one says when it went (wall clock).
    reverted_at: float | None = None
    backup_pruned_at: float | None = None
    # [[rules]]: the rule that decided this image and what it set (JSON, sync/rules.py), recorded when
    # it is queued and sent with it, so a reload that changes the rules only affects images queued later.
    rule: str | None = None
    write_source: str | None = None  # intent: the staged resourceUrl about to be written
    # The [writeback] mode the write was started in, recorded with `write_source`: read from here
    # until the image is done, so a reload that changes the mode only affects writes not yet started.
    write_mode: str | None = None
    output_media_id: str | None = None  # the media that now shows our output (same id in replace mode)
    written_at: float | None = None  # wall clock of the Shopify write, to time out a stuck READY
    attempts: int = 0  # tries of the current step (reset when a step succeeds)
    retries: int = 0  # times `retouch retry` brought it back from failed
    paid_attempts: int = 0  # provider jobs started for it that may have been charged
    next_attempt_at: float | None = None  # wall clock; None = now
    error_code: str | None = None
    error_message: str | None = None
    # Schema 6: the product's title (messages name products by it), and [review]: the finished result
    # kept locally (content-addressed, like backups) while it waits, when it was approved, and the
    # owner's reason for a reject or the options of a redo.
    product_title: str | None = None
    result_sha256: str | None = None
    approved_at: float | None = None
    review_note: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Job(SQLModel, table=True):
    id: int = Field(default=None, primary_key=True)  # as Image.id
    provider: str
    idempotency_key: str = Field(unique=True)
    # The request's options (JSON) as first sent: every retry of this key sends the same body,
    # even if the config changed in between (another body under the same key would be a 409).
    options: str | None = None
    provider_job_id: str | None = Field(default=None, index=True)
    # The provider's own progress (JSON): a project created, uploads done, an upscale started —
    # committed before its next paid step, so a retry after a crash resumes instead of paying again.
    provider_state: str | None = None
    state: str = Field(index=True)
    image_count: int = 0
    attempts: int = 0
    next_attempt_at: float | None = None  # pending jobs: when to send again
    next_poll_at: float | None = None  # submitted jobs: when to ask for status
    polls: int = 0
    credits_used: int = 0  # what the provider charged, recorded when the job finished
    error_code: str | None = None
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    submitted_at: datetime | None = None
    finished_at: datetime | None = None


class OutputMedia(SQLModel, table=True):
    """A media that shows retouch output: never sent for enhancement again."""

    media_id: str = Field(primary_key=True)
    product_id: str = Field(index=True)
    image_id: int | None = Field(default=None, foreign_key="image.id")
    created_at: datetime = Field(default_factory=utcnow)


class QuotaEvent(SQLModel, table=True):
    """One use of a provider quota (a job, images, a poll), kept for one window to rebuild the pacer."""

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(index=True)
    kind: str
    at: float = Field(index=True)
    count: int = 1


class SeenEvent(SQLModel, table=True):
    """A webhook delivery already handled: a replayed event id is refused."""

    event_id: str = Field(primary_key=True)
    source: str
    at: float = Field(index=True)


class BulkLine(SQLModel, table=True):
    """One line of a Shopify bulk export, held while the export is read (emptied afterwards).

    The JSONL's lines come in any order (a media line may precede its product's), so they are
    staged here in batches as they stream in, then read back one product at a time: memory holds a
    batch or a product, never the catalog. `id` keeps the line order (a product's media in position
    order); `parent_id` is the line's `__parentId` (None for a product)."""

    id: int | None = Field(default=None, primary_key=True)
    object_id: str = Field(index=True)
    parent_id: str | None = Field(default=None, index=True)
    payload: str  # the line's JSON, as received


class Meta(SQLModel, table=True):
    """Small named values: schema version, discovery cursor, provider pause."""

    key: str = Field(primary_key=True)
    value: str
