"""Bad input at size: the four parts of tests/*/test_bad_input_*.py, bigger, one ProofRow each.

    config corpus   every file of tests/bad_configs/ through a real `retouch check` process
                    (and `retouch run` for every --run-every'th): exit 2, one line naming the key
    responses       hypothesis answers to every client operation (providers and Shopify)
    webhooks        the token-path and signed webhook suites (pytest, real HTTP)
    hostile network connection swarms, bind failures, secrets quoted back, hostile webhooks (pytest)
    image bytes     every kind of original through imaging, and the pipeline test with the sandboxes
    hostile state   every case of tests/state_corpus.py (FIFOs, credentials, databases, locks) through
                    real `retouch` processes, two at a time (--small: in one process)

runs = cases or examples; crashes = tracebacks or exceptions outside a client's error tree.

    .venv/bin/python bench/bad_input.py --small   # seconds
    .venv/bin/python bench/bad_input.py           # a few minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from proof import ProofRow, command_line, emit  # noqa: E402

from config_corpus import cases, environment, materialise, problems  # noqa: E402

PYTHON = sys.executable


def config_corpus(sample_every: int, run_every: int, command: str) -> ProofRow:
    found, crashes, runs = [], 0, 0
    chosen = cases()[::sample_every]
    with tempfile.TemporaryDirectory() as tmp:
        for n, case in enumerate(chosen):
            path = materialise(case, Path(tmp) / case.name)
            commands = [["check"]] + ([["run"]] if run_every and n % run_every == 0 else [])
            for args in commands:
                done = subprocess.run(
                    [PYTHON, "-m", "retouch.sync", *args, "-c", str(path)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env=environment(),
                )
                runs += 1
                crashes += "Traceback" in done.stdout + done.stderr
                found += [
                    f"{case.name} ({args[0]}): {p}" for p in problems(case, done.returncode, done.stdout, done.stderr)
                ]
    return ProofRow(
        "bad input: config corpus",
        runs=runs,
        faults=runs,
        images=0,
        crashes=crashes,
        problems=found[:10],
        detail=f"{len(chosen)} of {len(cases())} files, real retouch processes",
        command=command,
    )


def state_corpus(processes: bool, command: str) -> ProofRow:
    """Every command of tests/state_corpus.py (what the config points at is hostile: FIFOs, broken
    credentials, databases and locks): through real `retouch` processes two at a time, or (--small)
    through the CLI's entry point in one process."""
    from concurrent.futures import ThreadPoolExecutor

    import state_corpus

    found, crashes, runs = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        plan = state_corpus.build_all(Path(tmp))
        by_name = {case.name: case for case in state_corpus.CASES}

        def answer(run: dict) -> tuple[dict, int, str, str]:
            try:
                done = subprocess.run(
                    [PYTHON, "-m", "retouch.sync", *run["argv"]],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env={**environment(), **run["env"]},
                    cwd=run["dir"],
                )
            except subprocess.TimeoutExpired:
                return run, -1, "", "(hung: no answer in 60 s)\n"
            return run, done.returncode, done.stdout, done.stderr

        if processes:
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(answer, plan))
        else:
            done = subprocess.run(
                [PYTHON, str(ROOT / "tests" / "state_corpus.py"), str(Path(tmp) / "again")],
                capture_output=True,
                text=True,
                timeout=300,
                env=environment(),
                cwd=tmp,
            )
            answers = []
            for line in done.stdout.splitlines():
                answered = json.loads(line)
                answers.append((answered, answered["code"], answered["stdout"], answered["stderr"]))
        for run, code, stdout, stderr in answers:
            runs += 1
            crashes += "Traceback" in stdout + stderr
            found += [
                f"{run['case']} ({run['command']}): {p}"
                for p in state_corpus.problems(by_name[run["case"]], Path(run["dir"]), code, stdout, stderr)
            ]
    how = "real retouch processes, 2 at a time" if processes else "the CLI's entry point, one process"
    return ProofRow(
        "bad input: hostile state (FIFOs, credentials, databases, locks)",
        runs=runs,
        faults=runs,
        images=0,
        crashes=crashes,
        problems=found[:10],
        detail=f"{len(state_corpus.CASES)} cases, {runs} commands, {how}",
        command=command,
    )


