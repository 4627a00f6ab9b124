"""`make bench`: every benchmark scenario against the real daemon and the built-in sandboxes, one table.

    .venv/bin/python bench/run.py [--small] [--only NAME ...] [--doc docs/performance.md] [--out DIR]

Each scenario is its own script in bench/ (runnable alone; each prints the command that reproduces
its figures) and runs here as a subprocess, one after another so they never share the CPU. Their
rows (see harness.py) make one table: scenario, figure, value, bound, ratio to the bound (taken
within the same run), the naive peer's figure, the target and whether this run met it.

--small runs each scenario at a size that takes seconds: the test suite uses it to prove the
harness works (its figures mean little). --doc (also spelt --readme) rewrites the table between the
markers `<!-- bench:start -->` and `<!-- bench:end -->` in docs/performance.md (`make bench`), with the
date and the machine; with --only, just the rows of the scenarios run are replaced. A scenario
that crashes gets a row saying so, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from harness import Row, machine, markdown_table, replace_between_markers, rows_from, run_script, text_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SDK_PYTHON = ".venv-sdk/bin/python"  # `make bench` installs imagen-ai-sdk there (scenarios run in ROOT)


@dataclass
class Scenario:
    name: str
    script: str
    full: list[str]
    small: list[str]


SCENARIOS = [
    Scenario(
        "aigen",
        "aigen_quota.py",
        ["--images", "500", "--windows", "10", "--window", "30"],
        ["--images", "40", "--windows", "2", "--window", "6"],
    ),
    Scenario(
        "live",
        "time_to_live.py",
        ["--samples", "5", "--discover-every", "10"],
        ["--samples", "1", "--discover-every", "2"],
    ),
    Scenario("overhead", "overhead.py", ["--sizes", "500", "5000"], ["--sizes", "20", "100", "--floor-samples", "20"]),
    Scenario("database", "db_hot_paths.py", ["--rows", "1000000"], ["--rows", "5000"]),
    # Past the 25,000-object pagination cap, at Shopify Plus's rate (1000 points/s, bucket 20,000):
    # paging 30,000 products at Standard's 100 points/s would take most of an hour.
    Scenario(
        "shopify",
        "shopify_pacer.py",
        ["--products", "30000", "--restore-rate", "1000", "--bucket", "20000"],
        ["--products", "100"],
    ),
    # --small stays above [shop] bulk_threshold (2000), so the bulk path is what the tests run.
    Scenario(
        "catalog",
        "shopify_catalog.py",
        ["--products", "100000", "--images", "3"],
        ["--products", "2100", "--images", "1"],
    ),
    Scenario(
        "productai",
        "productai_throughput.py",
        ["--images", "60", "--window", "6", "--seed", "1"],
        ["--images", "6", "--window", "3", "--seed", "1"],
    ),
    Scenario(
        "imagen",
        "imagen_vs_sdk.py",
        ["--images", "40", "--seed", "1", "--first-poll", "10", "--sdk-python", SDK_PYTHON],
        ["--images", "3", "--seed", "1", "--first-poll", "1", "--tick", "0.2", "--sdk-python", SDK_PYTHON],
    ),
]


def run_scenario(scenario: Scenario, *, small: bool, out: Path) -> tuple[list[Row], float]:
    args = scenario.small if small else scenario.full
    log = out / f"{scenario.name}.log"
    status, stdout, took = run_script(HERE / scenario.script, args, cwd=ROOT, log=log)
    rows = rows_from(stdout)
    if status != 0 or not rows:
        rows.append(
            Row(
                scenario.name,
                f"FAILED (exit {status}); output in {log}",
                0,
                "",
                met=False,
                command=f".venv/bin/python bench/{scenario.script} {' '.join(args)}",
            )
        )
    return rows, took


START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def write_readme(readme: Path, rows: list[Row], *, small: bool, only: list[str] | None = None) -> None:
    """The whole table; with `only`, just those scenarios' rows are replaced (the others, from an
    earlier run, stay where they are), and the heading says which rows came when."""
    if not only:
        body = (
            f"`make bench` on {date.today().isoformat()}, {machine()}"
            f"{' (--small: sizes for the tests, not figures)' if small else ''}:\n\n{markdown_table(rows)}"
        )
        replace_between_markers(readme, START, END, body)
        return
    old = readme.read_text().split(START, 1)[1].split(END, 1)[0].strip("\n")
    heading, _, table = old.partition("\n\n")
    kept = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    by_script = {s.script: [line for line in kept if f"bench/{s.script} " in line] for s in SCENARIOS}
    fresh = markdown_table(rows).splitlines()
    lines = fresh[:2]
    for scenario in SCENARIOS:
        if scenario.name in only:
            lines += [line for line in fresh[2:] if f"bench/{scenario.script} " in line]
        else:
            lines += by_script[scenario.script]
    names = ", ".join(s.name for s in SCENARIOS if s.name in only)
    # The clause an earlier `--only` run of the same scenarios left goes: it no longer dates any row.
    earlier = re.compile(
        rf"\. The {re.escape(names)} rows: `bench/run\.py --only` on .*?(?=\. The [\w, -]+ rows: "
        r"`bench/run\.py --only`|$)"
    )
    heading = (
        earlier.sub("", heading.rstrip(":")) + f". The {names} rows: `bench/run.py --only` on "
        f"{date.today().isoformat()}, {machine()}{' (--small)' if small else ''}:"
    )
    replace_between_markers(readme, START, END, heading + "\n\n" + "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="sizes that take seconds (the tests use this)")
    parser.add_argument("--only", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument(
        "--doc",
        "--readme",
        dest="readme",
        type=Path,
        metavar="FILE",
        help="rewrite the table between the bench markers in this file (docs/performance.md)",
    )
    parser.add_argument("--out", type=Path, help="where each scenario's full output goes (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="retouch-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for scenario in SCENARIOS:
        if args.only and scenario.name not in args.only:
            continue
        print(f"... {scenario.name} ({scenario.script})", file=sys.stderr, flush=True)
        found, took = run_scenario(scenario, small=args.small, out=out)
        print(
            f"... {scenario.name}: {len(found)} figures in {took:.0f} s; output in {out / scenario.name}.log",
            file=sys.stderr,
            flush=True,
        )
        rows += found
    print(f"\n{machine()}, {date.today().isoformat()}\n")
    print(text_table(rows))
    print("\ncommands:")
    for command in dict.fromkeys(r.command for r in rows if r.command):
        print(f"  {command}")
    if args.readme:
        write_readme(args.readme, rows, small=args.small, only=args.only)
    return 1 if any(r.figure.startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
