"""A CLI that explains itself (issue 23): switches shown as flags, --provider's choices listed, an
example in each command's help."""

from __future__ import annotations

import re

from conftest import cli
from retouch.plugin.providers import registry
from retouch.sync.cli import PROVIDERS


def _line(text: str, option: str) -> str:
    return next(line for line in text.splitlines() if re.search(rf"\s{re.escape(option)}\s", line))


def test_switches_take_no_value() -> None:
    resync = cli("resync", "--help", env={"COLUMNS": "120"}).stdout
    for switch in ("--all", "--force", "--dry-run", "--yes"):
        assert "<bool>" not in _line(resync, switch), _line(resync, switch)
    retry = cli("retry", "--help", env={"COLUMNS": "120"}).stdout
    assert "<bool>" not in _line(retry, "--failed") and "default: True" not in retry


def test_provider_choices_and_examples() -> None:
    assert set(PROVIDERS.split(", ")) == set(registry.available())
    for command in ("sandbox", "demo", "init"):
        assert PROVIDERS in " ".join(cli(command, "--help", env={"COLUMNS": "200"}).stdout.split())
    for command in ("run", "resync", "status", "revert", "retry", "check"):
        assert f"Example: retouch {command}" in cli(command, "--help", env={"COLUMNS": "200"}).stdout
