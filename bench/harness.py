"""The one table every benchmark reports into.

A benchmark script measures, then calls `emit(rows)`: each row goes to stdout as one line
`BENCH-ROW {json}`, beside the script's own human-readable output. `bench/run.py` runs the scripts
as subprocesses, collects those lines with `rows_from(output)` and prints one table.

A row is one figure of one scenario, with its bound (the physical limit: the provider's quota, the
cost bucket's restore rate) or target (a ceiling we set ourselves: ms per image, MB), the ratio to
it taken within the same run, and the same figure for the naive peer where there is one.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MARK = "BENCH-ROW "


@dataclass
class Row:
    scenario: str
    figure: str
    value: float
    unit: str
    # The limit the figure is compared with, and which way is good: "bound" (the figure should
    # reach it: images per window against the quota) or "ceiling" (it should stay under it).
    limit: float | None = None
    limit_kind: str = "bound"
    target: str = ""  # in words, e.g. ">= 95% of the bound", "< 5 ms"
    met: bool | None = None  # whether the target was met in this run
    naive: str = ""  # the naive peer's figure for the same thing, if there is one
    command: str = ""  # reproduces this figure

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit else None


def command_line(script: str, *args: object) -> str:
    return shlex.join([".venv/bin/python", script, *map(str, args)])


def emit(rows: list[Row]) -> None:
    for row in rows:
        print(MARK + json.dumps(asdict(row), sort_keys=True), flush=True)


def rows_from(output: str) -> list[Row]:
    return [Row(**json.loads(line[len(MARK) :])) for line in output.splitlines() if line.startswith(MARK)]


def number(value: float, unit: str) -> str:
    if float(value).is_integer() or abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def cells(row: Row) -> list[str]:
    ratio = row.ratio
    limit = "" if row.limit is None else number(row.limit, row.unit) + (" max" if row.limit_kind == "ceiling" else "")
    verdict = {True: "met", False: "NOT met", None: ""}[row.met]
    return [
        row.scenario,
        row.figure,
        number(row.value, row.unit),
        limit,
        "" if ratio is None else f"{ratio:.0%}",
        row.naive,
        f"{row.target} {verdict}".strip(),
        row.command,
    ]


HEADER = ["scenario", "figure", "value", "bound", "ratio", "naive peer", "target", "command"]


def text_table(rows: list[Row], *, with_commands: bool = False) -> str:
    columns = HEADER if with_commands else HEADER[:-1]
    body = [cells(r)[: len(columns)] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: list[Row]) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for row in rows:
        values = cells(row)
        values[-1] = f"`{values[-1]}`" if values[-1] else ""
        lines.append("| " + " | ".join(escape(v) for v in values) + " |")
    return "\n".join(lines)


def run_script(script: Path, args: list[str], *, cwd: Path, log: Path) -> tuple[int, str, float]:
    """Run one scenario or suite script as a subprocess: its exit status, its stdout (also kept in
    `log`, after its stderr) and how long it took."""
    started = time.monotonic()
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        sink.write(done.stdout)
    return done.returncode, done.stdout, time.monotonic() - started


def machine() -> str:
    cpu = "unknown CPU"
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def replace_between_markers(path: Path, start: str, end: str, body: str) -> None:
    """Rewrite what lies between the two markers in `path` (the markers stay)."""
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path}: the markers {start} / {end} are missing")
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":  # `python bench/harness.py < output`: the table of a script's rows
    print(text_table(rows_from(sys.stdin.read()), with_commands=True))
