"""The life of one image: every move between states, and what each move sets and clears. Pure.

A row changes state only through one of these named transitions (`Store.transition`, a
compare-and-set: the caller says which state(s) it saw the row in, and a row that has moved on since
is left alone). Each transition names the states it may start from, the one it ends in, the fields
its caller may give (`sets`), and the fields it resets (`clears`, to the value shown) unless the
caller gives them. Discovery inserts new rows in one of `INITIAL_STATES`; nothing else writes `state`.

    discovered ─submit─► submitted ─enhance─► enhanced ─back_up─► backed_up ─write─► written ─finish─► done
                                                                    │     ▲
                                                       await_review │     │ approve
                                                                    ▼     │
                                                               awaiting_review ─reject─► rejected

    fail:    discovered | submitted | enhanced | backed_up | written ─► failed
    skip:    those, and failed | skipped | baseline | reverted ─► skipped
    requeue: submitted | backed_up | failed | skipped | baseline | reverted ─► discovered
    redo:    awaiting_review | rejected ─► discovered
    retry_backup / retry_write: failed ─► enhanced / backed_up (the result is there: never paid again)
    revert:  written | done | failed ─► reverted

(`baseline`: recorded on the first run with new_only, never processed unless a resync asks.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .models import ImageState

S = ImageState


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[ImageState]
    target: ImageState
    sets: frozenset[str] = frozenset()                    # fields the caller may give
    clears: Mapping[str, Any] = field(default_factory=dict)  # reset to these values unless the caller gives them

    def values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The columns this move writes, `state` included: its clears, then the caller's fields."""
        return {**self.clears, **fields, "state": self.target}


# Fields that say what the step in progress is doing; a step that completes resets them.
_STEP_RESET = {"attempts": 0, "error_code": None, "error_message": None}
# Fields of a write to Shopify: a move that starts the write again forgets the earlier one.
_WRITE_RESET = {"write_source": None, "write_mode": None, "written_at": None, "output_media_id": None}
# Fields of one provider job and its result: a move that sends the image again forgets them.
_JOB_RESET = {"job_id": None, "item_index": None, "result_url": None, "result_sha256": None, "approved_at": None}

_WORKED_ON = frozenset({S.DISCOVERED, S.SUBMITTED, S.ENHANCED, S.BACKED_UP, S.WRITTEN})
_SOURCE_FIELDS = frozenset({"source_url", "filename", "mime_type", "alt", "position", "product_title"})

TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    # Store.create_job, in the job's own transaction: the image is one item of a job about to be sent.
    Transition("submit", frozenset({S.DISCOVERED}), S.SUBMITTED,
               sets=frozenset({"job_id", "item_index", "backup_sha256", "backup_pruned_at"})),
    Transition("enhance", frozenset({S.SUBMITTED}), S.ENHANCED, sets=frozenset({"result_url"})),
    Transition("back_up", frozenset({S.ENHANCED}), S.BACKED_UP,
               sets=frozenset({"backup_sha256", "backup_pruned_at"}), clears=_STEP_RESET),
    # [review]: the finished result waits, kept locally, for the owner; nothing in Shopify changes yet.
    Transition("await_review", frozenset({S.BACKED_UP}), S.AWAITING_REVIEW, sets=frozenset({"result_sha256"}),
               clears=_STEP_RESET),
    Transition("approve", frozenset({S.AWAITING_REVIEW}), S.BACKED_UP, sets=frozenset({"approved_at"}),
               clears={**_STEP_RESET, "next_attempt_at": None}),
    Transition("reject", frozenset({S.AWAITING_REVIEW}), S.REJECTED, sets=frozenset({"review_note"})),
    # Enhance again with other options: the job and its result are forgotten; paid_attempts stays
    # (what was paid was paid); review_note carries the new options.
    Transition("redo", frozenset({S.AWAITING_REVIEW, S.REJECTED}), S.DISCOVERED,
               sets=frozenset({"review_note", "rule"}),
               clears={**_JOB_RESET, **_WRITE_RESET, **_STEP_RESET, "next_attempt_at": None}),
    Transition("write", frozenset({S.BACKED_UP}), S.WRITTEN,
               sets=frozenset({"output_media_id", "written_at", "next_attempt_at"}), clears=_STEP_RESET),
    Transition("finish", frozenset({S.WRITTEN}), S.DONE, sets=frozenset({"media_id"}),
               clears={**_STEP_RESET, "next_attempt_at": None}),
    Transition("fail", _WORKED_ON, S.FAILED, sets=frozenset({"error_code", "error_message", "attempts"})),
    # Skipped: the merchant deleted it, a rule skips its product, a credit cap held it back. Also from
    # the states a resync may requeue (a rule that skips is recorded on them instead).
    Transition("skip", _WORKED_ON | {S.FAILED, S.SKIPPED, S.BASELINE, S.REVERTED}, S.SKIPPED,
               sets=frozenset({"error_code", "error_message", "rule"})),
    # Back to the queue, to be sent to the provider again. Three hand-written resets once did this and
    # disagreed on what they cleared (discovery's resync, `retouch retry`, write-back's "the merchant
    # put a new picture here"); this one clears the union: the job and its result, the write and its
    # output (a media Shopify failed is history once the image goes round again, as `retry` said), and
    # the step's attempts and wait. The caller may keep a field by giving it: a failed item of a job
    # still being polled keeps its job_id/item_index (the job's next poll lists every item it sent),
    # and error_code/error_message may say why it goes again. backup_sha256 is kept unless given: the
    # original is the same picture (write-back gives None when the merchant replaced it).
    Transition("requeue", frozenset({S.SUBMITTED, S.BACKED_UP, S.FAILED, S.SKIPPED, S.BASELINE, S.REVERTED}),
               S.DISCOVERED,
               sets=_SOURCE_FIELDS | {"rule", "retries", "backup_sha256", "backup_pruned_at"},
               clears={**_JOB_RESET, **_WRITE_RESET, **_STEP_RESET, "next_attempt_at": None}),
    # `retouch retry` of an image that has its result: never pay the provider again for it.
    Transition("retry_backup", frozenset({S.FAILED}), S.ENHANCED, sets=frozenset({"retries"}),
               clears={**_WRITE_RESET, **_STEP_RESET, "next_attempt_at": None}),
    Transition("retry_write", frozenset({S.FAILED}), S.BACKED_UP, sets=frozenset({"retries"}),
               clears={**_WRITE_RESET, **_STEP_RESET, "next_attempt_at": None}),
    Transition("revert", frozenset({S.WRITTEN, S.DONE, S.FAILED}), S.REVERTED,
               sets=frozenset({"media_id", "reverted_at"}),
               clears={"output_media_id": None, "write_source": None, "write_mode": None,
                       "error_code": None, "error_message": None}),
)}

