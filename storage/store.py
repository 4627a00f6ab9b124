"""The only code that opens a database session.

`Store` hands out plain, detached rows (`expire_on_commit=False`) and takes changes as keyword
arguments, one transaction per method, so the pipeline never holds a session across an outside
call. The daemon's per-image writes (`update_image`, the job updates, `add_output`) are single
SQL statements on a pooled connection, not ORM load-modify-flush: the ORM's unit of work cost more
CPU than everything else the daemon does for an image (bench/overhead.py).

Durability: SQLite runs in WAL mode with synchronous=NORMAL: a commit survives a crash of the
process (the WAL is in the OS's hands), and a power cut loses at most the commits since the
last fsync, never the database's consistency. The commits a replay could not redo harmlessly
are fsync'd (synchronous=FULL for that transaction, `durable=True`): every write of the job
table (its idempotency key before a provider is paid, its provider state before the next paid
step, the answer that says a send went through) and an image's write-back intent
(`write_source`, before the Shopify mutation). One fsync of the WAL makes every earlier commit
durable too, so after a power cut the database holds at least everything up to the last intent.
The rest (states a step reaches again by running again: discovered, backed up, written, done)
needs no fsync of its own.

SQLite runs with a busy timeout: `status` or `resync` in another process can
read and write while the daemon runs. The commands wait up to 60 s for another process's write
lock; the daemon only 2 s per statement, and waits for a longer lock before each step with
`wait_writable` in a thread (sync/scheduler.py says why).
"""

from __future__ import annotations

from datetime import datetime, timezone
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, bindparam, func, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, delete, select

from .database_file import database_problem, sqlite_file
from .backups import Holder
from . import lifecycle
from .engine import (  # noqa: F401  (is_locked_error, install_text_scrubber: imported from here by sync)
    BUSY_TIMEOUT,
    StorageError,
    install_text_scrubber,
    is_locked_error,
    make_engine,
    open_failure,
)
from .image_writes import INTENT_COLUMNS, apply_moves, set_fields
from .lifecycle import Move
from .models import MIGRATIONS, SCHEMA_VERSION, Image, ImageState, Meta, utcnow
from .provider_tables import ProviderTables
from .shop_tables import ShopTables

META_VALUE = select(Meta.value).where(col(Meta.key) == bindparam("key"))
INSERT_IMAGE = sqlite_insert(Image)


