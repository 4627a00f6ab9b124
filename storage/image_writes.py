"""The statements that change image rows inside one of the store's transactions: free-form fields
(never a state) and transitions (storage/lifecycle.py), each a compare-and-set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, literal_column, update
from sqlmodel import col, select

from . import lifecycle
from .lifecycle import Move
from .models import Image, ImageState, utcnow

# Image columns that record an intent before an outside call (models.py): their commit is fsync'd.
INTENT_COLUMNS = frozenset({"write_source"})


def set_fields(conn: Connection, changes: Mapping[int, dict[str, Any]]) -> None:
    """Apply each image's changes; images given the same columns share one statement, executed for
    each of them (a job's 20 items: one statement, not 20). KeyError if an image is missing.
    Never a state: that changes only through a transition (`apply_moves`)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for image_id, fields in changes.items():
        _refuse_state(fields)
        by_columns.setdefault(tuple(sorted(fields)), []).append(
            {"image_id": image_id, **{f"new_{name}": value for name, value in fields.items()}})
    now = utcnow()
    for columns, rows in by_columns.items():
        statement = (update(Image).where(col(Image.id) == bindparam("image_id"))
                     .values(**{name: bindparam(f"new_{name}") for name in columns}, updated_at=now))
        if conn.execute(statement, rows).rowcount != len(rows):
            raise KeyError(sorted(row["image_id"] for row in rows))


def _refuse_state(fields: Mapping[str, Any]) -> None:
    if "state" in fields:
        raise ValueError("an image's state changes only through Store.transition (storage/lifecycle.py)")


def apply_moves(conn: Connection, moves: Sequence[Move]) -> list[int]:
    """Apply each move as a compare-and-set (`... WHERE id = ? AND state IN (expect)`); returns the ids
    that moved, in the order given. Moves of one transition with the same expected states and columns
    share one statement, executed for each image (a job's 20 items: one statement, not 20).
    ValueError (nothing written) for a move the table does not allow."""
    groups: dict[tuple[str, tuple[ImageState, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
    for move in moves:
        transition, states = lifecycle.checked(move.name, move.expect, move.fields)
        values = transition.values(move.fields)
        groups.setdefault((move.name, states, tuple(sorted(values))), []).append(
            {"image_id": move.image_id, **{f"new_{name}": value for name, value in values.items()}})
    now = utcnow()
    moved: set[int] = set()
    for (name, states, columns), rows in groups.items():
        ids = [row["image_id"] for row in rows]
        # The expected states as SQL literals (they are the enum's own words): an expanding IN list
        # cannot be executed for many rows.
        expected = col(Image.state).in_([literal_column(f"'{ImageState(state).value}'") for state in states])
        statement = (update(Image).where(col(Image.id) == bindparam("image_id"), expected)
                     .values(**{column: bindparam(f"new_{column}") for column in columns}, updated_at=now))
        if conn.execute(statement, rows).rowcount == len(rows):
            moved.update(ids)
            continue
        # Some rows were no longer in an expected state. The ones this statement moved are those in
        # its target state stamped with this transaction's time (the write lock is ours since the
        # statement: no other process changed them in between).
        target = lifecycle.TRANSITIONS[name].target
        moved.update(conn.execute(select(Image.id).where(col(Image.id).in_(ids), col(Image.state) == str(target),
                                                         col(Image.updated_at) == now)).scalars())
    return [move.image_id for move in moves if move.image_id in moved]
