"""Store methods for the shop's side: media that show our output, webhook deliveries already
handled, and the lines of a bulk export being read. A mixin of Store (storage/store.py), which gives
it its engine and transactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from .models import OutputMedia, SeenEvent, utcnow

_insert_output = sqlite_insert(OutputMedia)
RECORD_OUTPUT = _insert_output.on_conflict_do_update(
    index_elements=["media_id"],
    set_={"product_id": _insert_output.excluded.product_id, "image_id": _insert_output.excluded.image_id})


class ShopTables:
    # Store gives these methods its engine and its transactions (`_read`, `_write`, `_session`).
    # ----- output media -----------------------------------------------------------------------

    def is_output(self, media_id: str) -> bool:
        with self._read() as s:
            return s.get(OutputMedia, media_id) is not None

    def output_media_of_product(self, product_id: str) -> set[str]:
        # Plain ids: no ORM session for them (once per image written).
        with self.engine.connect() as conn:
            return set(conn.execute(select(OutputMedia.media_id).where(OutputMedia.product_id == product_id)).scalars())

    def add_output(self, media_id: str, product_id: str, image_id: int | None) -> None:
        self.add_outputs(product_id, {media_id: image_id})

    def add_outputs(self, product_id: str, image_of_media: Mapping[str, int | None]) -> None:
        """Record these media of the product as our output (media id -> the image it shows), in one transaction."""
        if not image_of_media:
            return
        now = utcnow()
        rows = [{"media_id": media_id, "product_id": product_id, "image_id": image_id, "created_at": now}
                for media_id, image_id in image_of_media.items()]
        with self._write() as conn:
            conn.execute(RECORD_OUTPUT, rows)  # one statement, executed for each row

    def remove_output(self, media_id: str) -> None:
        with self._session() as s:
            s.exec(delete(OutputMedia).where(col(OutputMedia.media_id) == media_id))

    # ----- webhook deliveries -----------------------------------------------------------------

    def remember_event(self, source: str, event_id: str, at: float) -> bool:
        """Record a webhook event id; False when it was seen before (a replay)."""
        try:
            with self._session() as s:
                s.add(SeenEvent(event_id=f"{source}:{event_id}", source=source, at=at))
            return True
        except IntegrityError:
            return False

    def forget_events(self, before: float) -> None:
        with self._session() as s:
            s.exec(delete(SeenEvent).where(col(SeenEvent.at) < before))

    # ----- bulk export staging ----------------------------------------------------------------

    def stage_bulk_lines(self, lines: Sequence[tuple[str, str | None, str]]) -> None:
        """Append a batch of (object id, parent id, JSON text) lines of a bulk export, in one transaction."""
        if not lines:
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO bulkline (object_id, parent_id, payload) VALUES (?, ?, ?)", list(lines))

    def staged_parents(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """The next `limit` staged top-level lines (no parent) after line `after`: (line, object id, JSON)."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, object_id, payload FROM bulkline WHERE parent_id IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after, limit))
            return [tuple(row) for row in rows]  # type: ignore[misc]

    def staged_children(self, parent_ids: Sequence[str]) -> dict[str, list[str]]:
        """The staged lines whose parent is one of `parent_ids`, in line order, by parent."""
        found: dict[str, list[str]] = {parent: [] for parent in parent_ids}
        if not parent_ids:
            return found
        marks = ",".join("?" * len(parent_ids))
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT parent_id, payload FROM bulkline WHERE parent_id IN ({marks}) ORDER BY id", tuple(parent_ids))
            for parent, payload in rows:
                found[parent].append(payload)
        return found

    def staged_line_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM bulkline").scalar() or 0)

    def clear_bulk_lines(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM bulkline")
