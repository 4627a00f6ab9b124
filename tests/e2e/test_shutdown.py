"""SIGTERM (systemctl stop) lets the step in progress finish within `shutdown_grace` instead of
cancelling it at once: a submit whose request is on the wire gets its answer recorded, so the
next start polls that job instead of reconciling an unanswered send. The stop is quiet: steps
waiting for their turn end without a traceback in the journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import db_rows, wait_for


def jobs_recorded(db: Path) -> int:
    try:
        return db_rows(db, "select count(*) from job")[0][0]
    except sqlite3.OperationalError:  # the daemon has not created its tables yet
        return 0


def test_sigterm_lets_the_running_step_finish_and_logs_no_traceback(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    shop.seed(products=2, images_per_product=1, seed=3)
    config = write_config(new_only=False)
    # A client timeout of 8 s, not 5: the 4 s answer must not be given up on even if a stalled CI
    # machine delays it by 3 s.
    config.write_text(config.read_text().replace('timeout = "5s"', 'timeout = "8s"'))
    # The provider takes 4 s to accept the job (the grace is 8 s): the SIGTERM arrives while submit
    # waits for it.
    provider.add_fault("create", mode="hang", seconds=4.0)
    process = daemon(config)
    db = tmp_path / "retouch.db"
    wait_for(lambda: db.exists() and jobs_recorded(db) == 1, timeout=60, what="the submit's intent to be recorded")
    assert process.terminate(timeout=30) == 0
    ((state, provider_job_id),) = db_rows(db, "select state, provider_job_id from job")
    assert (state, provider_job_id is not None) == ("submitted", True), "the running submit was cancelled"
    output = process.output()
    assert "Traceback" not in output and "abandoned" not in output
    # The answer came during the grace, not before the stop began (else this tested nothing).
    assert (
        output.index('"event": "stopping"') < output.index('"event": "submitted"') < output.index('"event": "stopped"')
    )


def test_a_step_past_its_grace_is_abandoned_quietly_and_resumed_on_the_next_start(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    shop.seed(products=1, images_per_product=1, seed=4)
    config = write_config(new_only=False)
    config.write_text(config.read_text().replace('tick = "0.2s"', 'tick = "0.2s"\nshutdown_grace = "0.5s"'))
    provider.add_fault("create", mode="hang", seconds=4.0)
    process = daemon(config)
    db = tmp_path / "retouch.db"
    wait_for(lambda: db.exists() and jobs_recorded(db) == 1, timeout=60, what="the submit's intent to be recorded")
    assert process.terminate(timeout=30) == 0
    output = process.output()
    assert '"event": "abandoned"' in output and "Traceback" not in output
    assert db_rows(db, "select state from job") == [("pending",)]  # the intent, kept for the next start

    restarted = daemon(config)
    wait_for(lambda: db_rows(db, "select state from image") == [("done",)], timeout=60, what="the image to be done")
    restarted.terminate(timeout=30)
    assert len(db_rows(db, "select id from job")) == 1  # the same job, not a second send
