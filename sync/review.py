"""Review before publish: the owner approves, rejects or redoes each result before the store sees it.

With `[review] mode = "all"`, write-back keeps each finished result on this machine (checked and
converted, content-addressed in `<backup_dir>/results/`, `Image.result_sha256`) and the image waits
in `awaiting_review` (sync/pipeline/review_step.py). This module is what the CLI (`retouch review`)
and the web page (sync/web/) call; every change goes through the store's named transitions
(`approve`, `reject`, `redo`: compare-and-set, so a decision on an image that moved meanwhile is
refused with the reason, never applied to the wrong state).

    awaiting_review ──approve──► backed_up (approved_at) ──write──► written ──► done
          │ └───────reject─────► rejected (review_note: the owner's reason; the original stays)
          └─────────redo───────► discovered (review_note: its options; a new paid attempt)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retouch.storage.backups import BackupStore
from retouch.storage.models import Image, ImageState, epoch
from retouch.storage.store import Store

from .config import Settings
from .rules import recorded

# Where kept results live, beside the originals: `<backup_dir>/results/<sha[:2]>/<sha>` (the originals'
# listing only reads two-letter folders, so results are never counted or pruned as originals).
RESULTS_FOLDER = "results"

# The provider option a redo's --preset / --prompt sets, per provider (sync/rules.py RULE_OPTIONS).
REDO_OPTION_KEYS: dict[str, dict[str, str]] = {
    "aigenstudio": {"preset": "preset", "prompt": "instructions"},
    "productai": {"prompt": "prompt"},
    "imagen": {"preset": "profile_key"},
}

# The review states (the transition table: storage/lifecycle.py).
AWAITING_REVIEW = ImageState.AWAITING_REVIEW
REJECTED = ImageState.REJECTED

# A reject's reason and a redo's options are short notes, not documents.
NOTE_MAX = 500

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ReviewItem:
    image_id: int
    product_id: str
    product_title: str | None
    filename: str | None
    provider: str
    credits: int  # what the provider charged for this result (its job's credits, per image)
    finished_at: float | None  # wall clock the provider finished it (its job's end)
    before_sha256: str | None  # the original's backup (storage/backups.py)
    after_sha256: str | None  # the kept result (result_sha256)

    @property
    def product_name(self) -> str:
        """How messages name the product: its title, else its id."""
        return self.product_title or self.product_id


@dataclass(frozen=True)
class ReviewOutcome:
    moved: list[int] = field(default_factory=list)  # image ids the decision applied to
    refused: list[tuple[int, str]] = field(default_factory=list)  # (image id, why not), in the owner's words


def results_store(settings: Settings) -> BackupStore:
    """The content-addressed store of kept results (the same format as the originals' backups)."""
    return BackupStore(settings.backup_dir / RESULTS_FOLDER)


def picture_path(settings: Settings, sha256: str) -> Path | None:
    """Where a before (original) or after (kept result) picture's bytes are on disk; None when it is
    not there (never there, or pruned). Only a real digest is looked up: no path is built from text."""
    if not sha256 or not _SHA256.fullmatch(sha256):
        return None
    for store in (results_store(settings), BackupStore(settings.backup_dir)):
        path = store.path_for(sha256)
        if path.is_file():
            return path
    return None


# ----- reading the queue -------------------------------------------------------------------------------------------


def waiting_for_review(store: Store, *, product_id: str | None = None) -> list[ReviewItem]:
    """Every image waiting for the owner, oldest first (of one product, when given)."""
    images = store.images_in_state(AWAITING_REVIEW, product_ids=[product_id] if product_id is not None else None)
    jobs: dict[int, Any] = {}
    items = []
    for image in images:
        job = None
        if image.job_id is not None:
            if image.job_id not in jobs:
                jobs[image.job_id] = store.job(image.job_id)
            job = jobs[image.job_id]
        items.append(
            ReviewItem(
                image_id=image.id,
                product_id=image.product_id,
                product_title=image.product_title,
                filename=image.filename,
                provider=job.provider if job else "",
                credits=_credits_per_image(job),
                finished_at=epoch(job.finished_at) if job and job.finished_at else None,
                before_sha256=image.backup_sha256,
                after_sha256=image.result_sha256,
            )
        )
    return items


def _credits_per_image(job: Any) -> int:
    if job is None or not job.image_count:
        return 0
    return round((job.credits_used or 0) / job.image_count)


def select_images(
    store: Store,
    *,
    image_ids: Iterable[int] = (),
    product: str | None = None,
    everything: bool = False,
    states: Sequence[ImageState] = (AWAITING_REVIEW,),
) -> list[Image]:
    """The images a decision is about: by id, by product (id, gid or title, case-insensitive) or all
    of those in `states`. The CLI and the web page name images the same way."""
    chosen: dict[int, Image] = {}
    for image_id in image_ids:
        image = store.image(int(image_id))
        if image is not None:
            chosen[image.id] = image
    if everything or product is not None:
        for image in store.images_in_state(*states):
            if everything or product_matches(image, product or ""):
                chosen[image.id] = image
    return [chosen[key] for key in sorted(chosen)]


def product_matches(image: Image, product: str) -> bool:
    """Does `product` (a number, a gid or a title) name this image's product?"""
    wanted = product.strip()
    if wanted.isdigit():
        return image.product_id == f"gid://shopify/Product/{wanted}"
    return wanted == image.product_id or (image.product_title or "").strip().lower() == wanted.lower()


# ----- decisions ---------------------------------------------------------------------------------------------------


def approve(store: Store, image_ids: Iterable[int], *, now: float) -> ReviewOutcome:
    """Let these results go to the store: each goes back to `backed_up` with `approved_at`, and
    write-back writes it from the kept bytes (no new download)."""
    ids = _ids(image_ids)
    moved = store.transition(ids, "approve", expect=AWAITING_REVIEW, approved_at=now, next_attempt_at=None, attempts=0)
    return ReviewOutcome(list(moved), _refusals(store, ids, moved, "approved"))


def reject(store: Store, image_ids: Iterable[int], *, reason: str, now: float) -> ReviewOutcome:
    """Never write these results: each ends `rejected` with the owner's reason; the original stays."""
    ids = _ids(image_ids)
    note = " ".join(reason.split())[:NOTE_MAX] or "rejected by the owner"
    moved = store.transition(ids, "reject", expect=AWAITING_REVIEW, review_note=note)
    return ReviewOutcome(list(moved), _refusals(store, ids, moved, "rejected"))


def redo_options(provider: str, *, preset: str | None = None, prompt: str | None = None) -> dict[str, str]:
    """The provider options a redo sets; ValueError, in the owner's words, for one the provider lacks."""
    keys = REDO_OPTION_KEYS.get(provider, {})
    options: dict[str, str] = {}
    for flag, value in (("preset", preset), ("prompt", prompt)):
        if value is None:
            continue
        if flag not in keys:
            takes = " or ".join(f"--{k}" for k in keys) or "neither"
            raise ValueError(f"--{flag}: {provider} has no {flag}; a redo there takes {takes}")
        options[keys[flag]] = value
    return options


def check_redo_options(settings: Settings, *, preset: str | None = None, prompt: str | None = None) -> None:
    """ValueError (one line naming the flag) when the configured provider would refuse these options."""
    from pydantic import ValidationError

    options = redo_options(settings.provider.name, preset=preset, prompt=prompt)
    if not options:
        return
    table = settings.provider_table
    try:
        type(table).model_validate({**table.model_dump(exclude_unset=True), **options})
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = next(
            (f for f, key in REDO_OPTION_KEYS[settings.provider.name].items() if key == first["loc"][0]),
            str(first["loc"][0]),
        )
        raise ValueError(f"--{flag}: {first['msg'].removeprefix('Value error, ')}") from None


def redo_quote(
    settings: Settings, store: Store, image_ids: Iterable[int], *, preset: str | None = None, prompt: str | None = None
) -> str:
    """What a redo of these images costs and takes, for the confirmation: images, credits, money,
    time (sync/costs.py). ValueError for options the provider would refuse."""
    import time

    from .budget import reported_balance
    from .commands.resync import run_estimate

    check_redo_options(settings, preset=preset, prompt=prompt)
    images = [
        image for image in (store.image(i) for i in _ids(image_ids)) if image is not None and image.state in REDOABLE
    ]
    reported = reported_balance(settings, store, time.time())
    estimate = run_estimate(settings, len(images), reported[0] if reported else None)
    names = sorted({image.product_title or image.product_id for image in images})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    options = _options_words(redo_options(settings.provider.name, preset=preset, prompt=prompt))
    return (
        f"redo {len(images)} image(s)"
        + (f" of {shown}" if shown else "")
        + (f" with {options}" if options else "")
        + f": {estimate.words()}"
    )


# States a redo starts from: a result waiting for the owner, or one the owner rejected.
REDOABLE = (AWAITING_REVIEW, REJECTED)


def redo(
    store: Store, image_ids: Iterable[int], *, preset: str | None = None, prompt: str | None = None, now: float
) -> ReviewOutcome:
    """Enhance these images again, a new paid attempt: each is queued (`discovered`) with its options
    recorded like a [[rules]] decision (sent with its next job; the note says what they were)."""
    ids = _ids(image_ids)
    moved: list[int] = []
    refused: list[tuple[int, str]] = []
    for image_id in ids:
        image = store.image(image_id)
        if image is None or image.state not in REDOABLE:
            refused.append((image_id, _why_not(image, "redone")))
            continue
        job = store.job(image.job_id) if image.job_id is not None else None
        provider = job.provider if job else (recorded(image.rule) or {}).get("provider", "")
        try:
            options = redo_options(provider, preset=preset, prompt=prompt)
        except ValueError as exc:
            refused.append((image_id, str(exc)))
            continue
        decision = _redo_decision(image.rule, provider, options)
        note = "redo" + (f" with {_options_words(options)}" if options else "")
        done = store.transition(
            [image_id],
            "redo",
            expect=REDOABLE,
            rule=decision,
            review_note=note[:NOTE_MAX],
            next_attempt_at=None,
            attempts=0,
            error_code=None,
            error_message=None,
        )
        if done:
            moved.extend(done)
        else:
            refused.append((image_id, _why_not(store.image(image_id), "redone")))
    return ReviewOutcome(moved, refused)


def _redo_decision(previous_rule: str | None, provider: str, options: dict[str, str]) -> str | None:
    """The image's recorded decision (sync/rules.py `decision`) with the redo's options over its rule's."""
    before = recorded(previous_rule) or {}
    if not options:
        return previous_rule
    kept = before.get("options", {}) if before.get("provider") == provider else {}
    label = before.get("rule")
    return json.dumps(
        {
            "rule": f"{label} + redo" if label else "redo",
            "skip": False,
            "options": {**kept, **options},
            "provider": provider,
        },
        sort_keys=True,
    )


def _options_words(options: dict[str, str]) -> str:
    return ", ".join(f"{key} {value!r}" for key, value in sorted(options.items()))


# ----- auto_approve_after -----------------------------------------------------------------------------------------


def due_for_auto_approval(items: Iterable[ReviewItem], *, after: float | None, now: float) -> list[int]:
    """The results that have waited longer than `after` seconds since their job finished (pure)."""
    if after is None:
        return []
    return [item.image_id for item in items if item.finished_at is not None and now - item.finished_at >= after]


# ----- helpers --------------------------------------------------------------------------------------------------------


def _ids(image_ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in image_ids))


def _refusals(store: Store, ids: list[int], moved: Sequence[int], verb: str) -> list[tuple[int, str]]:
    done = set(moved)
    return [(image_id, _why_not(store.image(image_id), verb)) for image_id in ids if image_id not in done]


def _why_not(image: Image | None, verb: str) -> str:
    if image is None:
        return f"not {verb}: no such image"
    if image.state == ImageState.BACKED_UP and image.approved_at is not None:
        return f"not {verb}: already approved, being written to the store"
    if image.state == REJECTED:
        return f"not {verb}: already rejected" + (f" ({image.review_note})" if image.review_note else "")
    return f"not {verb}: it is not waiting for review (it is {image.state})"
