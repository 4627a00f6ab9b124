"""The one table every reliability suite reports into (RELIABILITY.md).

A suite script (crash anywhere, convergence under faults, bad input, resources, soak) runs, checks
every promise, and calls `emit(rows)`: each row goes to stdout as one line `PROOF-ROW {json}`,
beside the script's own output. `bench/reliability.py` runs the scripts as subprocesses, collects
those lines with `rows_from(output)` and prints one table.

A row is one suite at one size: how hard it tried (runs, faults injected, images, kills) and what
it found (duplicates, double charges, originals lost, crashes). The promise is that the last four
are zero; `problems` names anything else that broke, so a row is never silently green.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass, field

MARK = "PROOF-ROW "


@dataclass
class ProofRow:
    suite: str
    runs: int  # runs, examples or cases the suite went through
    faults: int  # faults injected (5xx, 429, resets, bad bodies, kills are counted apart)
    images: int  # images that went through the pipeline
    kills: int = 0  # kill -9 of the daemon
    duplicates: int = 0  # media written twice to a product
    double_charges: int = 0  # images the provider charged more than once
    originals_lost: int = 0  # originals not byte-identical in the backup store
    crashes: int = 0  # daemon exits or tracebacks that were not our kill -9
    problems: list[str] = field(default_factory=list)  # any other broken promise, named
    detail: str = ""  # one line of context (e.g. "RSS 90 -> 91 MB")
    command: str = ""  # reproduces this row

    @property
    def held(self) -> bool:
        return not (self.duplicates or self.double_charges or self.originals_lost or self.crashes or self.problems)


# Which ProofRow column a named problem counts in, by the words the promise checks use
# (tests/crash_harness.py's wording); anything else stays a named problem.
PROBLEM_WORDS = {"duplicates": "media", "double_charges": "charged", "originals_lost": "backup"}


def problem_columns(problems: list[str], words: dict[str, str] = PROBLEM_WORDS) -> dict[str, object]:
    """ProofRow keyword arguments (duplicates, double_charges, originals_lost, problems) from named problems."""
    counts: dict[str, object] = {column: sum(word in p for p in problems) for column, word in words.items()}
    counts["problems"] = [p for p in problems if not any(word in p for word in words.values())]
    return counts


def command_line(script: str, *args: object) -> str:
    return shlex.join([".venv/bin/python", script, *map(str, args)])


def emit(rows: list[ProofRow]) -> None:
    for row in rows:
        print(MARK + json.dumps(asdict(row), sort_keys=True), flush=True)


def rows_from(output: str) -> list[ProofRow]:
    return [ProofRow(**json.loads(line[len(MARK) :])) for line in output.splitlines() if line.startswith(MARK)]


HEADER = [
    "suite",
    "runs",
    "faults injected",
    "images",
    "kills",
    "duplicates",
    "double charges",
    "originals lost",
    "crashes",
    "verdict",
    "command",
]


def cells(row: ProofRow) -> list[str]:
    verdict = "held" if row.held else "BROKEN: " + "; ".join(row.problems or ["see counts"])
    if row.detail:
        verdict += f" ({row.detail})"
    numbers = [
        row.runs,
        row.faults,
        row.images,
        row.kills,
        row.duplicates,
        row.double_charges,
        row.originals_lost,
        row.crashes,
    ]
    return [row.suite, *(f"{n:,}" for n in numbers), verdict, row.command]


def text_table(rows: list[ProofRow]) -> str:
    body = [cells(r)[:-1] for r in rows]
    columns = HEADER[:-1]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: list[ProofRow]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for row in rows:
        values = cells(row)
        values[-1] = f"`{values[-1]}`" if values[-1] else ""
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # `python bench/proof.py < output`: the table of a script's rows
    print(text_table(rows_from(sys.stdin.read())))
