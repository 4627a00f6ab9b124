"""AI Gen Studio's public contract, as constants shared by the client and the sandbox.

Everything here comes from the provider-contracts reference (CONTRACTS.md §1). Each constant
is tagged:

- [DOC]    a public AI Gen Studio page states it;
- [ASSUME] nothing public states it: this is our choice, and both the sandbox and the client
           follow it from here, so when the real service disagrees there is one line to change.

Nothing in this module does I/O.
"""

from __future__ import annotations

import re

# --- Endpoints ------------------------------------------------------------------------------

BASE_URL = "https://aigenstudio.app"  # [DOC] "Base URL"
API_PREFIX = "/api/v1"  # [DOC] "Version prefix"
PRESETS_PATH = f"{API_PREFIX}/product-image-enhancement-presets"  # [DOC] public, no key
ENHANCEMENTS_PATH = f"{API_PREFIX}/product-image-enhancements"  # [DOC] POST create, GET /{id}

# --- Auth [DOC] -----------------------------------------------------------------------------

TEST_KEY_PREFIX = "aigen_test_"  # [DOC] sandbox keys: free, `sandbox: true`
LIVE_KEY_PREFIX = "aigen_live_"  # [DOC] paid keys
# [ASSUME] the characters and minimum length after the prefix (the docs show `aigen_test_xxxxxxxxx`).
API_KEY_PATTERN = re.compile(r"^aigen_(test|live)_[A-Za-z0-9_]{8,}$")
REQUEST_ID_HEADER = "X-Request-Id"  # [DOC] optional on requests, always returned

# --- Presets [DOC] --------------------------------------------------------------------------

PRESET_IDS = ("single_product_white_background", "marketplace_clean_catalog", "clean_catalog_group")
DEFAULT_PRESET = "single_product_white_background"  # [DOC] "For a first test, use …"
PRESERVATION_LEVELS = ("strict", "balanced", "creative")  # [DOC]
DEFAULT_PRESERVATION_LEVEL = "strict"  # [DOC] "strict (default)"

# --- Create payload [DOC] ---------------------------------------------------------------------

MAX_IMAGES_PER_JOB = 20  # [DOC] 1 to 20 images
MAX_INSTRUCTIONS_CHARS = 4000  # [DOC] instructions 1..4000 chars
MAX_WEBHOOK_URL_CHARS = 2048  # [DOC] https, <= 2048 chars
IDEMPOTENCY_HEADER = "Idempotency-Key"  # [DOC] header only, never in the body
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{8,160}$")  # [DOC] 8..160 of these characters
# [ASSUME] how long an idempotency key is remembered: at least this long (docs say nothing).
IDEMPOTENCY_RETENTION_SECONDS = 24 * 3600
# [ASSUME] an optional external_id is a string of at most this many characters.
MAX_EXTERNAL_ID_CHARS = 255
# [DOC: API reference, "create enhancement"] an existing idempotent enhancement is answered 200.
# [ASSUME] a new one is 201 (what our sandbox answers) or 202 (accepted for asynchronous work): the
# reference does not state it, so the client takes either.
CREATED_STATUS = 201
CREATED_STATUSES = frozenset({201, 202})
REPLAYED_STATUS = 200
# [DOC: API reference] only `images` is required; `preset` (and the rest) are optional. We always send
# our configured preset; the client omits it when given None.

# --- Statuses ---------------------------------------------------------------------------------

ENHANCEMENT_STATUSES = ("queued", "processing", "completed", "partially_completed", "failed", "cancelled")  # [DOC]
TERMINAL_STATUSES = frozenset(
    {"completed", "partially_completed", "failed", "cancelled"}
)  # [DOC] list; terminality ours
ACTIVE_STATUSES = frozenset({"queued", "processing"})  # counted by the active-job limits
ITEM_STATUSES = ("queued", "processing", "completed", "failed")  # [ASSUME] only "completed" is shown
# [DOC: API reference, create and status examples] the enhancement and its items may come WITHOUT a
# `status` (the guide's example has one): a missing one is derived, see derive_*_status below.
# [ASSUME] a status word outside these lists is "not finished" (logged once as unknown_status) until
# the job's max_job_age.
# [ASSUME] roll-up: all items completed -> completed; some failed -> partially_completed; all failed -> failed.
# [ASSUME] items are returned in the order they were sent (map back by external_id + position).

# --- Errors -----------------------------------------------------------------------------------

# [DOC] envelope {"error": {"code", "message", "request_id"}}; codes seen in the docs:
INVALID_PAYLOAD = "invalid_payload"  # 400
IDEMPOTENCY_CONFLICT = "idempotency_conflict"  # 409
INSUFFICIENT_API_CREDITS = "insufficient_api_credits"  # 402
# [ASSUME] the spelling of these codes (the docs name the situations, not the codes):
INVALID_API_KEY = "invalid_api_key"  # 401
NOT_FOUND = "not_found"  # 404
RATE_LIMITED = "rate_limited"  # 429
INTERNAL_ERROR = "internal_error"  # 500
SERVICE_UNAVAILABLE = "service_unavailable"  # 503
# [DOC] 429 and 5xx are retryable with the SAME Idempotency-Key; other 4xx are not.

