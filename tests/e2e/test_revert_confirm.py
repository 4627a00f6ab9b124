"""`revert --all` counts, asks (or takes --yes), and has a dry run (issue 23)."""

from __future__ import annotations

import json

from conftest import cli


def test_revert_all_counts_asks_and_dry_runs(shop, provider, write_config) -> None:
    shop.seed(products=2, images_per_product=1, seed=26)
    config = write_config(new_only=False)
    assert cli("resync", "--all", "--yes", config=config).returncode == 0
    asked = cli("revert", "--all", config=config)  # no terminal to ask on: refused, nothing reverted
    assert asked.returncode == 2
    assert "revert --all would put back the originals of 2 image(s) of 2 product(s); confirm with --yes" in asked.stderr
    dry = cli("revert", "--all", "--dry-run", config=config)
    assert dry.returncode == 0
    assert "dry run: revert would put back the originals of 2 image(s) of 2 product(s)" in dry.stdout
    assert json.loads(cli("status", "--json", config=config).stdout)["counts"]["done"] == 2
    done = cli("revert", "--all", "--yes", config=config)
    assert done.returncode == 0 and "reverted 2 image(s)" in done.stdout, done.stderr
    assert json.loads(cli("status", "--json", config=config).stdout)["counts"]["reverted"] == 2
