"""`make reliability`: every reliability suite against the real daemon and the sandboxes, one table.

    .venv/bin/python bench/reliability.py [--small] [--only NAME ...] [--report RELIABILITY.md] [--out DIR]

Each suite is its own script in bench/ (runnable alone; each prints the command that reproduces its
row) and runs here as a subprocess, one after another. Their rows (see proof.py) make one table:
suite, runs, faults injected, images, kills, duplicates, double charges, originals lost, crashes.

--small runs each suite at a size that fits CI (the test suite runs it, so every command in the
table is exercised on every change); the full sizes are the default. --report rewrites the table
between `<!-- proof:start -->` and `<!-- proof:end -->` with the date and the machine. A suite
that breaks a promise or crashes makes the exit status 1; a crash also gets a row saying so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from harness import machine, replace_between_markers, run_script
from proof import ProofRow, markdown_table, rows_from, text_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Suite:
    name: str
    script: str
    full: list[str]
    small: list[str]


SUITES = [
    Suite(
        "crash",
        "crash_anywhere.py",
        ["--images", "200", "--kills", "25", "--seed", "1"],
        ["--images", "8", "--kills", "4", "--seed", "1"],
    ),
    Suite(
        "faults",
        "fault_matrix.py",
        ["--images", "100", "--rate", "0.03", "--seed", "1"],
        ["--images", "6", "--rate", "0.05", "--seed", "1"],
    ),
    Suite(
        "convergence",
        "convergence.py",
        ["--examples", "60", "--steps", "40", "--seed", "1"],
        ["--examples", "6", "--steps", "20", "--seed", "1"],
    ),
    Suite(
        "convergence_reloads",
        "convergence.py",
        ["--examples", "40", "--steps", "40", "--seed", "1", "--mode", "append", "--reloads"],
        ["--examples", "4", "--steps", "15", "--seed", "1", "--mode", "append", "--reloads"],
    ),
    Suite("bad_input", "bad_input.py", [], ["--small"]),
    # Issue 19: a second installation on the same store, and the first one dying.
    Suite(
        "one_per_store",
        "one_per_store.py",
        ["--images", "60", "--rival-starts", "20", "--kills", "10", "--seed", "1"],
        ["--images", "6", "--rival-starts", "3", "--kills", "2", "--seed", "1"],
    ),
    # Disk full and a database locked for 30 s (5 s at CI size: the test suite holds it 30 s once).
    Suite(
        "resources",
        "resources.py",
        ["--images", "60", "--lock-for", "30", "--seed", "5"],
        ["--images", "8", "--lock-for", "5", "--seed", "5"],
    ),
    Suite(
        "soak",
        "soak.py",
        ["--minutes", "10"],
        [
            "--seconds",
            "20",
            "--batch",
            "8",
            "--arrive-every",
            "2.5",
            "--window",
            "5",
            "--fault-rate",
            "0.2",
            "--sample-every",
            "2",
        ],
    ),
]


def run_suite(suite: Suite, *, small: bool, out: Path) -> tuple[list[ProofRow], int, float]:
    args = suite.small if small else suite.full
    log = out / f"{suite.name}.log"
    status, stdout, took = run_script(HERE / suite.script, args, cwd=ROOT, log=log)
    rows = rows_from(stdout)
    if not rows:
        rows.append(
            ProofRow(
                suite.name,
                runs=0,
                faults=0,
                images=0,
                crashes=1,
                problems=[f"the suite itself failed (exit {status}); output in {log}"],
                command=f".venv/bin/python bench/{suite.script} {' '.join(args)}",
            )
        )
    return rows, status, took


def write_report(report: Path, rows: list[ProofRow], *, small: bool) -> None:
    body = (
        f"`make reliability` on {date.today().isoformat()}, {machine()}"
        f"{' (--small: the sizes CI runs)' if small else ''}:\n\n{markdown_table(rows)}"
    )
    replace_between_markers(report, "<!-- proof:start -->", "<!-- proof:end -->", body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the sizes CI runs")
    parser.add_argument("--only", action="append", choices=[s.name for s in SUITES])
    parser.add_argument("--report", type=Path, help="rewrite the table in this file (RELIABILITY.md)")
    parser.add_argument("--out", type=Path, help="where each suite's full output goes (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="retouch-reliability-"))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[ProofRow] = []
    failed = False
    for suite in SUITES:
        if args.only and suite.name not in args.only:
            continue
        print(f"... {suite.name} ({suite.script})", file=sys.stderr, flush=True)
        found, status, took = run_suite(suite, small=args.small, out=out)
        print(
            f"... {suite.name}: exit {status} in {took:.0f} s; output in {out / suite.name}.log",
            file=sys.stderr,
            flush=True,
        )
        failed |= status != 0 or not all(r.held for r in found)
        rows += found
    print(f"\n{machine()}, {date.today().isoformat()}\n")
    print(text_table(rows))
    print("\ncommands:")
    for command in dict.fromkeys(r.command for r in rows if r.command):
        print(f"  {command}")
    if args.report:
        write_report(args.report, rows, small=args.small)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