class Store(ProviderTables, ShopTables):
    """The database: images here; jobs and quota in ProviderTables, output media, webhook
    deliveries and bulk-export lines in ShopTables (mixins sharing this class's transactions)."""

    def __init__(self, url: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.url = url
        self._probe: Any = None  # the connection wait_writable asks on (sqlite3.Connection)
        try:
            path = sqlite_file(url)
        except ValueError as exc:
            raise StorageError(f"{url}: {exc}") from None
        # The file the URL names, %-escapes decoded: plain sqlite3 connections must open this one,
        # never the URL's text (a '+' or a space in a folder name is escaped there).
        self.path = path
        problem = database_problem(path)
        if problem:
            raise StorageError(f"{path} {problem}")
        # Creating or migrating the schema may wait the long timeout: nothing else is running yet.
        self.engine = make_engine(url)
        try:
            self._open_schema()
        except DatabaseError as exc:  # also OperationalError: the file SQLite found is unusable
            self.engine.dispose()
            raise StorageError(f"{path} {open_failure(exc, path)}") from None
        except StorageError as exc:
            self.engine.dispose()
            raise StorageError(f"{path}: {exc}") from None
        if busy_timeout != BUSY_TIMEOUT:
            self.engine.dispose()
            self.engine = make_engine(url, busy_timeout)

    def _open_schema(self) -> None:
        """Create or migrate the schema; StorageError for a version this retouch did not write, or for
        another program's database (tables, none of them ours: retouch would add its own beside them)."""
        with self.engine.connect() as conn:
            tables = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = set(SQLModel.metadata.tables)
        tables = {name for name in tables if not name.startswith("sqlite_")}
        if tables and not tables & ours:
            raise StorageError(f"holds another program's tables ({', '.join(sorted(tables)[:3])}…), none of retouch's: "
                               "point [storage] url at a file of its own")
        self._create_schema()
        version = self.get_meta("schema_version") or str(SCHEMA_VERSION)
        if not version.isdigit() or not 1 <= int(version) <= 10_000:  # isdigit: no sign, no space, no 1e9
            raise StorageError(f"schema version {version[:40]!r} was not written by retouch; "
                               "is this another program's database?")
        if int(version) < SCHEMA_VERSION:
            if any(step not in MIGRATIONS for step in range(int(version), SCHEMA_VERSION)):
                raise StorageError(f"schema version {version} is older than any retouch release can migrate")
            self._migrate(int(version))
        elif int(version) > SCHEMA_VERSION:
            raise StorageError(f"database schema version {version} is newer than this retouch "
                               f"(expects {SCHEMA_VERSION}): upgrade retouch")

    def _create_schema(self) -> None:
        """Tables and the schema version of a new database. Another process (the daemon and a
        `retouch status` started at the same moment) may be creating them too: create_all checks
        then creates, so the loser of that race sees "already exists" and simply looks again."""
        for attempt in range(20):
            try:
                SQLModel.metadata.create_all(self.engine)
                with self.engine.begin() as conn:
                    conn.exec_driver_sql("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                                         (str(SCHEMA_VERSION),))
                return
            except OperationalError as exc:
                if "already exists" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05)

    def _migrate(self, version: int) -> None:
        """Bring an older database up to date in one transaction (new tables came from create_all)."""
        with self.engine.begin() as conn:
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.exec_driver_sql(statement)
            conn.exec_driver_sql("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A session that only reads: closed without a commit, which would cost more than the query
        itself for a small result (an empty `images_in_state`: 162 against 88 µs). Its rows are
        handed out detached, fully loaded, as from `_session`."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[Connection]:
        """One transaction of plain SQL statements; `durable`: its commit is fsync'd (module docstring).
        SQLite refuses to change the safety level inside a transaction, so it is raised before the
        first statement (pysqlite only opens the transaction at the first write) and lowered after
        the commit (or the rollback of a failure)."""
        with self.engine.connect() as conn:
            if durable:
                conn.exec_driver_sql("PRAGMA synchronous=FULL")
            try:
                yield conn
                conn.commit()
            finally:
                if durable:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                    conn.commit()

    # ----- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        # Read several times a tick (a pause, a 429 hold): one plain statement, built once; an ORM
        # session would cost it four times as much CPU (117 against 28 µs).
        with self.engine.connect() as conn:
            return conn.execute(META_VALUE, {"key": key}).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self._session() as s:
            s.merge(Meta(key=key, value=value))

    def delete_meta(self, key: str) -> None:
        with self._session() as s:
            s.exec(delete(Meta).where(col(Meta.key) == key))

    # ----- images -----------------------------------------------------------------------------

    def image(self, image_id: int) -> Image | None:
        with self._read() as s:
            return s.get(Image, image_id)

    def image_by_media(self, media_id: str) -> Image | None:
        with self._read() as s:
            return s.exec(select(Image).where(Image.media_id == media_id)).first()

    def images_of_product(self, product_id: str) -> list[Image]:
        with self._read() as s:
            return list(s.exec(select(Image).where(Image.product_id == product_id).order_by(col(Image.id))))

    def images_by_media(self, media_ids: Iterable[str]) -> dict[str, Image]:
        ids = list(media_ids)
        if not ids:
            return {}
        with self._read() as s:
            rows = s.exec(select(Image).where(col(Image.media_id).in_(ids)))
            return {row.media_id: row for row in rows}

    def insert_image(self, **fields: Any) -> Image:
        """Insert a new image row; if another process (resync beside the daemon) inserted the same
        media a moment ago, return that row instead."""
        try:
            with self._session() as s:
                image = Image(**fields)
                s.add(image)
                s.flush()
                return image
        except IntegrityError:
            existing = self.image_by_media(fields["media_id"])
            if existing is None:
                raise
            return existing

    def insert_images(self, rows: Sequence[dict[str, Any]]) -> None:
        """`insert_image` for several new images, in one transaction; should another process have
        inserted one of them meanwhile, each is inserted on its own (`insert_image` keeps theirs)."""
        if not rows:
            return
        # Plain INSERTs (the columns' defaults fill the rest): the ORM's add and flush cost five
        # times as much (750 against 150 µs for a product's five images).
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
        for fields in rows:
            by_columns.setdefault(frozenset(fields), []).append(fields)
        try:
            with self._write() as conn:
                for same_columns in by_columns.values():
                    conn.execute(INSERT_IMAGE, same_columns)
        except IntegrityError:
            for fields in rows:
                self.insert_image(**fields)

    def update_image(self, image_id: int, **fields: Any) -> None:
        """One UPDATE; fsync'd when it records the write-back intent (`write_source`). Not `state`
        (ValueError): that changes only through `transition`."""
        self.update_images({image_id: fields})

    def transition(self, image_ids: int | Sequence[int], name: str, *,
                   expect: ImageState | Iterable[ImageState], **fields: Any) -> list[int]:
        """Move these images by the named transition (storage/lifecycle.py), each only if it is still
        in one of the `expect`ed states: a compare-and-set, in one transaction. Returns the ids that
        moved; a row that has moved on since the caller read it is left as it is (the caller may log
        it). ValueError for a move the table does not allow (a programming error)."""
        ids = [image_ids] if isinstance(image_ids, int) else list(image_ids)
        lifecycle.checked(name, expect, fields)  # also when there is no image to move
        return self.transitions([Move(image_id, name, lifecycle.states_of(expect), fields) for image_id in ids])

    def transitions(self, moves: Sequence[Move]) -> list[int]:
        """Several transitions, each image its own (name, expected states, fields), in one transaction
        (fsync'd when one records an intent, as `update_images`); returns the ids that moved."""
        if not moves:
            return []
        durable = any(not INTENT_COLUMNS.isdisjoint(move.fields) for move in moves)
        with self._write(durable=durable) as conn:
            return apply_moves(conn, moves)

    def update_images(self, changes: Mapping[int, dict[str, Any]]) -> None:
        """`update_image` for several images in one transaction (one fsync when any records an
        intent). Images given the same columns share one statement, executed for each of them."""
        if not changes:
            return
        durable = any(not INTENT_COLUMNS.isdisjoint(fields) for fields in changes.values())
        with self._write(durable=durable) as conn:
            set_fields(conn, changes)

    def count_paid(self, image_ids: Sequence[int]) -> None:
        """One more provider job that may have been charged, for each of these images."""
        if image_ids:
            with self._write() as conn:
                conn.execute(update(Image).where(col(Image.id).in_(list(image_ids)))
                             .values(paid_attempts=Image.paid_attempts + 1, updated_at=utcnow()))

    def images_in_state(self, *states: ImageState, product_ids: Sequence[str] | None = None,
                        limit: int | None = None, due_by: float | None = None,
                        has_source: bool | None = None) -> list[Image]:
        """Images in any of `states`, oldest first; `due_by` drops those waiting for a retry time,
        `has_source` keeps only those whose source URL is known (True) or not yet (False)."""
        query = select(Image).where(col(Image.state).in_([str(s) for s in states]))
        if has_source is not None:
            query = query.where(col(Image.source_url).is_not(None) if has_source else col(Image.source_url).is_(None))
        if product_ids is not None:
            query = query.where(col(Image.product_id).in_(list(product_ids)))
        if due_by is not None:
            query = query.where((col(Image.next_attempt_at).is_(None)) | (col(Image.next_attempt_at) <= due_by))
        query = query.order_by(col(Image.id))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as s:
            return list(s.exec(query))

    def next_attempt_due(self, *states: ImageState) -> float | None:
        """The earliest time an image in `states` is due (0.0: one is due now), None if there is none."""
        query = select(func.min(func.coalesce(col(Image.next_attempt_at), 0.0))).where(
            col(Image.state).in_([str(s) for s in states]))
        with self._read() as s:
            return s.exec(query).one()

    def counts_by_state(self) -> dict[str, int]:
        with self._read() as s:
            rows = s.exec(select(Image.state, func.count()).group_by(Image.state))
            return {state: count for state, count in rows}

    def recent_failures(self, limit: int = 10) -> list[Image]:
        with self._read() as s:
            query = (select(Image).where(Image.state == ImageState.FAILED)
                     .order_by(col(Image.updated_at).desc()).limit(limit))
            return list(s.exec(query))

    def recent_in_states(self, states: Sequence[str], limit: int) -> list[Image]:
        """The images in `states` whose row changed last, newest first (the review page's recent results)."""
        query = (select(Image).where(col(Image.state).in_([str(s) for s in states]))
                 .order_by(col(Image.updated_at).desc()).limit(limit))
        with self._read() as s:
            return list(s.exec(query))

    def changed_into_since(self, state: ImageState, after: datetime, limit: int) -> list[Image]:
        """Images in `state` whose row changed after `after`, oldest change first ([notify]'s failures)."""
        query = (select(Image).where(Image.state == state, col(Image.updated_at) > after)
                 .order_by(col(Image.updated_at)).limit(limit))
        with self._read() as s:
            return list(s.exec(query))

    def count_changed_into_since(self, state: ImageState, after: datetime) -> int:
        query = select(func.count()).select_from(Image).where(Image.state == state, col(Image.updated_at) > after)
        with self._read() as s:
            return s.exec(query).one()

    def pending_by_rule(self, states: Sequence[ImageState]) -> dict[str | None, int]:
        """How many images in `states` each recorded [[rules]] decision holds (None: no rule)."""
        query = (select(Image.rule, func.count()).where(col(Image.state).in_([str(s) for s in states]))
                 .group_by(Image.rule))
        with self._read() as s:
            return {rule: count for rule, count in s.exec(query)}

    # ----- backed-up originals ([backup] keep, storage/backups.py) ------------------------------

    def backup_holders(self, before: float) -> list[Holder]:
        """Every image row that refers to an original still on disk (not yet pruned)."""
        cutoff = datetime.fromtimestamp(before, timezone.utc)
        query = (select(Image.backup_sha256, Image.state, col(Image.updated_at) <= cutoff, Image.reverted_at,
                        Image.product_id, Image.media_id)
                 .where(col(Image.backup_sha256).is_not(None), col(Image.backup_pruned_at).is_(None)))
        with self._read() as s:
            return [Holder(sha, state, bool(done_before), reverted is not None, product_id, media_id)
                    for sha, state, done_before, reverted, product_id, media_id in s.exec(query)]

    def mark_backup_pruned(self, sha256: str, before: float, at: float) -> bool:
        """Mark the rows of one original pruned, in one statement that re-checks the policy: no row
        with it may be anything but done before `before` and never reverted. False: one must keep it."""
        cutoff = datetime.fromtimestamp(before, timezone.utc)
        keeper = aliased(Image)
        blocking = select(keeper.id).where(
            keeper.backup_sha256 == sha256,
            (keeper.state != str(ImageState.DONE)) | (keeper.updated_at > cutoff) | keeper.reverted_at.is_not(None))
        statement = (update(Image).where(col(Image.backup_sha256) == sha256, col(Image.backup_pruned_at).is_(None),
                                         ~blocking.exists()).values(backup_pruned_at=at))
        with self._write() as conn:
            return conn.execute(statement).rowcount > 0

    def result_holders(self, before: float) -> list[Holder]:
        """Every image row that refers to a result kept for review ([review], storage/kept_results.py)."""
        cutoff = datetime.fromtimestamp(before, timezone.utc)
        query = (select(Image.result_sha256, Image.state, col(Image.updated_at) <= cutoff, Image.reverted_at,
                        Image.product_id, Image.media_id)
                 .where(col(Image.result_sha256).is_not(None)))
        with self._read() as s:
            return [Holder(sha, state, bool(done_before), reverted is not None, product_id, media_id)
                    for sha, state, done_before, reverted, product_id, media_id in s.exec(query)]

    def copy_to(self, path: str) -> None:
        """A consistent copy of the whole database (SQLite's online backup), for dry runs."""
        import sqlite3

        source = sqlite3.connect(str(self.path))
        target = sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()

    def wait_writable(self, timeout: float) -> bool:
        """Block until no other process holds the write lock (True), or `timeout` s pass (False).
        Takes the lock and gives it back at once, on a connection of its own (kept: the daemon asks
        before every step): meant to run in a thread when it may wait, so the daemon waits for a
        busy database without blocking its event loop. One caller at a time."""
        import sqlite3

        if self._probe is None:
            self._probe = sqlite3.connect(str(self.path), isolation_level=None,
                                          check_same_thread=False)
        try:
            self._probe.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._probe.execute("BEGIN IMMEDIATE")
            self._probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise

    def integrity_ok(self) -> bool:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"

