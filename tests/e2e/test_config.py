"""Config: the example parses; each wrong key, type or value names the key, exits 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retouch.sync.config import ConfigError, load_settings, parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"

VALID = """
[shop]
url = "https://my-store.myshopify.com"
access_token = "shpat_valid_token_123"
[provider]
api_key = "aigen_test_abcdefgh1234"
[storage]
url = "sqlite:///{db}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text.replace("{db}", str(tmp_path / "r.db")))
    return path


def test_example_parses_with_documented_defaults(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        '# url = "sqlite:////var/lib/retouch/retouch.db"', f'url = "sqlite:///{tmp_path}/x.db"'
    )
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.shop.url == "https://my-store.myshopify.com"
    assert settings.provider_table.limits.window == 3600
    assert (settings.provider_table.limits.jobs, settings.provider_table.limits.images) == (5, 25)
    assert settings.schedule.discover_every == 300 and settings.schedule.poll_every is None
    assert settings.poll_floor == 30  # AI Gen Studio's 120 polls an hour, spread
    assert settings.writeback.mode == "replace"
    assert settings.provider_is_sandbox
    assert settings.backup_dir == tmp_path / "backups"


def test_secrets_from_env_and_credentials(tmp_path: Path) -> None:
    text = VALID.replace('access_token = "shpat_valid_token_123"', 'access_token_env = "SHOP_TOKEN"')
    text = text.replace('api_key = "aigen_test_abcdefgh1234"', "")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "provider_api_key").write_text("aigen_live_fromcredential99\n")
    settings = load_settings(
        write(tmp_path, text), environ={"SHOP_TOKEN": "shpat_from_env", "CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert settings.shop_token.get_secret_value() == "shpat_from_env"
    assert settings.provider_key.get_secret_value() == "aigen_live_fromcredential99"
    assert not settings.provider_is_sandbox
    assert "shpat_from_env" not in repr(settings)


def test_shopify_webhook_secret_from_file_or_env_enables_shopify_webhooks_with_public_url(tmp_path: Path) -> None:
    server = '[server]\nlisten = "127.0.0.1:8787"\npublic_url = "https://hooks.example.com"\n'
    settings = load_settings(write(tmp_path, VALID + server), environ={})
    assert settings.shopify_webhook_secret is None and not settings.shopify_webhooks
    from_env = load_settings(
        write(tmp_path, VALID + server + 'shopify_webhook_secret_env = "HOOK"\n'), environ={"HOOK": "shpss_from_env_77"}
    )
    assert from_env.shopify_webhook_secret.get_secret_value() == "shpss_from_env_77" and from_env.shopify_webhooks
    assert from_env.secret_sources["[server] shopify_webhook_secret"] == "environment variable HOOK"
    assert "shpss_from_env_77" in from_env.secrets()  # redacted from every log event
    assert "shpss_from_env_77" not in repr(from_env)
    no_public = load_settings(
        write(tmp_path, VALID + '[server]\nlisten = "127.0.0.1:8787"\nshopify_webhook_secret = "shpss_in_file"\n'),
        environ={},
    )
    assert no_public.shopify_webhook_secret is not None and not no_public.shopify_webhooks


def test_state_directory_is_the_default_home(tmp_path: Path) -> None:
    text = VALID.replace('[storage]\nurl = "sqlite:///{db}"', "")
    settings = load_settings(write(tmp_path, text), environ={"STATE_DIRECTORY": str(tmp_path)})
    assert settings.database_path == tmp_path / "retouch.db"
    assert settings.backup_dir == tmp_path / "backups"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('url = "https://my-store.myshopify.com"', 'url = "http://my-store.myshopify.com"'), "[shop] url"),
        (('url = "https://my-store.myshopify.com"', 'url = 42'), "[shop] url"),
        (
            ('url = "https://my-store.myshopify.com"', 'url = "https://www.my-store.com"'),
            "[shop] url: 'www.my-store.com' is not",
        ),
        (('[provider]', '[provider]\nnmae = "x"'), "[provider] nmae: unknown key; did you mean 'name'?"),
        (('[provider]', '[provider]\nname = "dalle"'), "[provider] name"),
        (('api_key = "aigen_test_abcdefgh1234"', 'api_key = "sk-123"'), "[provider] api_key"),
        (('api_key = "aigen_test_abcdefgh1234"', ''), "[provider] api_key: missing"),
        (
            ('access_token = "shpat_valid_token_123"', 'access_token_env = "NOPE_NOT_SET"'),
            "[shop] access_token_env: environment variable NOPE_NOT_SET",
        ),
        (('[storage]', '[schedule]\npoll_every = "soon"\n[storage]'), "[schedule] poll_every"),
        (('[storage]', '[schedule]\ndiscover_every = "0s"\n[storage]'), "[schedule] discover_every"),
        (('[storage]', '[writeback]\nmode = "overwrite"\n[storage]'), "[writeback] mode"),
        (('[storage]', '[aigenstudio]\nbatch_size = 50\n[storage]'), "[aigenstudio] batch_size"),
        (('[storage]', '[aigenstudio]\nlimits = { images = "many" }\n[storage]'), "[aigenstudio] limits.images"),
        (('[storage]', '[selection]\nnew_only = "yes please"\n[storage]'), "[selection] new_only"),
        (('url = "sqlite:///{db}"', 'url = "postgres://x"'), "[storage] url"),
        (('url = "sqlite:///{db}"', 'url = "sqlite:////no/such/dir/r.db"'), "[storage] url"),
        (('[shop]\n', '[shop]\napi_version = "latest"\n'), "[shop] api_version"),
        (('[storage]', '[budget]\nmax_credits_per_day = 0\n[storage]'), "[budget] max_credits_per_day"),
        (
            ('[storage]', '[budget]\nmax_images_a_day = 5\n[storage]'),
            "[budget] max_images_a_day: unknown key; did you mean 'max_images_per_day'?",
        ),
        (('[storage]', '[shoop]\nx = 1\n[storage]'), "[shoop]: unknown section; did you mean [shop]?"),
        (('[storage]', '[aigenstudo]\nx = 1\n[storage]'), "[aigenstudo]: unknown section; did you mean [aigenstudio]?"),
        (
            ('[storage]', '[aigenstudio]\npresett = "x"\n[storage]'),
            "[aigenstudio] presett: unknown key; did you mean 'preset'?",
        ),
        (
            ('[storage]', '[aigenstudio]\nlimits = { imags = 5 }\n[storage]'),
            "[aigenstudio] limits.imags: unknown key; did you mean 'images'?",
        ),
        (('[shop]', 'aigenstudio = 5\n[shop]'), "[aigenstudio]: must be a table"),
        (
            ('api_key = "aigen_test_abcdefgh1234"', 'name = "imagine"\napi_key = "aigen_test_abcdefgh1234"'),
            "[provider] name: unknown provider 'imagine'; choose one of aigenstudio, imagen, productai",
        ),
        (('[storage]', '[server]\nlisten = "8787"\n[storage]'), "[server] listen: listen '8787' is not host:port"),
        (('[storage]', '[server]\nlisten = "::1:8787"\n[storage]'), "[server] listen: listen '::1:8787': put an IPv6"),
        (
            ('[storage]', '[server]\nlisten = "0.0.0.0:8787"\n[storage]'),
            "[server] listen: binding beyond loopback needs public_url or allow_public_bind = true",
        ),
        (
            ('[storage]', '[server]\npublic_url = "http://retouch.example.com"\n[storage]'),
            "[server] public_url: must use https",
        ),
        (('[storage]', '[server]\nwebhook_skew = "a while"\n[storage]'), "[server] webhook_skew"),
        (
            (
                '[storage]',
                '[server]\nshopify_webhook_secret = "shpss_abc"\nshopify_webhook_secret_env = "X"\n[storage]',
            ),
            "[server] shopify_webhook_secret_env: shopify_webhook_secret is set too; keep only one of them",
        ),
        (
            ('[storage]', '[server]\nshopify_webhook_secret_env = "NOPE_NOT_SET"\n[storage]'),
            "[server] shopify_webhook_secret_env: environment variable NOPE_NOT_SET",
        ),
        (('[storage]', '[server]\nshopify_webhook_secret = 42\n[storage]'), "[server] shopify_webhook_secret"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    text = VALID.replace(*change)
    assert text != VALID
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[shop\nurl="), environ={})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml", environ={})


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), (12, 12)])
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m5", "-1s", True, "1x"])
def test_bad_durations(text) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_cli_config_error_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("[provider]", "[provider]\nnmae = 'x'"))
    for command in (["status"], ["check"], ["run"], ["resync", "--dry-run"]):
        result = subprocess.run(
            [sys.executable, "-m", "retouch.sync", *command, "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == "config error: [provider] nmae: unknown key; did you mean 'name'?"
        assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("name,floor", [("imagen", 10.0), ("productai", 3.0)])
def test_the_example_works_for_each_provider(tmp_path: Path, name: str, floor: float) -> None:
    text = (
        EXAMPLE.read_text()
        .replace('# url = "sqlite:////var/lib/retouch/retouch.db"', f'url = "sqlite:///{tmp_path}/x.db"')
        .replace('name = "aigenstudio"', f'name = "{name}"')
    )
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.provider.name == name and settings.plugin.name == name
    assert settings.provider_base_url == settings.plugin.default_base_url
    assert settings.poll_floor == floor


def test_a_provider_table_is_validated_even_when_another_provider_is_chosen(tmp_path: Path) -> None:
    text = VALID.replace(
        "[storage]", "[imagen]\nprofile_key = 1\nstraighten = true\nperspective_correction = true\n[storage]"
    )
    with pytest.raises(ConfigError, match=r"^\[imagen\] perspective_correction: cannot be used with straighten"):
        load_settings(write(tmp_path, text), environ={})
