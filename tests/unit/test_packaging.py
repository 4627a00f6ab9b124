"""What `pip install .` ships: every package of the three rooms, so an owner's non-editable install
imports what the editable install of the tests does (sync/notify/ was once left out)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {"plugin": "retouch.plugin", "sync": "retouch.sync", "storage": "retouch.storage"}


def test_every_package_of_the_rooms_is_listed_for_setuptools() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = set()
    for folder, name in ROOMS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *parts)))
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "these listed packages have no __init__.py"
