"""Bad input, config: every file of the broken-config corpus (tests/bad_configs/) makes the CLI exit 2
with one line naming the key, never a traceback, never a secret.

The whole corpus goes through the CLI's own entry point in one subprocess (a process per file would
cost a second each); a sample goes through real `retouch check` and `retouch run` processes.
test_config.py covers the messages of load_settings one by one; this is the owner's view of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from config_corpus import CORPUS, Case, cases, environment, materialise, problems, scratch

CASES = cases()
BY_NAME = {case.name: case for case in CASES}
RUNNER = Path(__file__).resolve().parents[1] / "config_corpus.py"

# A handful through real `retouch` processes: one per kind of mistake.
THROUGH_CHECK = [
    "toml_unclosed_table",
    "not_utf8",
    "shop_key_typo",
    "shop_token_env_unset",
    "provider_key_and_env",
    "aigen_limits_negative",
    "imagen_profile_key_typo",
    "productai_model_name",
    "server_public_url_plain_http",
    "writeback_backup_dir_under_a_file",
    "schedule_discover_negative",
    "number_tick_inf",
    "number_imagen_profile_key_huge",
]
# `run` refuses what `check` refuses, with the same line: one validation, in load_settings.
THROUGH_RUN = [
    "shop_url_plain_http",
    "provider_key_missing",
    "storage_directory_missing",
    "number_tick_nan",
    "number_discover_every_400_digits",
    "number_aigen_window_inf",
    "number_budget_credits_huge",
]


def retouch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retouch.sync", *args], capture_output=True, text=True, timeout=60, env=environment()
    )


def test_the_corpus_covers_every_section_and_kind_of_mistake() -> None:
    assert len(CASES) >= 40
    sections = {case.expect.split("]")[0] + "]" for case in CASES if case.expect.startswith("[")}
    assert {
        "[shop]",
        "[provider]",
        "[aigenstudio]",
        "[imagen]",
        "[productai]",
        "[selection]",
        "[writeback]",
        "[schedule]",
        "[budget]",
        "[storage]",
        "[server]",
        "[log]",
    } <= sections
    expectations = " ".join(case.expect for case in CASES)
    for kind in (
        "not valid TOML",
        "did you mean",
        "is not a duration",
        "must use https",
        "missing",
        "is not set",
        "is set too",
        "does not exist",
        "greater than or equal",
        "Input should be '",
        "valid boolean",
        "cannot read",
    ):
        assert kind in expectations, kind


@pytest.fixture(scope="module")
def corpus_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every corpus file answered by the CLI's entry point, in one subprocess."""
    directory = tmp_path_factory.mktemp("corpus")
    files = [str(materialise(case, directory)) for case in CASES]
    done = subprocess.run(
        [sys.executable, str(RUNNER), *files],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
        cwd=directory,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    return {Path(answer["file"]).stem: answer for answer in answers}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_broken_file_is_one_line_naming_the_key(corpus_answers: dict[str, dict], name: str) -> None:
    answer = corpus_answers[name]
    assert problems(BY_NAME[name], answer["code"], answer["stdout"], answer["stderr"]) == []


@pytest.mark.parametrize("name", THROUGH_CHECK)
def test_retouch_check_as_a_process(tmp_path: Path, name: str) -> None:
    done = retouch("check", "-c", str(materialise(BY_NAME[name], tmp_path)))
    assert problems(BY_NAME[name], done.returncode, done.stdout, done.stderr) == []


@pytest.mark.parametrize("name", THROUGH_RUN)
def test_retouch_run_as_a_process(tmp_path: Path, name: str) -> None:
    done = retouch("run", "-c", str(materialise(BY_NAME[name], tmp_path)))
    assert problems(BY_NAME[name], done.returncode, done.stdout, done.stderr) == []


def test_a_config_path_that_is_a_directory(tmp_path: Path) -> None:
    directory = scratch(tmp_path) / "config.toml"
    directory.mkdir()
    done = retouch("check", "-c", str(directory))
    case = Case("not_utf8_directory", CORPUS, f"{directory}: is a directory, not a regular file")
    assert problems(case, done.returncode, done.stdout, done.stderr) == []
