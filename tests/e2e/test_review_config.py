"""[review]: off by default; a wrong mode or duration is one line naming the key (exit 2 from the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retouch.sync.config import ConfigError, load_settings

VALID = """
[shop]
url = "https://my-store.myshopify.com"
access_token = "shpat_valid_token_123"
[provider]
api_key = "aigen_test_abcdefgh1234"
[storage]
url = "sqlite:///{db}"
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(VALID.replace("{db}", str(tmp_path / "r.db")) + extra)
    return path


def test_review_is_off_by_default_and_reads_its_keys(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), environ={})
    assert settings.review.mode == "off" and not settings.review.on
    assert settings.review.auto_approve_after is None
    settings = load_settings(write(tmp_path, '[review]\nmode = "all"\nauto_approve_after = "2d"\n'), environ={})
    assert settings.review.on and settings.review.auto_approve_after == 2 * 86400


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('mode = "some"', "[review] mode: Input should be 'off' or 'all'"),
        ('auto_approve_after = "soon"', "[review] auto_approve_after"),
        ('auto_approve_after = "1s"', "[review] auto_approve_after: must be between 1m and 365d"),
        ('auto_aprove_after = "1d"', "[review] auto_aprove_after: unknown key; did you mean 'auto_approve_after'?"),
    ],
)
def test_a_wrong_review_key_is_one_line_naming_it(tmp_path: Path, table: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f"[review]\n{table}\n"), environ={})
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, '[review]\nmode = "everything"\n')
    result = subprocess.run(
        [sys.executable, "-m", "retouch.sync", "review", "list", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config error: [review] mode:") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_the_example_documents_review_with_its_defaults(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    assert '[review]\n' in example and 'mode = "off"' in example and "# auto_approve_after =" in example
