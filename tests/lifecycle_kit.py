"""Put a tracked image into any state for a test, as the steps before it would have left it.

The product changes an image's state only through Store.transition (storage/lifecycle.py), which
refuses a move the image's life does not allow (a `done` image is not `written` again). A test that
needs a row in a given state writes it into the SQLite file directly, as state_corpus.py does."""

from __future__ import annotations

import sqlite3

from retouch.storage.models import ImageState
from retouch.storage.store import Store


def put_in_state(store: Store, image_id: int, state: ImageState, **fields: object) -> None:
    columns = {"state": str(state), **fields}
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with sqlite3.connect(store.path) as conn:
        if conn.execute(f"UPDATE image SET {assignments} WHERE id = ?", (*columns.values(), image_id)).rowcount != 1:
            raise KeyError(image_id)
