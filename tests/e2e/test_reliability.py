"""`make reliability` works: every suite runs at the size CI affords through the same runner as the
full sizes, each against the real daemon or pipeline and the sandboxes, and lands in one table in
RELIABILITY.md. What must hold at any size: every suite reports, and every promise held (no
duplicate, no double charge, no original lost, no crash)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from proof import ProofRow, markdown_table, problem_columns, rows_from, text_table  # noqa: E402
from reliability import SUITES, Suite, run_suite  # noqa: E402

# The module's fixture runs every suite once (1200 s at most, its own subprocess timeout): it is set up
# inside the first test, so that test gets more than the suite-wide 300 s of pytest-timeout. A loaded machine
# took longer than 300 s for the small run.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def small_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess, dict[str, list[ProofRow]]]:
    out = tmp_path_factory.mktemp("reliability")
    report = out / "RELIABILITY.md"
    report.write_text("# Reliability\n\n<!-- proof:start -->\nold\n<!-- proof:end -->\n\n## How\n")
    done = subprocess.run(
        [sys.executable, str(BENCH / "reliability.py"), "--small", "--out", str(out), "--report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    rows = {s.name: rows_from((out / f"{s.name}.log").read_text()) for s in SUITES}
    return done, rows


def test_every_suite_reports_and_every_promise_held(small_run) -> None:
    done, rows = small_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name, found in rows.items():
        assert found, f"{name} printed no rows"
        for row in found:
            assert row.held, f"{name}: {row}"
            assert row.runs > 0 and row.command.startswith(".venv/bin/python bench/")
            assert row.suite in done.stdout


def test_the_report_gets_the_table_with_date_and_machine(small_run) -> None:
    done, rows = small_run
    report = Path(done.args[done.args.index("--report") + 1]).read_text()
    assert "old" not in report and report.endswith("<!-- proof:end -->\n\n## How\n")
    assert "`make reliability` on 20" in report and "cores" in report
    for found in rows.values():
        for row in found:
            assert f"`{row.command}`" in report


def test_a_suite_that_dies_is_a_broken_row(tmp_path: Path) -> None:
    rows, status, _ = run_suite(Suite("gone", "no_such_script.py", [], []), small=True, out=tmp_path)
    assert status == 2 and len(rows) == 1 and not rows[0].held
    assert rows[0].crashes == 1 and "gone.log" in rows[0].problems[0]


def test_a_broken_promise_shows_in_both_tables() -> None:
    rows = [
        ProofRow("crash anywhere", runs=26, faults=0, images=200, kills=25, command=".venv/bin/python bench/x.py"),
        ProofRow("soak", runs=1, faults=900, images=3000, double_charges=1, detail="RSS 90 -> 91 MB"),
    ]
    text = text_table(rows)
    assert "held" in text and "BROKEN: see counts (RSS 90 -> 91 MB)" in text and "3,000" in text
    table = markdown_table(rows)
    assert table.count("\n") == 3 and "`.venv/bin/python bench/x.py`" in table
    assert not rows[1].held and rows[0].held


def test_named_problems_land_in_their_columns() -> None:
    problems = [
        "product 7: media written twice",
        "picture 3 charged 2 times",
        "backup of 9 differs",
        "the daemon never met the lock",
    ]
    assert problem_columns(problems) == {
        "duplicates": 1,
        "double_charges": 1,
        "originals_lost": 1,
        "problems": ["the daemon never met the lock"],
    }
    # A suite with its own wording passes its words.
    assert problem_columns(["a duplicate media"], {"duplicates": "duplicate"}) == {"duplicates": 1, "problems": []}
