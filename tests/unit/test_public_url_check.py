"""`[server] public_url` on a private, loopback or Shopify address is refused by Shopify's
webhookSubscriptionCreate and by AI Gen Studio's `webhook_url`: `retouch check` says so (one line
saying what to do) before the daemon meets the refusal. The judge is pure (public_address.py); the
check resolves the host and asks it only for services that are not on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouch.plugin.shopify.public_address import address_problem
from retouch.sync.commands.public_url_check import public_url_findings, resolve
from retouch.sync.config import load_settings


@pytest.mark.parametrize(
    "url, addresses, reason",
    [
        ("https://10.0.0.5/hooks", None, "a private address (10.0.0.5)"),
        ("https://192.168.1.20", None, "a private address"),
        ("http://127.0.0.1:8080", None, "a loopback address"),
        ("https://[::1]:8443", None, "a loopback address"),
        ("https://[fe80::1]", None, "a link-local address"),
        ("https://169.254.169.254", None, "a link-local address"),  # the cloud metadata address
        ("https://[::ffff:10.0.0.9]", None, "a private address (10.0.0.9)"),
        ("https://0.0.0.0", None, "an unspecified address"),
        ("https://localhost:8443", None, "localhost is a local name"),
        ("https://retouch.local", None, "is a local name"),
        ("https://my-store.myshopify.com/hooks", None, "is a Shopify domain"),
        ("https://hooks.example.com", ["93.184.216.34", "10.0.0.7"], "hooks.example.com resolves to a private address"),
        ("https://hooks.example.com", ["fd00::5"], "resolves to a private address"),
    ],
)
def test_internal_and_shopify_addresses_are_refused(url, addresses, reason) -> None:
    problem = address_problem(url, addresses)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "url, addresses",
    [
        ("https://hooks.example.com", ["93.184.216.34"]),
        ("https://hooks.example.com", ["2606:2800:220:1:248:1893:25c8:1946"]),
        ("https://93.184.216.34:8443/x", None),
        ("https://hooks.example.com", None),  # not resolved: only the name is judged
    ],
)
def test_public_addresses_pass(url, addresses) -> None:
    assert address_problem(url, addresses) is None


def test_the_resolver_answers_addresses_or_none() -> None:
    assert resolve("127.0.0.1") == ["127.0.0.1"]
    assert resolve("no-such-host.invalid") is None


def _settings(tmp_path: Path, *, shop_url: str, public_url: str, provider_url: str = "http://127.0.0.1:9"):
    path = tmp_path / "config.toml"
    path.write_text(f"""
[shop]
url = "{shop_url}"
access_token = "shpat_public_url_check_token"

[provider]
name = "aigenstudio"
api_key = "aigen_live_publicurlcheck0000"
base_url = "{provider_url}"

[server]
listen = "127.0.0.1:8099"
public_url = "{public_url}"
shopify_webhook_secret = "shpss_public_url_check"

[writeback]
backup_dir = "{tmp_path / 'backups'}"

[storage]
url = "sqlite:///{tmp_path / 'retouch.db'}"
""")
    return load_settings(path)


def test_check_names_the_key_the_reason_the_refusing_services_and_what_to_do(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        shop_url="https://my-store.myshopify.com",
        public_url="https://hooks.example.com",
        provider_url="https://api.aigenstudio.example",
    )
    ((ok, line),) = public_url_findings(settings, resolve=lambda host: ["10.20.30.40"])
    assert not ok
    assert line.startswith(
        "[server] public_url: https://hooks.example.com cannot receive webhooks from Shopify "
        "and AI Gen Studio: hooks.example.com resolves to a private address (10.20.30.40); "
    )
    assert "reverse proxy or a tunnel" in line
    assert "\n" not in line
    assert public_url_findings(settings, resolve=lambda host: ["93.184.216.34"]) == []


def test_services_on_this_machine_are_not_judged(tmp_path: Path) -> None:
    """The sandboxes call back over loopback: a loopback public_url is right for them."""
    settings = _settings(tmp_path, shop_url="http://127.0.0.1:8001", public_url="http://127.0.0.1:8099")
    assert public_url_findings(settings, resolve=lambda host: ["127.0.0.1"]) == []
    real_shop = _settings(tmp_path, shop_url="https://my-store.myshopify.com", public_url="http://127.0.0.1:8099")
    ((ok, line),) = public_url_findings(real_shop, resolve=lambda host: ["127.0.0.1"])
    assert not ok and "webhooks from Shopify: a loopback address (127.0.0.1)" in line
