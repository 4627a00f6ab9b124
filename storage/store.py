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
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, event, func, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, create_engine, delete, select

from .database_file import database_problem, sqlite_file
from .backups import Holder
from .models import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Image,
    ImageState,
    Job,
    JobState,
    Meta,
    OutputMedia,
    QuotaEvent,
    SeenEvent,
    utcnow,
)


# Image columns that record an intent before an outside call (models.py): their commit is fsync'd.
INTENT_COLUMNS = frozenset({"write_source"})

META_VALUE = select(Meta.value).where(col(Meta.key) == bindparam("key"))
INSERT_IMAGE = sqlite_insert(Image)
_insert_output = sqlite_insert(OutputMedia)
RECORD_OUTPUT = _insert_output.on_conflict_do_update(
    index_elements=["media_id"],
    set_={"product_id": _insert_output.excluded.product_id, "image_id": _insert_output.excluded.image_id})


def _update_images(conn: Connection, changes: Mapping[int, dict[str, Any]]) -> None:
    """Apply each image's changes; images given the same columns share one statement, executed for
    each of them (a job's 20 items: one statement, not 20). KeyError if an image is missing."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for image_id, fields in changes.items():
        by_columns.setdefault(tuple(sorted(fields)), []).append(
            {"image_id": image_id, **{f"new_{name}": value for name, value in fields.items()}})
    now = utcnow()
    for columns, rows in by_columns.items():
        statement = (update(Image).where(col(Image.id) == bindparam("image_id"))
                     .values(**{name: bindparam(f"new_{name}") for name in columns}, updated_at=now))
        if conn.execute(statement, rows).rowcount != len(rows):
            raise KeyError(sorted(row["image_id"] for row in rows))


class StorageError(Exception):
    """The database cannot be used (wrong schema version, unreadable file)."""


def open_failure(exc: DatabaseError, path: Path) -> str:
    """SQLite's reason for refusing a database file, said so the owner knows what to do."""
    reason = str(getattr(exc, "orig", exc)).strip() or type(exc).__name__
    lowered = reason.lower()
    if _read_only_mount(path):
        return ("is on a read-only mount: retouch writes its state there; point [storage] url at a writable "
                "place (the unit's StateDirectory=)")
    if "readonly" in lowered or "read-only" in lowered:
        return ("is read-only (the file, its folder or the mount): retouch writes its state there; "
                "make it writable for the service's user")
    if "not a database" in lowered:
        return "is not an SQLite database (or is encrypted): point [storage] url at another file"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"is damaged ({reason}): restore it from a backup, or move it away to start afresh"
    if "unable to open" in lowered:
        return f"cannot be opened ({reason}): check that its folder exists and is writable"
    return f"cannot be used ({reason})"


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# How long a statement waits for another process's write lock before "database is locked".
# The CLI commands can wait long; the daemon passes a short one (see sync/scheduler.py): its
# statements run in the event loop, and a long wait there would freeze it (and systemd's watchdog).
BUSY_TIMEOUT = 60.0


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's answer when another process held the write lock past our busy timeout."""
    return isinstance(exc, OperationalError) and ("database is locked" in str(exc) or "database is busy" in str(exc))


# Free text written to the database may quote what a service answered, and a service may quote our
# credentials back. Every INSERT and UPDATE through any engine made here passes each of its text
# parameters through this function first (sync installs its one redactor at import: storage may not
# import sync). A hook on the engine, not on each Store method, so that no write can forget it.
_scrub_text: Callable[[str], str] | None = None
_WRITES = ("INSERT", "UPDATE", "REPLACE")


def install_text_scrubber(scrub: Callable[[str], str] | None) -> None:
    """The function every text written to the database passes through (None: none)."""
    global _scrub_text
    _scrub_text = scrub


def _scrubbed(parameters: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(parameters, str):
        return scrub(parameters)
    if isinstance(parameters, tuple):
        return tuple(_scrubbed(value, scrub) for value in parameters)
    if isinstance(parameters, list):
        return [_scrubbed(value, scrub) for value in parameters]
    if isinstance(parameters, dict):
        return {key: _scrubbed(value, scrub) for key, value in parameters.items()}
    return parameters


def _scrub_writes(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                  _executemany: bool) -> tuple[str, Any]:
    scrub = _scrub_text
    if scrub is not None and parameters and statement.lstrip()[:7].upper().startswith(_WRITES):
        parameters = _scrubbed(parameters, scrub)
    return statement, parameters


def make_engine(url: str, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
    event.listen(engine, "before_cursor_execute", _scrub_writes, retval=True)

    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")   # fsync only the commits that need it: see `Store._write`
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")  # another process may hold the write lock
        cursor.close()

    event.listen(engine, "connect", configure)
    return engine


class Store:
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
        """One UPDATE; fsync'd when it records the write-back intent (`write_source`)."""
        self.update_images({image_id: fields})

    def update_images(self, changes: Mapping[int, dict[str, Any]]) -> None:
        """`update_image` for several images in one transaction (one fsync when any records an
        intent). Images given the same columns share one statement, executed for each of them."""
        if not changes:
            return
        durable = any(not INTENT_COLUMNS.isdisjoint(fields) for fields in changes.values())
        with self._write(durable=durable) as conn:
            _update_images(conn, changes)

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
        query = (select(Image.backup_sha256, Image.state, col(Image.updated_at) <= cutoff, Image.reverted_at,  # type: ignore[call-overload]  # sqlmodel types select() for up to four columns
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
            (keeper.state != str(ImageState.DONE)) | (keeper.updated_at > cutoff) | keeper.reverted_at.is_not(None),  # type: ignore[union-attr]  # an aliased column
        )
        statement = (update(Image).where(col(Image.backup_sha256) == sha256, col(Image.backup_pruned_at).is_(None),
                                         ~blocking.exists()).values(backup_pruned_at=at))
        with self._write() as conn:
            return conn.execute(statement).rowcount > 0

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
            job.id = conn.execute(sqlite_insert(Job).values(**values)).inserted_primary_key[0]  # type: ignore[index]  # an INSERT has one
            now = utcnow()
            for index, image_id in enumerate(image_ids):
                # A new backup of the original: a prune date of an earlier one no longer applies.
                fields = ({"backup_sha256": backups[image_id], "backup_pruned_at": None}
                          if backups and image_id in backups else {})
                moved = conn.execute(update(Image).where(col(Image.id) == image_id,
                                                         col(Image.state) == ImageState.DISCOVERED)
                                     .values(state=ImageState.SUBMITTED, job_id=job.id, item_index=index,
                                             updated_at=now, **fields)).rowcount
                assert moved == 1, image_id  # (a failed assertion rolls the whole job back)
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
                              image_fields: dict[int, dict[str, Any]]) -> None:
        """Record a provider answer for a job and its items atomically (fsync'd, like every job write)."""
        with self._write(durable=True) as conn:
            if job_fields and conn.execute(update(Job).where(col(Job.id) == job_id).values(**job_fields)).rowcount == 0:
                raise KeyError(job_id)  # as for a missing item, and as update_job says it
            _update_images(conn, image_fields)

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
            return [tuple(row) for row in rows]

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