# The states a new row may be inserted in (discovery: queued, a baseline, or skipped by a rule).
INITIAL_STATES = frozenset({S.BASELINE, S.DISCOVERED, S.SKIPPED})


@dataclass(frozen=True)
class Move:
    """One image's transition in a batch (Store.transitions): its own fields, its own expected state(s)."""

    image_id: int
    name: str
    expect: tuple[ImageState, ...]
    fields: Mapping[str, Any] = field(default_factory=dict)


def states_of(expect: ImageState | str | Iterable[ImageState | str]) -> tuple[ImageState, ...]:
    """`expect` as a sorted tuple of states (one state or several)."""
    items = [expect] if isinstance(expect, str) else list(expect)
    return tuple(sorted({ImageState(state) for state in items}))


def checked(name: str, expect: ImageState | str | Iterable[ImageState | str],
            fields: Mapping[str, Any]) -> tuple[Transition, tuple[ImageState, ...]]:
    """The transition `name` and the expected states, or ValueError for a move the table does not
    allow: an unknown name, an expected state it cannot start from, a field it does not set."""
    transition = TRANSITIONS.get(name)
    if transition is None:
        raise ValueError(f"no transition named {name!r} (known: {', '.join(sorted(TRANSITIONS))})")
    states = states_of(expect)
    if not states:
        raise ValueError(f"transition {name!r}: expect names no state")
    wrong = [str(state) for state in states if state not in transition.sources]
    if wrong:
        raise ValueError(f"transition {name!r} cannot start from {', '.join(wrong)}")
    extra = sorted(set(fields) - transition.sets - set(transition.clears))
    if extra:
        raise ValueError(f"transition {name!r} does not set {', '.join(extra)}")
    return transition, states


def named(source: ImageState | str, target: ImageState | str) -> str:
    """The transition from `source` to `target` (the table has at most one per pair); ValueError if none."""
    source, target = ImageState(source), ImageState(target)
    for transition in TRANSITIONS.values():
        if source in transition.sources and transition.target is target:
            return transition.name
    raise ValueError(f"no transition from {source} to {target}")


def allowed_moves() -> set[tuple[ImageState, ImageState]]:
    """Every (from, to) pair the table allows."""
    return {(source, t.target) for t in TRANSITIONS.values() for source in t.sources}


def move_from(image_id: int, source: ImageState | str, changes: Mapping[str, Any]) -> Move:
    """A step's planned change of one image (its new `state` among its fields) as the transition from
    the state the step read it in: applied only if the image is still there (Store.transitions)."""
    fields = {name: value for name, value in changes.items() if name != "state"}
    return Move(image_id, named(source, changes["state"]), (ImageState(source),), fields)


def markdown_table() -> str:
    """The table as docs/how-it-works.md shows it (tests/test_lifecycle.py keeps the two equal)."""
    def words(names: Iterable[str]) -> str:
        return ", ".join(f"`{name}`" for name in sorted(names)) or "—"

    lines = ["| transition | from | to | the caller may set | reset unless given |", "|---|---|---|---|---|"]
    for t in TRANSITIONS.values():
        lines.append(f"| `{t.name}` | {words(t.sources)} | `{t.target}` | {words(t.sets)} | {words(t.clears)} |")
    return "\n".join(lines)
