"""The image's life: the transition table (storage/lifecycle.py) and Store.transition's compare-and-set."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from retouch.storage import lifecycle
from retouch.storage.lifecycle import TRANSITIONS, Move
from retouch.storage.models import FINAL_STATES, PENDING_STATES, WORK_STATES, ImageState
from retouch.storage.store import Store

S = ImageState

# The moves the image's life allows, written out by hand (the table must say exactly these).
EXPECTED_MOVES = {
    "submit": ({S.DISCOVERED}, S.SUBMITTED),
    "enhance": ({S.SUBMITTED}, S.ENHANCED),
    "back_up": ({S.ENHANCED}, S.BACKED_UP),
    "await_review": ({S.BACKED_UP}, S.AWAITING_REVIEW),
    "approve": ({S.AWAITING_REVIEW}, S.BACKED_UP),
    "reject": ({S.AWAITING_REVIEW}, S.REJECTED),
    "redo": ({S.AWAITING_REVIEW, S.REJECTED}, S.DISCOVERED),
    "write": ({S.BACKED_UP}, S.WRITTEN),
    "finish": ({S.WRITTEN}, S.DONE),
    "fail": ({S.DISCOVERED, S.SUBMITTED, S.ENHANCED, S.BACKED_UP, S.WRITTEN}, S.FAILED),
    "skip": ({S.DISCOVERED, S.SUBMITTED, S.ENHANCED, S.BACKED_UP, S.WRITTEN, S.FAILED, S.SKIPPED, S.BASELINE,
              S.REVERTED}, S.SKIPPED),
    "requeue": ({S.SUBMITTED, S.BACKED_UP, S.FAILED, S.SKIPPED, S.BASELINE, S.REVERTED}, S.DISCOVERED),
    "retry_backup": ({S.FAILED}, S.ENHANCED),
    "retry_write": ({S.FAILED}, S.BACKED_UP),
    "revert": ({S.WRITTEN, S.DONE, S.FAILED}, S.REVERTED),
}
LEGAL = {(source, target) for sources, target in EXPECTED_MOVES.values() for source in sources}
ILLEGAL = sorted({(a, b) for a in ImageState for b in ImageState} - LEGAL)


def new_image(store: Store, n: int, state: ImageState = S.DISCOVERED) -> int:
    image = store.insert_image(media_id=f"gid://shopify/MediaImage/{n}", product_id="gid://shopify/Product/1",
                               product_legacy_id="1", state=S.DISCOVERED, source_url=f"http://x/{n}.jpg")
    if state is not S.DISCOVERED:  # put it there as the test needs it (what a step before would have done)
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE image SET state = ? WHERE id = ?", (str(state), image.id))
    return image.id


@pytest.fixture
def store(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    yield store
    store.close()


def test_the_table_allows_exactly_the_moves_of_an_images_life() -> None:
    assert {name: (set(t.sources), t.target) for name, t in TRANSITIONS.items()} == EXPECTED_MOVES
    assert lifecycle.allowed_moves() == LEGAL
    # One name per (from, to): a move between two states means one thing.
    for source, target in LEGAL:
        assert source in TRANSITIONS[lifecycle.named(source, target)].sources


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_other_move_is_refused(source: ImageState, target: ImageState) -> None:
    with pytest.raises(ValueError):
        lifecycle.named(source, target)
    for name, transition in TRANSITIONS.items():
        if transition.target is target:
            with pytest.raises(ValueError, match="cannot start from"):
                lifecycle.checked(name, source, {})


def test_the_states_split_into_the_queue_and_the_end() -> None:
    assert set(PENDING_STATES) | set(FINAL_STATES) == set(ImageState)
    assert not set(PENDING_STATES) & set(FINAL_STATES)
    assert S.AWAITING_REVIEW in PENDING_STATES and S.AWAITING_REVIEW not in WORK_STATES  # the owner's, not work
    assert S.REJECTED in FINAL_STATES
    assert set(WORK_STATES) == set(PENDING_STATES) - {S.AWAITING_REVIEW}


def test_the_one_requeue_clears_the_union_of_the_three_old_resets() -> None:
    """discovery's resync, `retouch retry` and write-back's new picture once reset different fields."""
    discovery = {"job_id", "item_index", "result_url", "attempts", "next_attempt_at", "error_code", "error_message",
                 "write_source", "write_mode"}
    retry = {"attempts", "next_attempt_at", "error_code", "error_message", "write_source", "written_at",
             "output_media_id", "write_mode", "job_id", "item_index", "result_url"}
    new_picture = {"job_id", "item_index", "result_url", "write_source", "write_mode", "attempts", "next_attempt_at"}
    clears = set(TRANSITIONS["requeue"].clears)
    assert discovery | retry | new_picture <= clears
    assert {"result_sha256", "approved_at"} <= clears  # schema 6: a result waiting for review goes too
    assert "paid_attempts" not in clears and "backup_sha256" not in clears and "retries" not in clears


def test_a_move_the_table_does_not_allow_is_a_programming_error(store: Store) -> None:
    image = new_image(store, 1)
    with pytest.raises(ValueError, match="no transition named"):
        store.transition(image, "teleport", expect=S.DISCOVERED)
    with pytest.raises(ValueError, match="cannot start from"):
        store.transition(image, "finish", expect=S.DISCOVERED)
    with pytest.raises(ValueError, match="does not set result_url"):
        store.transition(image, "fail", expect=S.DISCOVERED, result_url="x")
    with pytest.raises(ValueError, match="does not set state"):
        store.transition(image, "fail", expect=S.DISCOVERED, state=S.DONE)
    with pytest.raises(ValueError):
        store.transitions([Move(image, "fail", (S.DISCOVERED,)), Move(image, "enhance", (S.DISCOVERED,))])
    assert store.image(image).state == S.DISCOVERED  # nothing written, not even the legal first move


def test_transition_moves_only_rows_still_in_the_expected_state(store: Store) -> None:
    """Compare-and-set on a real SQLite file: a stale `expect` changes nothing and is reported."""
    first, second = new_image(store, 1, S.SUBMITTED), new_image(store, 2, S.SUBMITTED)
    assert store.transition([first, second], "enhance", expect=S.SUBMITTED, result_url="https://r/1") == [first, second]
    assert store.image(first).result_url == "https://r/1"
    # A second poll saw them submitted too: its answer comes too late and changes nothing.
    stamp = store.image(first).updated_at
    assert store.transition([first, second], "fail", expect=S.SUBMITTED, error_code="late") == []
    assert (store.image(first).state, store.image(first).error_code) == (S.ENHANCED, None)
    assert store.image(first).updated_at == stamp
    # Partly stale: only the one still expected moves.
    third = new_image(store, 3, S.SUBMITTED)
    assert store.transition([first, third], "fail", expect=S.SUBMITTED, error_code="x") == [third]
    assert store.image(first).state == S.ENHANCED and store.image(third).state == S.FAILED
    assert store.transition(999, "fail", expect=S.SUBMITTED) == []  # no such row: nothing moved


def test_a_batch_of_moves_reports_each_stale_row_even_one_already_in_the_target(store: Store) -> None:
    """Each image its own fields in one statement per transition; an image that already reached the
    target (a replayed answer) is not reported as moved."""
    a, b, c = (new_image(store, n, S.SUBMITTED) for n in range(3))
    store.transition(b, "enhance", expect=S.SUBMITTED, result_url="https://r/first")
    moves = [Move(a, "enhance", (S.SUBMITTED,), {"result_url": "https://r/a"}),
             Move(b, "enhance", (S.SUBMITTED,), {"result_url": "https://r/b"}),
             Move(c, "fail", (S.SUBMITTED,), {"error_code": "x"})]
    assert store.transitions(moves) == [a, c]
    assert [store.image(i).result_url for i in (a, b)] == ["https://r/a", "https://r/first"]
    assert store.image(c).state == S.FAILED


def test_clears_apply_unless_the_caller_keeps_a_field(store: Store) -> None:
    image = new_image(store, 1, S.SUBMITTED)
    store.update_image(image, job_id=None, item_index=4, result_url="https://r", write_source="s", attempts=3,
                       error_code="e", backup_sha256="b" * 64, paid_attempts=2)
    assert store.transition(image, "requeue", expect=S.SUBMITTED, item_index=4, error_code="item_failed") == [image]
    row = store.image(image)
    assert (row.state, row.item_index, row.error_code) == (S.DISCOVERED, 4, "item_failed")  # kept: given
    assert (row.result_url, row.write_source, row.attempts, row.error_message) == (None, None, 0, None)  # cleared
    assert (row.backup_sha256, row.paid_attempts) == ("b" * 64, 2)  # not the requeue's to clear


def test_a_schema_5_database_file_is_migrated_to_6_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(f"sqlite:///{db}")
    kept = new_image(store, 1, S.DONE)
    store.close()
    with sqlite3.connect(db) as conn:  # what schema 5 wrote: none of the review columns
        for column in ("product_title", "result_sha256", "approved_at", "review_note"):
            conn.execute(f"ALTER TABLE image DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    store = Store(f"sqlite:///{db}")
    try:
        assert store.get_meta("schema_version") == "6"
        row = store.image(kept)
        assert (row.state, row.product_title, row.result_sha256, row.approved_at, row.review_note) == (
            S.DONE, None, None, None, None)
        store.update_image(kept, product_title="Blue mug", review_note="too dark")
        assert (store.image(kept).product_title, store.image(kept).review_note) == ("Blue mug", "too dark")
    finally:
        store.close()


def test_the_free_form_updates_refuse_a_state(store: Store) -> None:
    image = new_image(store, 1)
    job = store.create_job("aigenstudio", "retouch-key-1", [image])
    with pytest.raises(ValueError, match="only through Store.transition"):
        store.update_image(image, state=S.DONE)
    with pytest.raises(ValueError, match="only through Store.transition"):
        store.update_images({image: {"state": S.DONE}})
    with pytest.raises(ValueError, match="only through Store.transition"):
        store.update_job_and_images(job.id, {"polls": 1}, {image: {"state": S.ENHANCED}})
    assert (store.image(image).state, store.job(job.id).polls) == (S.SUBMITTED, 0)


PRODUCT = Path(__file__).resolve().parent.parent
UPDATES = {"update_image", "update_images", "update_job_and_images"}


def _state_writes(tree) -> list[int]:
    """Lines of calls to the store's free-form updates that pass a state: `state=`, or a dict
    (literal or comprehension, at any depth of the arguments) with a "state" key."""
    import ast

    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in UPDATES):
            continue
        if any(keyword.arg == "state" for keyword in node.keywords):
            found.append(node.lineno)
        arguments = [*node.args, *(keyword.value for keyword in node.keywords if keyword.arg != "job_fields")]
        if node.func.attr == "update_job_and_images":
            del arguments[:min(2, len(node.args))]  # the job's id and its own fields (a job has a state too)
        for argument in arguments:
            for inner in ast.walk(argument):
                keys = inner.keys if isinstance(inner, ast.Dict) else []
                if any(isinstance(key, ast.Constant) and key.value == "state" for key in keys):
                    found.append(node.lineno)
    return found


def test_no_code_outside_storage_writes_a_state_but_through_a_transition() -> None:
    """Walks the product's code: no call of update_image/update_images/update_job_and_images passes
    a state (the store refuses one at run time too), and no SQL outside storage/ writes the column."""
    import ast

    offenders = []
    for path in sorted([*PRODUCT.glob("sync/**/*.py"), *PRODUCT.glob("plugin/**/*.py")]):
        if "sandbox" in path.parts:
            continue  # the sandboxes' own stores are not ours
        text = path.read_text()
        offenders += [f"{path.relative_to(PRODUCT)}:{line}" for line in _state_writes(ast.parse(text))]
        if "SET state" in text or "update(Image)" in text:
            offenders.append(f"{path.relative_to(PRODUCT)}: writes the image table itself")
    assert offenders == []


def test_the_walk_finds_a_state_passed_to_an_update() -> None:
    """The walk above can fail: each way of passing a state is found."""
    import ast

    code = '''
store.update_image(1, state="done")
ctx.store.update_images({1: {"state": "done"}})
ctx.store.update_job_and_images(1, {}, {i.id: {"state": "failed"} for i in images})
ctx.store.update_job_and_images(1, {"state": "failed"}, {})
store.update_image(1, attempts=2)
store.transition(1, "fail", expect="discovered")
'''
    assert _state_writes(ast.parse(code)) == [2, 3, 4]  # not the job's state (5), not the others


def test_the_documentation_shows_the_table_as_it_is() -> None:
    assert lifecycle.markdown_table() in (PRODUCT / "docs" / "how-it-works.md").read_text()


def test_a_failed_item_of_a_job_still_polled_keeps_its_place_in_the_job(store: Store) -> None:
    """The one requeue clears the job link, but the job's next poll lists every item it sent: the
    item the provider failed (with paid attempts left) keeps its job_id and item_index until another
    job takes it."""
    from retouch.plugin.providers.base import ItemResult, JobStatus
    from retouch.sync.pipeline.track import record_items

    first, second = new_image(store, 1), new_image(store, 2)
    job = store.create_job("aigenstudio", "retouch-key-1", [first, second])
    images = store.job_images(job.id)
    status = JobStatus(terminal=False, items={1: ItemResult(status="failed", error_code="blurry")})
    changes = record_items(status, images, requeue={second})
    moves = [lifecycle.move_from(image_id, S.SUBMITTED, fields) for image_id, fields in changes.items()]
    assert [move.name for move in moves] == ["requeue"]
    assert store.update_job_and_images(job.id, {"polls": 1}, {}, moves) == [second]
    row = store.image(second)
    assert (row.state, row.job_id, row.item_index, row.error_code) == (S.DISCOVERED, job.id, 1, "blurry")
    assert [image.id for image in store.job_images(job.id)] == [first, second]


def test_an_image_waiting_for_review_is_not_work_a_run_waits_for(store: Store) -> None:
    from types import SimpleNamespace

    from retouch.sync.runtime import pending_among

    waiting, queued = new_image(store, 1, S.AWAITING_REVIEW), new_image(store, 2)
    ctx = SimpleNamespace(store=store)
    assert pending_among(ctx, None) == 1
    assert pending_among(ctx, [waiting]) == 0 and pending_among(ctx, [queued]) == 1
    assert store.counts_by_state() == {"awaiting_review": 1, "discovered": 1}