# --- Usage limits [DOC] (per API key unless noted) -----------------------------------------------

WINDOW_SECONDS = 3600.0  # "per hour"
JOBS_PER_WINDOW = 5
IMAGES_PER_WINDOW = 25
POLLS_PER_WINDOW = 120
ACTIVE_JOBS_PER_KEY = 1
ACTIVE_JOBS_PER_ACCOUNT = 2
# [ASSUME] the hour is a FIXED window aligned to multiples of its length since the Unix epoch
# (the sandbox does this; the client's pacer uses a sliding window, safe under any alignment).
# [ASSUME] images are counted when the job is created (not when each item is processed).
# [ASSUME] only accepted creations count as job creations; replays use no quota; every
#          authenticated status request counts as a poll.
# [ASSUME] successful create/status responses also carry X-RateLimit-* for the jobs / polls limit.
# [ASSUME] Retry-After is whole seconds rounded up, X-RateLimit-Reset whole Unix seconds rounded up:
#          both err on the late side.
# [ASSUME] checks on create run: auth, Idempotency-Key, payload, replay/conflict, active-job
#          limits, window quotas, credits.

# [ASSUME] a job's deadline (max_job_age): at the documented 25 images an hour and one active job per
# key, a full job of 20 images is done in under an hour, and a job may wait behind the account's other
# active job; one still unfinished after 6 hours is not coming back.
MAX_JOB_AGE_SECONDS = 6 * 3600.0

# --- Credits [DOC] ------------------------------------------------------------------------------

CREDITS_PER_IMAGE = 5
MIN_LIFETIME_PURCHASED_CREDITS = 200
# [ASSUME] an enhancement's/item's `credits_reserved` keeps the amount reserved at acceptance;
#          `credits_used` grows as items complete; the difference of a terminal job was released.

# --- Source images [DOC] ------------------------------------------------------------------------

SOURCE_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}  # Pillow format -> MIME
MAX_SOURCE_BYTES = 10 * 1024 * 1024
MAX_SOURCE_REDIRECTS = 3
SOURCE_TIMEOUT_SECONDS = 10.0
# [ASSUME] per-item error codes (the docs say a bad source fails that item, not which code):
SOURCE_DOWNLOAD_FAILED = "source_download_failed"  # network error, timeout, non-2xx, too many redirects
SOURCE_TOO_LARGE = "source_too_large"
UNSUPPORTED_SOURCE_TYPE = "unsupported_source_type"  # not JPEG/PNG/WebP
SOURCE_CONTENT_TYPE_MISMATCH = "source_content_type_mismatch"  # Content-Type disagrees with the bytes
ENHANCEMENT_FAILED = "enhancement_failed"  # the image could not be processed

# --- Results [ASSUME] ---------------------------------------------------------------------------

RESULT_CONTENT_TYPE = "image/png"  # result_url and thumbnail_url serve PNG
THUMBNAIL_MAX_SIDE = 256

# --- Webhooks -----------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Aigen-Signature"  # [DOC] "v1=<hex>"
TIMESTAMP_HEADER = "X-Aigen-Timestamp"  # [DOC]; [ASSUME] Unix seconds
EVENT_ID_HEADER = "X-Aigen-Event-Id"  # [DOC]
SIGNATURE_VERSION = "v1"  # [DOC]
# [ASSUME] event types and bodies:
#   item events: {"type", "enhancement_id", "item": {same fields as a status item}}
#   enhancement.completed (sent once the job is terminal, whatever its status):
#     {"type", "enhancement_id", "status"}
EVENT_ITEM_COMPLETED = "enhancement.item.completed"
EVENT_ITEM_FAILED = "enhancement.item.failed"
EVENT_ENHANCEMENT_COMPLETED = "enhancement.completed"
# [ASSUME] a receiver's accepted clock skew for X-Aigen-Timestamp.
WEBHOOK_TOLERANCE_SECONDS = 300


def is_test_key(api_key: str) -> bool:
    """True for a sandbox key (`aigen_test_…`) [DOC]."""
    return api_key.startswith(TEST_KEY_PREFIX)


def derive_item_status(result_url: str | None, error_code: str | None) -> str:
    """[DOC: API reference shows items without `status`] an item with a result is completed, one with
    an error code failed; else [ASSUME] still processing."""
    if result_url:
        return "completed"
    if error_code:
        return "failed"
    return "processing"


def derive_enhancement_status(total: int, completed: int, failed: int) -> str:
    """[DOC: API reference shows enhancements without `status`, with total/completed/failed_items]
    Every item done: the roll-up above ([ASSUME] as our sandbox rolls up); some done: processing;
    none: queued."""
    done = completed + failed
    if total <= 0 or done < total:
        return "processing" if done else "queued"
    if failed == 0:
        return "completed"
    return "failed" if completed == 0 else "partially_completed"
