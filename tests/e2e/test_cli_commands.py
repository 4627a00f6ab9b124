"""The other commands as a store owner runs them: check, sandbox, demo, resync --all and --force."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROVIDER_KEY, SHOP_TOKEN, cli, image_states, wait_for

# Every test here runs the real CLI with distinctive fake secrets; none may leak anywhere.
pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def test_check_reports_each_side(shop, provider, write_config, tmp_path: Path) -> None:
    good = cli("check", config=write_config())
    assert good.returncode == 0, good.stdout + good.stderr
    assert "shopify: ok" in good.stdout and "provider: ok" in good.stdout and "sandbox" in good.stdout

    bad = write_config("bad.toml")
    bad.write_text(bad.read_text().replace(SHOP_TOKEN, "shpat_wrong_token_000"))
    result = cli("check", config=bad)
    assert result.returncode == 1
    assert "shopify: the access token was rejected" in result.stdout
    assert "provider: ok" in result.stdout
    assert "shpat_wrong_token_000" not in result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["default", "production"])  # production: the real service's answer shapes
def test_sandbox_command_serves_a_working_config(tmp_path: Path, profile: str) -> None:
    config = tmp_path / "sandbox.toml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retouch.sync",
            "sandbox",
            "--products",
            "3",
            "--write-config",
            str(config),
            "--profile",
            profile,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,
    )
    try:
        wait_for(config.exists, 30, what="the sandbox config")
        text = config.read_text()
        text += f'\n[storage]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
        config.write_text(text)
        check = cli("check", config=config)
        assert check.returncode == 0, check.stdout + check.stderr
        resync = cli("resync", "--all", "--yes", config=config)
        assert resync.returncode == 0, resync.stdout + resync.stderr
        assert "3 image(s): 3 done" in resync.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    assert f"(profile: {profile})" in (proc.stdout.read() if proc.stdout else "")


def test_sandbox_command_takes_a_shopify_profile(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retouch.sync",
            "sandbox",
            "--products",
            "1",
            "--shopify-profile",
            "production",
            "--write-config",
            str(tmp_path / "s.toml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,
    )
    try:
        line = ""
        while not line.startswith("Shopify sandbox:"):
            line = proc.stdout.readline()
            assert line, "the sandbox ended before it named the Shopify sandbox"
        assert "production profile" in line
        wait_for((tmp_path / "s.toml").exists, 30, what="the sandbox config")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    wrong = cli("sandbox", "--shopify-profile", "kind")
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "error: --shopify-profile: unknown profile 'kind' (available: default, production)"
    ]


@pytest.mark.parametrize("provider,mode", [("aigenstudio", "replace"), ("imagen", "replace"), ("productai", "append")])
def test_demo_runs_end_to_end(tmp_path: Path, provider: str, mode: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retouch.sync",
            "demo",
            "--products",
            "3",
            "--provider",
            provider,
            "--mode",
            mode,
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 new photo(s) enhanced" in result.stdout
    assert "(production profile)" in result.stdout  # the Shopify sandbox as unkind as the real one
    assert f"{mode} mode" in result.stdout and "the provider charged 3 image(s)" in result.stdout
    page = (tmp_path / "demo" / "index.html").read_text()
    assert page.count('<tr class="row"') == 3  # one row a product
    befores = sorted((tmp_path / "demo" / "images").glob("*-before.*"))
    assert len(befores) == 3
    for before in befores:
        after = before.with_name(before.name.replace("-before", "-after"))
        assert after.read_bytes() != before.read_bytes()


def test_resync_all_asks_before_spending(shop, provider, write_config, tmp_path: Path) -> None:
    shop.seed(products=2, images_per_product=1, seed=20)
    config = write_config()
    assert cli("resync", config=config).returncode == 0  # records the baseline
    refused = cli("resync", "--all", config=config)
    assert refused.returncode == 2
    assert "would send 2 image(s)" in refused.stderr and "--yes" in refused.stderr
    assert provider.stats()["keys"].get(PROVIDER_KEY, {}).get("creations", 0) == 0
    done = cli("resync", "--all", "--yes", config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(image_states(tmp_path / "retouch.db").values()) == {"done"}


def test_resync_force_re_enhances_from_the_original(shop, provider, write_config, tmp_path: Path) -> None:
    (product,) = shop.seed(products=1, images_per_product=1, seed=21)
    original = product["media"][0]
    config = write_config(new_only=False)
    first = cli("resync", config=config)
    assert first.returncode == 0, first.stdout + first.stderr
    enhanced_once = shop.product(product["legacy_id"])["media"][0]
    assert enhanced_once["sha256"] != original["sha256"]
    again = cli("resync", "--product", product["legacy_id"], config=config)
    assert "0 image(s)" in again.stdout  # done images are not sent again without --force
    forced = cli("resync", "--product", product["legacy_id"], "--force", config=config)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "restored 1 original(s)" in forced.stdout and "1 done" in forced.stdout
    stats = provider.stats()["keys"][PROVIDER_KEY]
    assert stats["images_charged"] == 2
    now = shop.product(product["legacy_id"])["media"]
    assert len(now) == 1 and now[0]["id"] == original["id"]
    # Enhanced from the restored original, not from our own output: the (deterministic) sandbox
    # enhancement of the same original gives the same bytes again.
    assert now[0]["sha256"] == enhanced_once["sha256"]
    assert image_states(tmp_path / "retouch.db")[original["id"]] == "done"
    status = json.loads(cli("status", "--json", config=config).stdout)
    assert status["counts"]["done"] == 1


@pytest.mark.parametrize("threshold, path", [(3, "bulk operation"), (4, "paged query")])
def test_resync_all_reads_a_catalog_at_the_threshold_in_bulk(
    shop, provider, write_config, tmp_path: Path, threshold: int, path: str
) -> None:
    shop.seed(products=3, images_per_product=2, seed=40)
    config = write_config()
    config.write_text(config.read_text().replace("[shop]\n", f"[shop]\nbulk_threshold = {threshold}\n", 1))
    done = cli("resync", "--all", "--yes", config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"discovery: 3 product(s) read by {path}, 6 image(s) queued" in done.stdout
    assert set(image_states(tmp_path / "retouch.db").values()) == {"done"}
    operations = shop.stats()["operations"]
    assert bool(operations.get("BulkProductsRun")) == (path == "bulk operation")