def responses(examples: int, command: str) -> ProofRow:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fuzz_clients import TARGETS, run_operation
    from fuzz_http import AnsweringServer, answers

    server = AnsweringServer()
    runs, crashes, found = 0, 0, []
    try:
        for target in TARGETS:

            @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(operation=st.sampled_from(sorted(target.operations)), data=st.data())
            def one(operation: str, data: st.DataObject) -> None:
                nonlocal runs, crashes
                server.answer = data.draw(answers(target.templates_for(operation), server.url))
                runs += 1
                unexpected = run_operation(target, operation, server.url)
                if unexpected is not None:
                    crashes += 1
                    where = traceback.extract_tb(unexpected.__traceback__)[-1:]
                    found.append(
                        f"{target.name}.{operation}: {type(unexpected).__name__} "
                        f"at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}"
                        if where
                        else ""
                    )

            one()
    finally:
        server.stop()
    return ProofRow(
        "bad input: provider and Shopify answers",
        runs=runs,
        faults=runs,
        images=0,
        crashes=crashes,
        problems=sorted(set(found))[:10],
        detail=f"{examples} examples x {len(TARGETS)} clients, {server.requests} HTTP answers",
        command=command,
    )


# Issue 20's network half: connection swarms, bind failures, secrets quoted back, hostile webhooks,
# repeated failures, the unit's exposure (RELIABILITY.md, "Hostile network and leaked secrets").
HOSTILE_NETWORK_FILES = [
    "tests/e2e/test_server_hostile.py",
    "tests/e2e/test_server_bind.py",
    "tests/e2e/test_redaction_boundaries.py",
    "tests/integration/test_clients_quote_back.py",
    "tests/integration/test_webhooks_hostile.py",
    "tests/integration/test_repeated_failures.py",
    "tests/e2e/test_unit_security.py",
]


def pytest_row(
    suite: str, files: list[str], env: dict[str, str], command: str, examples: int | None = None
) -> ProofRow:
    """A pytest run as a row: runs = tests passed + failed; a failure is a problem, an error a crash."""
    done = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=1800,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    counts = {
        word: int(n)
        for n, word in (part.split()[:2] for part in summary.split(" in ")[0].split(", ") if part.split()[0].isdigit())
    }
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    tests = counts.get("passed", 0) + counts.get("failed", 0)
    return ProofRow(
        suite,
        runs=examples if examples and tests else tests,
        faults=0,
        images=0,
        crashes=counts.get("error", counts.get("errors", 0)),
        problems=failed[:10],
        detail=summary[:120],
        command=command,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="seconds: few examples, a sample of the corpus")
    parser.add_argument("--examples", type=int, help="hypothesis examples per client (default 40 small, 1500)")
    parser.add_argument("--pipeline-examples", type=int, help="fuzzed pipeline scripts (default 4 small, 40)")
    parser.add_argument("--corpus-every", type=int, help="every Nth corpus file as a process (default 6 small, 1)")
    parser.add_argument("--run-every", type=int, help="also `retouch run` every Nth corpus file (default 3)")
    parser.add_argument("--only", help="comma-separated parts: config, state, responses, pipeline, webhooks, images")
    args = parser.parse_args()
    examples = args.examples or (40 if args.small else 1500)
    pipeline_examples = args.pipeline_examples or (4 if args.small else 40)
    run_every = args.run_every or (3 if args.small else 3)
    corpus_every = args.corpus_every or (6 if args.small else 1)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    command = command_line(
        "bench/bad_input.py",
        *(["--small"] if args.small else []),
        *(["--examples", examples] if args.examples else []),
        *(["--pipeline-examples", pipeline_examples] if args.pipeline_examples else []),
        *(["--corpus-every", corpus_every] if args.corpus_every else []),
        *(["--run-every", run_every] if args.run_every else []),
        *(["--only", args.only] if args.only else []),
    )
    started = time.monotonic()
    parts = {
        "config": lambda: config_corpus(corpus_every, run_every, command),
        "state": lambda: state_corpus(not args.small, command),
        "responses": lambda: responses(examples, command),
        "pipeline": lambda: pytest_row(
            "bad input: pipeline under fuzzed answers",
            ["tests/integration/test_bad_input_pipeline_answers.py"],
            {"RETOUCH_FUZZ_PIPELINE_EXAMPLES": str(pipeline_examples)},
            command,
            examples=pipeline_examples,
        ),
        "webhooks": lambda: pytest_row(
            "bad input: webhooks",
            [
                "tests/integration/test_bad_input_webhooks.py",
                "tests/integration/test_server.py",
                "-k",
                "webhook or signature or skew or replayed or oversized or malformed",
            ],
            {},
            command,
        ),
        "images": lambda: pytest_row(
            "bad input: image bytes", ["tests/integration/test_bad_input_images.py"], {}, command
        ),
        "network": lambda: pytest_row("bad input: hostile network and secrets", HOSTILE_NETWORK_FILES, {}, command),
    }
    chosen = args.only.split(",") if args.only else list(parts)
    rows = [parts[name]() for name in chosen]
    emit(rows)
    from proof import text_table

    print(text_table(rows))
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(0 if all(row.held for row in rows) else 1)


if __name__ == "__main__":
    main()
