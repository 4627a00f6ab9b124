"""Storage: the job and its key are written with its images in one transaction; backups are exact."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from retouch.storage.backups import BackupError, BackupStore
from retouch.storage.lifecycle import Move
from retouch.storage.models import SCHEMA_VERSION, ImageState, JobState
from retouch.storage.store import StorageError, Store


def new_image(store: Store, n: int, state=ImageState.DISCOVERED):
    return store.insert_image(
        media_id=f"gid://shopify/MediaImage/{n}",
        product_id="gid://shopify/Product/1",
        product_legacy_id="1",
        state=state,
        source_url=f"http://x/{n}.jpg",
    )


def test_a_new_backup_of_an_original_clears_the_prune_date_of_the_old_one(tmp_path: Path) -> None:
    """An image whose original was pruned and that is enhanced again has its original backed up
    again: `revert` must use that backup, not say the original was pruned."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    image = new_image(store, 0)
    store.update_image(image.id, backup_sha256="a" * 64, backup_pruned_at=1_700_000_000.0)
    store.create_job("aigenstudio", "retouch-key-1", [image.id], backups={image.id: "b" * 64})
    again = store.image(image.id)
    assert (again.backup_sha256, again.backup_pruned_at) == ("b" * 64, None)


def test_plain_connections_open_the_file_an_escaped_url_names(tmp_path: Path) -> None:
    """The daemon's write-lock probe and the dry run's copy open the database file, not the URL's
    text: a folder named with '+' or a space is %-escaped in the URL (sync/paths.py)."""
    from retouch.sync.paths import database_url

    folder = tmp_path / "shop+1 copy"
    folder.mkdir()
    store = Store(database_url(folder / "r.db"))
    assert store.wait_writable(1.0)
    store.copy_to(str(tmp_path / "copy.db"))
    assert Store(f"sqlite:///{tmp_path / 'copy.db'}").get_meta("schema_version") == str(SCHEMA_VERSION)
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("copy.db")} == {"shop+1 copy"}  # no stray file


