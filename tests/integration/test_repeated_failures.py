"""A failure that repeats every tick (the disk under the database is full) is one line per
occurrence with its reason, and its traceback once — not a chained traceback per failed step."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sqlalchemy import text

from conftest import pipeline_settings, run_async
from retouch.sync.failures import TracebackOnce, failure_reason
from retouch.sync.logs import configure
from retouch.sync.runtime import open_context
from retouch.sync.scheduler import Daemon

FULL = "database or disk is full"


async def fill_the_database(ctx) -> None:
    """A step that meets SQLite's own "database or disk is full": the database may not grow."""
    with ctx.store.engine.begin() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar()
        conn.execute(text(f"PRAGMA max_page_count={pages}"))
        try:
            conn.execute(text("CREATE TABLE IF NOT EXISTS ballast (data BLOB)"))
            conn.execute(text("INSERT INTO ballast VALUES (zeroblob(1000000))"))
        finally:
            conn.execute(text("PRAGMA max_page_count=1073741823"))


def test_a_full_database_is_one_line_per_step_and_one_traceback(shop, provider, tmp_path: Path) -> None:
    settings = pipeline_settings(shop, provider, tmp_path)
    out = io.StringIO()
    configure("info", "json", settings.secrets(), stream=out)

    async def scenario() -> None:
        async with open_context(settings) as ctx:
            daemon = Daemon(ctx)
            for _ in range(6):
                await daemon._guarded("write_back", fill_the_database)
            await daemon._heartbeat()  # the database still answers: no complaint here

    run_async(scenario())
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    crashed = [e for e in events if e["event"] == "step_crashed"]
    assert len(crashed) == 6
    assert all(FULL in e["reason"] and e["step"] == "write_back" for e in crashed)
    assert sum("exception" in e for e in crashed) == 1
    assert sum("Traceback" in line for line in out.getvalue().splitlines()) == 1  # one event holds the chain


def test_a_kind_of_failure_is_its_class_and_message_without_numbers() -> None:
    once = TracebackOnce()
    assert once.first(OSError(28, "No space left on device"))
    assert not once.first(OSError(28, "No space left on device"))
    assert once.first(ValueError("row 12 is odd"))
    assert not once.first(ValueError("row 13 is odd"))
    assert once.first(ValueError("something else"))
    assert failure_reason(OSError(28, "No space left on device")) == "OSError: [Errno 28] No space left on device"
