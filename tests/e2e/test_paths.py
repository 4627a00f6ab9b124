"""Paths mean one thing (issue 19): relative paths in the config are read against the config file's
folder for every command; the commands that only read or change rows refuse a missing database
instead of creating an empty one; `check` creates no directory it reports on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli
from retouch.storage.models import ImageState
from retouch.storage.store import Store
from retouch.sync.config import ConfigError, load_settings
from retouch.sync.paths import PathError, database_file

CONFIG = """
[shop]
url = "http://127.0.0.1:9"
access_token = "shpat_valid_token_123"
[provider]
api_key = "aigen_test_abcdefgh1234"
base_url = "http://127.0.0.1:9"
timeout = "2s"
{storage}
[log]
format = "json"
"""


def config_in(folder: Path, storage: str = "", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(CONFIG.format(storage=storage) + extra)
    return path


@pytest.mark.parametrize("url", ["data/retouch.db", "sqlite:///data/retouch.db", "./data/retouch.db"])
def test_a_relative_database_sits_in_the_config_folder(tmp_path: Path, monkeypatch, url: str) -> None:
    etc = tmp_path / "etc"
    (etc / "data").mkdir(parents=True)
    config = config_in(etc, f'[storage]\nurl = "{url}"\n[writeback]\nbackup_dir = "originals"\n')
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(Path("../etc/config.toml"), environ={})
    assert settings.database_path == etc / "data" / "retouch.db"
    assert settings.database_url == f"sqlite:///{etc / 'data' / 'retouch.db'}"
    assert settings.backup_dir == etc / "originals"
    assert load_settings(config, environ={}).database_path == settings.database_path


def test_absolute_paths_and_urls_are_kept(tmp_path: Path) -> None:
    assert database_file(f"{tmp_path}/x.db", Path("/etc"), None) == tmp_path / "x.db"
    assert database_file(f"sqlite:///{tmp_path}/x.db", Path("/etc"), None) == tmp_path / "x.db"
    assert database_file("~/x.db", Path("/etc"), None) == Path.home() / "x.db"


@pytest.mark.parametrize("name", ["a%20b.db", "100%25.db", "a#b c.db"])
def test_a_database_file_name_with_url_characters_is_that_file(tmp_path: Path, name: str) -> None:
    """The file the owner named is the one SQLite opens, the lock and the claim name: not `a b.db`
    for `a%20b.db` (SQLAlchemy decodes URL escapes in the database part; a `?` is refused earlier)."""
    config = config_in(tmp_path / "etc", f'[storage]\nurl = "{tmp_path / name}"\n')
    settings = load_settings(config, environ={})
    assert settings.database_path == tmp_path / name
    Store(settings.database_url).close()
    assert (tmp_path / name).is_file() and sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        name,
        *(f"{name}{suffix}" for suffix in ("-shm", "-wal") if (tmp_path / f"{name}{suffix}").exists()),
    ]


def test_no_storage_table_means_state_directory_else_next_to_the_config(tmp_path: Path, monkeypatch) -> None:
    config = config_in(tmp_path / "etc")
    monkeypatch.chdir(tmp_path)
    assert load_settings(config, environ={}).database_path == tmp_path / "etc" / "retouch.db"
    assert load_settings(config, environ={}).backup_dir == tmp_path / "etc" / "backups"
    state = tmp_path / "state"
    state.mkdir()
    assert load_settings(config, environ={"STATE_DIRECTORY": str(state)}).database_path == state / "retouch.db"


@pytest.mark.parametrize("url", ["postgres://x/y", "sqlite://", "sqlite:///:memory:", "sqlite:relative.db"])
def test_what_is_not_a_sqlite_file_is_refused_naming_the_key(tmp_path: Path, url: str) -> None:
    with pytest.raises(PathError):
        database_file(url, tmp_path, None)
    with pytest.raises(ConfigError, match=r"^\[storage\] url: "):
        load_settings(config_in(tmp_path, f'[storage]\nurl = "{url}"\n'), environ={})


def _seed(db: Path) -> None:
    store = Store(f"sqlite:///{db}")
    try:
        store.insert_images(
            [
                {
                    "media_id": f"gid://shopify/MediaImage/{n}",
                    "product_id": "gid://shopify/Product/1",
                    "product_legacy_id": "1",
                    "state": ImageState.DONE,
                    "position": n,
                }
                for n in range(3)
            ]
        )
    finally:
        store.close()


def test_status_gives_the_same_answer_from_any_folder(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    config = config_in(etc, '[storage]\nurl = "retouch.db"\n')
    _seed(etc / "retouch.db")
    answers = []
    for cwd in (etc, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        done = cli("status", "--json", config=config, cwd=cwd)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        answers.append((report["database"], report["counts"]))
        assert f"database: {etc / 'retouch.db'}" in done.stderr
    assert answers[0] == answers[1] == (str(etc / "retouch.db"), answers[0][1])
    assert answers[0][1]["done"] == 3
    assert not (tmp_path / "elsewhere" / "retouch.db").exists()


@pytest.mark.parametrize("command", [("status",), ("retry",), ("revert", "--all")])
def test_commands_refuse_a_database_that_does_not_exist(tmp_path: Path, command: tuple[str, ...]) -> None:
    config = config_in(tmp_path / "etc")
    done = cli(*command, config=config, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"no database at {tmp_path / 'etc' / 'retouch.db'}; has `retouch run` been started with this config ({config})?"
    )
    assert not list(tmp_path.rglob("*.db")), "a refused command created a database"


def test_check_creates_no_directory_nor_database(tmp_path: Path) -> None:
    config = config_in(tmp_path / "etc", extra='[writeback]\nbackup_dir = "not/yet/here"\n')
    done = cli("check", config=config, cwd=tmp_path)  # Shopify is unreachable: exit 1, the setup lines still print
    assert f"database file: {tmp_path / 'etc' / 'retouch.db'} (not created yet" in done.stdout, done.stdout
    assert f"backups: {tmp_path / 'etc' / 'not/yet/here'} does not exist yet" in done.stdout
    assert not (tmp_path / "etc" / "not").exists()
    assert not (tmp_path / "etc" / "retouch.db").exists()