def test_create_job_assigns_images_in_order(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    images = [new_image(store, n) for n in range(3)]
    job = store.create_job("aigenstudio", "retouch-key-1", [images[2].id, images[0].id])
    assert job.state == JobState.PENDING
    assigned = store.job_images(job.id)
    assert [i.media_id for i in assigned] == [images[2].media_id, images[0].media_id]
    assert all(i.state == ImageState.SUBMITTED for i in assigned)
    assert store.image(images[1].id).state == ImageState.DISCOVERED
    # The key is unique: a second job can never reuse it.
    with pytest.raises(Exception):
        store.create_job("aigenstudio", "retouch-key-1", [images[1].id])
    assert store.image(images[1].id).state == ImageState.DISCOVERED  # rolled back with the failed job
    assert store.integrity_ok()


def safety_levels_of_commits(store: Store, call) -> list[str]:
    """SQLite's synchronous level in force at each commit `call` makes (the ones that wrote)."""
    from sqlalchemy import event

    levels: list[str] = []
    names = {1: "NORMAL", 2: "FULL", 3: "EXTRA"}

    def on_commit(conn) -> None:
        raw = conn.connection.dbapi_connection
        if raw.in_transaction:  # a transaction that wrote something
            levels.append(names.get(raw.execute("PRAGMA synchronous").fetchone()[0], "OFF"))

    event.listen(store.engine, "commit", on_commit)
    try:
        call()
    finally:
        event.remove(store.engine, "commit", on_commit)
    return levels


def test_only_intents_and_job_rows_are_fsynced(tmp_path: Path) -> None:
    """A step's progress (a state, an attempt) is redone by running the step again: committed without
    an fsync (WAL, synchronous=NORMAL). What a replay could not redo harmlessly is fsync'd: the job row
    (its key before the provider is paid) and the write-back intent before the Shopify mutation."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    first, second = new_image(store, 1), new_image(store, 2)
    assert safety_levels_of_commits(store, lambda: store.update_image(first.id, attempts=1)) == ["NORMAL"]
    assert safety_levels_of_commits(store, lambda: store.add_output("gid://m/9", "gid://p/1", first.id)) == ["NORMAL"]
    job = None

    def create() -> None:
        nonlocal job
        job = store.create_job("aigenstudio", "retouch-key-1", [first.id])

    assert safety_levels_of_commits(store, create) == ["FULL"]
    assert safety_levels_of_commits(store, lambda: store.update_job(job.id, provider_state="{}")) == ["FULL"]
    assert safety_levels_of_commits(
        store,
        lambda: store.update_job_and_images(
            job.id, {"polls": 1}, {}, [Move(first.id, "enhance", (ImageState.SUBMITTED,))]
        ),
    ) == ["FULL"]
    assert safety_levels_of_commits(store, lambda: store.update_image(first.id, write_source="https://up/1")) == [
        "FULL"
    ]
    # ... and the connection is back to NORMAL after each.
    assert safety_levels_of_commits(store, lambda: store.update_image(second.id, attempts=2)) == ["NORMAL"]
    store.count_paid([first.id, second.id])
    store.count_paid([first.id])
    assert (store.image(first.id).paid_attempts, store.image(second.id).paid_attempts) == (2, 1)
    with pytest.raises(KeyError):
        store.update_image(999, attempts=1)
    store.close()


def test_several_images_change_in_one_transaction_fsynced_only_for_intents(tmp_path: Path) -> None:
    """update_images: each image its own values (images given the same columns share a statement),
    one commit for all, fsync'd only when one of them records an intent; a missing image undoes all."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    a, b, c = (new_image(store, n) for n in range(3))
    before = store.image(a.id).updated_at
    changes = {a.id: {"attempts": 0}, b.id: {"attempts": 3}, c.id: {"error_code": "x"}}
    assert safety_levels_of_commits(store, lambda: store.update_images(changes)) == ["NORMAL"]
    assert (store.image(a.id).state, store.image(a.id).attempts) == (ImageState.DISCOVERED, 0)
    assert (store.image(b.id).state, store.image(b.id).attempts) == (ImageState.DISCOVERED, 3)
    assert (store.image(c.id).state, store.image(c.id).error_code) == (ImageState.DISCOVERED, "x")
    assert store.image(a.id).updated_at >= before
    intents = {a.id: {"write_source": "https://up/a"}, b.id: {"write_source": "https://up/b"}}
    assert safety_levels_of_commits(store, lambda: store.update_images(intents)) == ["FULL"]
    assert (store.image(a.id).write_source, store.image(b.id).write_source) == ("https://up/a", "https://up/b")
    with pytest.raises(KeyError):
        store.update_images({a.id: {"attempts": 7}, 999: {"attempts": 7}})
    assert store.image(a.id).attempts == 0  # rolled back with the missing one
    store.close()


def test_a_provider_answer_is_recorded_for_the_job_and_every_item_or_not_at_all(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    a, b, c = (new_image(store, n) for n in range(3))
    job = store.create_job("aigenstudio", "retouch-key-1", [a.id, b.id, c.id])
    submitted = (ImageState.SUBMITTED,)
    moved = store.update_job_and_images(
        job.id,
        {"polls": 1},
        {},
        [
            Move(a.id, "enhance", submitted, {"result_url": "https://r/1"}),
            Move(b.id, "enhance", submitted, {"result_url": "https://r/2"}),
            Move(c.id, "fail", submitted, {"error_code": "x"}),
        ],
    )
    assert moved == [a.id, b.id, c.id]
    assert [(store.image(i).state, store.image(i).result_url) for i in (a.id, b.id)] == [
        (ImageState.ENHANCED, "https://r/1"),
        (ImageState.ENHANCED, "https://r/2"),
    ]
    assert (store.image(c.id).state, store.image(c.id).error_code) == (ImageState.FAILED, "x")
    with pytest.raises(KeyError):  # an item that is not there: nothing of the answer is kept
        store.update_job_and_images(job.id, {"polls": 2}, {a.id: {"attempts": 5}, 999: {"attempts": 5}})
    assert (store.job(job.id).polls, store.image(a.id).attempts) == (1, 0)
    with pytest.raises(KeyError):  # a job that is not there, likewise
        store.update_job_and_images(999, {"polls": 2}, {a.id: {"attempts": 5}})
    assert store.image(a.id).attempts == 0
    store.close()


def test_images_inserted_together_keep_a_row_another_process_inserted_first(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    theirs = new_image(store, 2)  # resync, say, inserted this media a moment ago

    def row(n: int) -> dict:
        return dict(
            media_id=f"gid://shopify/MediaImage/{n}",
            product_id="gid://shopify/Product/1",
            product_legacy_id="1",
            state=ImageState.DISCOVERED,
            source_url=f"http://x/{n}.jpg",
            position=n,
        )

    store.insert_images([row(1), row(2), row(3)])
    rows = store.images_of_product("gid://shopify/Product/1")
    assert sorted(r.media_id for r in rows) == [f"gid://shopify/MediaImage/{n}" for n in (1, 2, 3)]
    assert store.image_by_media("gid://shopify/MediaImage/2").id == theirs.id
    store.close()


def test_images_inserted_together_take_the_columns_defaults_whatever_columns_each_gives(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    base = {"product_id": "gid://shopify/Product/1", "product_legacy_id": "1", "state": ImageState.DISCOVERED}
    store.insert_images(
        [
            {**base, "media_id": "gid://shopify/MediaImage/1", "position": 4},
            {**base, "media_id": "gid://shopify/MediaImage/2"},  # no position: its default
            {**base, "media_id": "gid://shopify/MediaImage/3", "position": 5, "alt": "a mug"},
        ]
    )
    rows = {r.media_id.rsplit("/", 1)[-1]: r for r in store.images_of_product("gid://shopify/Product/1")}
    assert [(rows[n].position, rows[n].alt) for n in "123"] == [(4, None), (0, None), (5, "a mug")]
    assert all(r.attempts == 0 and r.paid_attempts == 0 and r.created_at is not None for r in rows.values())
    store.close()


def test_output_media_are_recorded_together_and_a_known_one_is_updated(tmp_path: Path) -> None:
    """A product's output media go in one statement; a media id already recorded (a media moved to
    another product, or written again for another image) takes the new product and image."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    first, second = new_image(store, 1), new_image(store, 2)
    store.add_outputs("gid://p/1", {"gid://m/1": first.id, "gid://m/2": first.id})
    store.add_outputs("gid://p/2", {"gid://m/1": second.id, "gid://m/3": None})
    store.add_outputs("gid://p/2", {})
    assert store.output_media_of_product("gid://p/1") == {"gid://m/2"}
    assert store.output_media_of_product("gid://p/2") == {"gid://m/1", "gid://m/3"}
    with store.engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT image_id FROM outputmedia WHERE media_id = 'gid://m/1'").scalar() == second.id
        )


def test_wal_and_schema_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.set_meta("schema_version", "999")
    store.close()
    with pytest.raises(StorageError):
        Store(url)


def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(f"sqlite:///{db}")
    kept = new_image(store, 1)
    store.close()
    # What a database written by schema version 1 looked like: no retries, credits_used, options.
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE image DROP COLUMN retries")
        conn.execute("ALTER TABLE job DROP COLUMN credits_used")
        conn.execute("ALTER TABLE job DROP COLUMN options")
        conn.execute("ALTER TABLE job DROP COLUMN provider_state")
        conn.execute("ALTER TABLE image DROP COLUMN paid_attempts")
        conn.execute("ALTER TABLE image DROP COLUMN write_mode")
        conn.execute("ALTER TABLE image DROP COLUMN reverted_at")
        conn.execute("ALTER TABLE image DROP COLUMN backup_pruned_at")
        conn.execute("ALTER TABLE image DROP COLUMN rule")
        for column in ("product_title", "result_sha256", "approved_at", "review_note"):  # schema 6
            conn.execute(f"ALTER TABLE image DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = Store(f"sqlite:///{db}")
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "6"
    assert (store.image(kept.id).reverted_at, store.image(kept.id).backup_pruned_at) == (None, None)
    store.update_image(kept.id, backup_pruned_at=1.5)
    assert store.image(kept.id).backup_pruned_at == 1.5
    assert store.image(kept.id).rule is None
    assert (store.image(kept.id).retries, store.image(kept.id).paid_attempts) == (0, 0)
    assert store.image(kept.id).write_mode is None  # the config's mode until a write records its own
    store.update_image(kept.id, write_mode="append")
    assert store.image(kept.id).write_mode == "append"
    job = store.create_job("aigenstudio", "key-after-migration", [kept.id], options='{"preset": "x"}')
    assert store.job(job.id).options == '{"preset": "x"}'
    store.update_job(job.id, credits_used=5, provider_state='{"project": "p"}')
    assert store.credits_used("aigenstudio") == 5
    assert store.job(job.id).provider_state == '{"project": "p"}'


def test_counts_and_due_filter(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    a, b = new_image(store, 1), new_image(store, 2)
    store.update_image(b.id, next_attempt_at=1000.0)
    assert [i.id for i in store.images_in_state(ImageState.DISCOVERED, due_by=999.0)] == [a.id]
    assert len(store.images_in_state(ImageState.DISCOVERED, due_by=1000.0)) == 2
    assert store.counts_by_state() == {"discovered": 2}


def test_the_queue_is_read_ready_first_and_no_further_than_asked(tmp_path: Path) -> None:
    """submit reads one job's worth of images that have a source URL, refresh the ones that have
    none: with a limit in SQL, not by loading the whole backlog and filtering it."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    images = [new_image(store, n) for n in range(6)]
    for image in images[:3]:
        store.update_image(image.id, source_url=None)  # still processing in Shopify when discovered
    ready = store.images_in_state(ImageState.DISCOVERED, has_source=True, limit=2)
    assert [i.id for i in ready] == [images[3].id, images[4].id]
    unready = store.images_in_state(ImageState.DISCOVERED, has_source=False, limit=5)
    assert [i.id for i in unready] == [i.id for i in images[:3]]
    assert len(store.images_in_state(ImageState.DISCOVERED)) == 6


def test_backups_are_content_addressed_and_verified(tmp_path: Path) -> None:
    backups = BackupStore(tmp_path / "b")
    data = b"\xff\xd8original bytes"
    sha = backups.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert backups.put(data) == sha
    assert backups.get(sha) == data
    backups.path_for(sha).write_bytes(b"tampered")
    assert not backups.has(sha)
    with pytest.raises(BackupError, match="corrupted"):
        backups.get(sha)


def test_backup_into_unwritable_directory_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackupError, match="cannot store original"):
        BackupStore(blocker / "b").put(b"data")


def test_housekeeping_forgets_only_what_can_no_longer_matter(tmp_path: Path) -> None:
    import asyncio
    from types import SimpleNamespace

    from retouch.sync.pipeline import housekeeping

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    now = 1_000_000.0
    window, skew = 3600.0, 300.0
    for at in (now - 2 * window - 1, now - 2 * window + 1, now - 10):
        store.add_quota_event("aigenstudio", "poll", at)
    for name, at in (("old", now - 2 * skew - 1), ("recent", now - 2 * skew + 1)):
        assert store.remember_event("aigenstudio", name, at)
    ctx = SimpleNamespace(
        store=store,
        clock=lambda: now,
        limits=SimpleNamespace(window=window),
        settings=SimpleNamespace(server=SimpleNamespace(webhook_skew=skew)),
    )
    asyncio.run(housekeeping(ctx))
    assert sorted(at for _, at, _ in store.quota_events("aigenstudio", since=0)) == [now - 2 * window + 1, now - 10]
    assert store.remember_event("aigenstudio", "old", now)  # forgotten: accepted again
    assert not store.remember_event("aigenstudio", "recent", now)  # still remembered: a replay
    store.close()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """The daemon and a `retouch status` started at the same moment both create the schema of a
    new database; the one that loses the race must not crash ("table … already exists")."""
    import subprocess
    import sys

    db = tmp_path / "new.db"
    code = (
        "import sys; from retouch.storage.store import Store; "
        f"s = Store('sqlite:///{db}'); print(s.get_meta('schema_version')); s.close()"
    )
    for round_ in range(3):
        db.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        procs = [
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(6)
        ]
        results = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in results if err][:1]
        assert {out.strip() for out, _ in results} == {str(SCHEMA_VERSION)}
