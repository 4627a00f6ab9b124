"""The provider plugin boundary: providers are found through entry points, a package outside
retouch can add one, and every built-in provider keeps the protocol."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import cli
from retouch.plugin.providers import registry
from retouch.plugin.providers.base import Provider, ProviderConfig

MIRROR_PACKAGE = Path(__file__).parents[1] / "out_of_tree" / "retouch-provider-mirror"
BUILT_IN = {"aigenstudio": {}, "imagen": {"profile_key": 5700}, "productai": {}}


def test_the_built_in_providers_register_through_the_entry_point_group() -> None:
    # The same door a third-party package uses: no provider is known by name anywhere else.
    names = {entry.name for entry in entry_points(group=registry.GROUP)}
    assert set(BUILT_IN) <= names
    assert set(BUILT_IN) <= set(registry.available())


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_each_built_in_provider_keeps_the_protocol(name: str) -> None:
    plugin = registry.get(name)
    settings = plugin.settings_model.model_validate(BUILT_IN[name])
    provider = plugin.create(
        ProviderConfig(
            api_key="aigen_test_protocol_check_123",
            base_url="http://127.0.0.1:9",
            timeout=1.0,
            settings=settings,
            public_url="https://example.test",
        )
    )
    assert isinstance(provider, Provider)
    assert provider.name == name
    caps = provider.capabilities
    assert caps.max_batch >= 1 and caps.poll_interval >= caps.min_poll_interval >= 0
    assert caps.source in ("url", "upload") and caps.result in ("lasting_url", "temporary_link")
    assert caps.completion <= {"poll", "webhook"} and "poll" in caps.completion
    assert caps.source_formats <= {"image/jpeg", "image/png", "image/webp"} and "image/jpeg" in caps.source_formats
    assert plugin.capabilities(settings) == caps  # pure: status and metrics use it without a client
    assert provider.request_options()  # what a job stores; the webhook URL is only there when not secret
    assert plugin.start_sandbox is not None  # every built-in provider carries its sandbox


@pytest.fixture(scope="module")
def mirror_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The out-of-tree package, installed by pip (offline, without build isolation) into a directory."""
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("build") / MIRROR_PACKAGE.name
    shutil.copytree(MIRROR_PACKAGE, source)  # the build leaves files beside the source: not in the repository
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert list(site.glob("retouch_provider_mirror-*.dist-info/entry_points.txt"))
    return site


def test_an_out_of_tree_provider_runs_end_to_end(mirror_site: Path, tmp_path: Path) -> None:
    done = cli(
        "demo",
        "--provider",
        "mirror",
        "--products",
        "3",
        "--out",
        str(tmp_path / "demo"),
        env={"PYTHONPATH": str(mirror_site)},
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 of 3 new photo(s) enhanced and written back" in done.stdout
    assert "Mirror sandbox" in done.stdout


def test_without_the_package_the_provider_is_unknown(tmp_path: Path) -> None:
    done = cli("demo", "--provider", "mirror", "--out", str(tmp_path / "demo"))
    assert done.returncode == 2
    assert "--provider: unknown provider 'mirror'" in done.stderr and "Traceback" not in done.stderr


def test_an_out_of_tree_providers_table_is_validated_like_any_other(mirror_site: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[shop]\nurl = "https://s.myshopify.com"\naccess_token = "shpat_x"\n'
        '[provider]\nname = "mirror"\napi_key = "k"\nbase_url = "http://127.0.0.1:9"\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n'
        '[mirror]\ndirection = "diagonal"\n'
    )
    done = cli("status", config=config, env={"PYTHONPATH": str(mirror_site)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert "[mirror] direction:" in done.stderr
    assert "Traceback" not in done.stderr
