"""Config of a Dev Dashboard app: [shop] client_id + client_secret (file, *_env or systemd credential),
exactly one way to connect, the webhook secret defaulting to the client secret, and the client
secret in the redaction list. The one-line messages of the wrong combinations are also in the
bad-config corpus (tests/bad_configs/shop_*client*.toml), through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouch.plugin.shopify.auth import ClientCredentials, StaticToken
from retouch.sync.config import ConfigError, load_settings
from retouch.sync.runtime import shopify_tokens

BASE = """
[shop]
url = "https://my-store.myshopify.com"
{shop}
[provider]
api_key = "aigen_test_abcdefgh1234"
[storage]
url = "sqlite:///{db}"
{extra}"""

SECRET = "shpss_client_secret_0042"


def settings(tmp_path: Path, shop: str, extra: str = "", environ: dict[str, str] | None = None):
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(shop=shop, db=tmp_path / "r.db", extra=extra))
    return load_settings(path, environ=environ or {})


def test_client_credentials_from_the_file(tmp_path: Path) -> None:
    loaded = settings(tmp_path, f'client_id = "abc123"\nclient_secret = "{SECRET}"')
    assert loaded.shop_auth == "client_credentials" and loaded.shop_token is None
    assert loaded.shop_client_secret.get_secret_value() == SECRET
    assert loaded.secret_sources["[shop] client_secret"] == "the config file"
    assert SECRET in loaded.secrets() and SECRET not in repr(loaded)
    assert isinstance(shopify_tokens(loaded), ClientCredentials)


def test_client_secret_from_env_or_a_systemd_credential(tmp_path: Path) -> None:
    from_env = settings(
        tmp_path, 'client_id = "abc123"\nclient_secret_env = "SHOP_SECRET"', environ={"SHOP_SECRET": SECRET}
    )
    assert from_env.shop_client_secret.get_secret_value() == SECRET
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "shopify_client_secret").write_text(SECRET + "\n")
    from_credential = settings(tmp_path, 'client_id = "abc123"', environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert from_credential.shop_client_secret.get_secret_value() == SECRET
    assert from_credential.secret_sources["[shop] client_secret"] == "systemd credential shopify_client_secret"


def test_the_legacy_token_still_works(tmp_path: Path) -> None:
    loaded = settings(tmp_path, 'access_token = "shpat_legacy_1234567"')
    assert loaded.shop_auth == "static" and loaded.shop_client_secret is None
    assert isinstance(shopify_tokens(loaded), StaticToken)


def test_the_webhook_secret_defaults_to_the_client_secret(tmp_path: Path) -> None:
    server = '[server]\nlisten = "127.0.0.1:8787"\npublic_url = "https://hooks.example.com"\n'
    loaded = settings(tmp_path, f'client_id = "abc123"\nclient_secret = "{SECRET}"', server)
    assert loaded.shopify_webhook_secret.get_secret_value() == SECRET and loaded.shopify_webhooks
    own = settings(
        tmp_path,
        f'client_id = "abc123"\nclient_secret = "{SECRET}"',
        server + 'shopify_webhook_secret = "shpss_other_secret_1"\n',
    )
    assert own.shopify_webhook_secret.get_secret_value() == "shpss_other_secret_1"
    legacy = settings(tmp_path, 'access_token = "shpat_legacy_1234567"', server)
    assert legacy.shopify_webhook_secret is None


@pytest.mark.parametrize(
    "shop, environ, message",
    [
        (
            f'access_token = "shpat_x_1234567"\nclient_id = "abc"\nclient_secret = "{SECRET}"',
            {},
            "[shop] access_token: set either client_id + client_secret",
        ),
        ('access_token_env = "T"\nclient_id = "abc"', {"T": "shpat_x"}, "[shop] access_token: set either"),
        (f'client_secret = "{SECRET}"', {}, "[shop] client_id: missing; client_secret needs the app's Client ID"),
        (
            'client_id = "abc"',
            {},
            "[shop] client_secret: missing; set client_secret, client_secret_env, or a systemd "
            "credential named shopify_client_secret",
        ),
        ('client_id = "abc"\nclient_secret_env = "NOPE"', {}, "[shop] client_secret_env: environment variable NOPE"),
        ('client_id = ""\nclient_secret = "x"', {}, "[shop] client_id: empty"),
        (
            f'client_id = "abc"\nclient_secret = "{SECRET}"\nclient_secret_env = "S"',
            {"S": "y"},
            "[shop] client_secret_env: client_secret is set too",
        ),
        ("", {}, "[shop] client_id: missing; set client_id and client_secret"),
    ],
)
def test_exactly_one_way_to_connect(tmp_path: Path, shop: str, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(tmp_path, shop, environ=environ)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value) and SECRET not in str(error.value)


def test_a_client_secret_credential_without_a_client_id_names_the_client_id(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "shopify_client_secret").write_text(SECRET)
    with pytest.raises(ConfigError, match=r"^\[shop\] client_id: missing; the systemd credential"):
        settings(tmp_path, "", environ={"CREDENTIALS_DIRECTORY": str(creds)})
