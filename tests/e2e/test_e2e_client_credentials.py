"""A Dev Dashboard app end to end: the real daemon (`retouch run`, a real config file and SQLite
file) connects with client credentials to the Shopify sandbox, whose tokens live 3 seconds; the CLI
as real subprocesses. Secrets (the client secret and every token the store issued) must appear in
no log, database, backup, CLI output, /healthz or /metrics (conftest's no_secret_leaks, extended).
"""

from __future__ import annotations

import math
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from conftest import CLIENT_SECRET, cli, client_credentials, config_text, image_states, wait_for
from test_service import NotifySocket
from test_shopify_webhooks import BODY
from test_shopify_webhooks import headers as hook_headers

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_app_config(
    app_shop,
    provider,
    tmp_path: Path,
    *,
    secret: str = CLIENT_SECRET,
    listen: int | None = None,
    name: str = "config.toml",
) -> Path:
    text = client_credentials(config_text(app_shop, provider, tmp_path, new_only=False))
    text = text.replace(f'client_secret = "{CLIENT_SECRET}"', f'client_secret = "{secret}"')
    if listen:
        text += f'\n[server]\nlisten = "127.0.0.1:{listen}"\n'
    path = tmp_path / name
    path.write_text(text)
    return path


def done(db: Path, count: int) -> bool:
    states = image_states(db)
    return len(states) == count and set(states.values()) == {"done"}


def grants(app_shop) -> int:
    return app_shop.tokens.stats()["grants"]


def test_the_daemon_works_across_several_token_expiries(app_shop, provider, daemon, tmp_path: Path) -> None:
    lifetime = app_shop.tokens.stats()["lifetime"]
    port = free_port()
    db = tmp_path / "retouch.db"
    products = app_shop.seed(products=2, images_per_product=1, seed=7)
    run = daemon(write_app_config(app_shop, provider, tmp_path, listen=port))
    started = time.monotonic()
    wait_for(lambda: done(db, 2), 60, what="the first two images done")
    # A new photo a token lifetime apart, three times (the provider's sandbox allows 5 jobs an hour):
    # each one is read, sent, written back with whatever token is current by then.
    for added in range(3):
        time.sleep(lifetime)
        app_shop.add_image(products[added % 2]["legacy_id"], filename=f"new-{added}.jpg", alt=f"New {added}")
        wait_for(lambda: done(db, 3 + added), 60, what=f"new image {added} done")
    elapsed = time.monotonic() - started

    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    status = cli("status", config=tmp_path / "config.toml")
    assert run.terminate(timeout=15) == 0

    assert health.status_code == 200 and health.json()["checks"]["shopify_token"]["ok"]
    assert "expires in" in health.json()["checks"]["shopify_token"]["detail"]
    issued = app_shop.tokens.issued()
    for text in (health.text, metrics, status.stdout + status.stderr, run.output()):
        assert CLIENT_SECRET not in text and not any(token in text for token in issued)
    expiries = math.floor(elapsed / lifetime)  # token lifetimes that ran out during the run
    assert expiries >= 4
    # Renewed ahead of expiry, so normally no call meets a 401; on a stalled machine one may (a
    # token lapsing between its renewal margin and the request): then one renewal, and the call goes
    # through — nothing failed, no step either.
    unauthorized = app_shop.stats()["unauthorized"]
    renewed_after_401 = [e for e in run.events() if e.get("event") == "access_token_renewed"]
    assert unauthorized == len(renewed_after_401)
    # One grant to start, then one per renewal period — the lifetime less its renewal margin: 10%
    # of these 3-second tokens (so 1.1 grants per expiry here); for Shopify's 24-hour tokens the
    # margin is 5 minutes, which makes it exactly expiries + 1 for any run under 9 months — plus a
    # renewal per 401 answered. Never one per call, and several expiries crossed.
    renewal_period = lifetime - min(0.1 * lifetime, 300.0)
    assert expiries - 1 <= grants(app_shop) <= 1 + math.floor(elapsed / renewal_period) + unauthorized, (
        grants(app_shop),
        elapsed,
    )
    assert not [e for e in run.events() if e.get("event") in ("step_failed", "failed", "connect_failed")]


def test_tokens_revoked_mid_run_are_renewed_once(app_shop, provider, daemon, tmp_path: Path) -> None:
    app_shop.tokens.configure(lifetime=3600)
    db = tmp_path / "retouch.db"
    products = app_shop.seed(products=1, images_per_product=1, seed=8)
    run = daemon(write_app_config(app_shop, provider, tmp_path))
    wait_for(lambda: done(db, 1), 60, what="the first image done")
    assert grants(app_shop) == 1
    for round_ in range(2):
        app_shop.tokens.revoke()  # the merchant rotated the secret's tokens, or Shopify did
        app_shop.add_image(products[0]["legacy_id"], filename=f"after-revoke-{round_}.jpg")
        wait_for(lambda: done(db, 2 + round_), 60, what="the image added after the revocation done")
        assert grants(app_shop) == 2 + round_
    assert run.terminate(timeout=15) == 0
    renewed = [e for e in run.events() if e.get("event") == "access_token_renewed"]
    assert len(renewed) == 2 == app_shop.stats()["unauthorized"]
    assert not [e for e in run.events() if e.get("event") in ("step_failed", "failed")]


def test_a_wrong_secret_fails_check_and_keeps_run_retrying_without_ready(
    app_shop, provider, daemon, tmp_path: Path
) -> None:
    wrong = "shpss_TESTSECRET_wrong_a1b2c3"
    port = free_port()
    config = write_app_config(app_shop, provider, tmp_path, secret=wrong, listen=port)
    checked = cli("check", config=config)
    assert checked.returncode == 1
    assert "client ID or secret was refused (invalid_client)" in checked.stdout
    assert "Dev Dashboard (your app → Settings)" in checked.stdout
    assert "provider: ok" in checked.stdout

    notify = NotifySocket()
    try:
        run = daemon(config, env={"NOTIFY_SOCKET": notify.path})
        wait_for(lambda: app_shop.tokens.stats()["refused"] >= 3, 30, what="the daemon asking again")
        assert run.proc.poll() is None  # still running
        assert "READY=1" not in notify.lines()
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 503
        assert "invalid_client" in health.json()["checks"]["shopify_token"]["detail"]
        status = cli("status", config=config)
        assert "invalid_client" in status.stdout
        # Backoff: refusals are spaced by a growing wait, not one per tick.
        refused_at = [e for e in run.events() if e.get("event") == "connect_failed"]
        assert len(refused_at) <= 8
        # The owner copies the secret again and reloads: the daemon, still running, gets ready (and
        # not before Shopify answers: a reload while connecting says neither RELOADING=1 nor READY=1).
        config.write_text(config.read_text().replace(wrong, CLIENT_SECRET))
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e.get("event") == "reloaded" for e in run.events()), 30, what="the reload")
        assert "READY=1" not in notify.lines() or grants(app_shop) >= 1
        wait_for(lambda: "READY=1" in notify.lines(), 60, what="READY=1 after the right secret")
        assert grants(app_shop) >= 1 and any(e.get("event") == "connected" for e in run.events())
        assert notify.lines().count("READY=1") == 1 and "RELOADING=1" not in notify.lines()
        # The client secret signs the app's webhooks: the endpoint checks them with the secret in use now.
        hook = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/shopify",
            content=BODY,
            headers=hook_headers(BODY, secret=CLIENT_SECRET),
            timeout=5,
        )
        assert hook.status_code == 200, hook.text
        assert run.terminate(timeout=15) == 0
    finally:
        notify.close()
    assert wrong not in run.output() + health.text


@pytest.mark.parametrize(
    "setting, words",
    [
        ({"installed": False}, "the app is not installed on"),
        ({"permitted": False}, "the store must belong to the app's organisation"),
        ({"scopes": "read_products,write_products"}, "lacks the access scope write_files"),
    ],
)
def test_check_says_what_to_do_in_the_dev_dashboard(
    app_shop, provider, tmp_path: Path, setting: dict, words: str
) -> None:
    app_shop.tokens.configure(**setting)
    checked = cli("check", config=write_app_config(app_shop, provider, tmp_path))
    assert checked.returncode == 1, checked.stdout
    assert words in checked.stdout


def test_check_says_how_the_token_is_obtained(app_shop, provider, tmp_path: Path) -> None:
    app_shop.tokens.configure(lifetime=86399)
    checked = cli("check", config=write_app_config(app_shop, provider, tmp_path))
    assert checked.returncode == 0, checked.stdout
    assert (
        "shopify: token — client credentials of app retouch-test-app-0d4c; each token expires in 24 h" in checked.stdout
    )
    assert grants(app_shop) == 1  # each command gets its own token; nothing stored


def test_the_sandbox_config_connects_with_client_credentials(tmp_path: Path) -> None:
    """`retouch sandbox` and `retouch demo` write this config: what a new owner has, client credentials."""
    import tomllib

    from retouch.sync.commands.sandbox import render_config, start_sandboxes

    shop, shop_server, sandbox = start_sandboxes(products=1, fast=True)
    try:
        text = render_config(
            shop_url=shop.shop_url,
            provider="aigenstudio",
            sandbox=sandbox,
            database=tmp_path / "s.db",
            backup_dir=tmp_path / "backups",
            fast=True,
        )
        assert set(tomllib.loads(text)["shop"]) == {"url", "client_id", "client_secret", "api_version"}
        config = tmp_path / "sandbox.toml"
        config.write_text(text)
        checked = cli("check", config=config)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "client credentials" in checked.stdout
        assert shop.tokens.stats()["grants"] == 1
    finally:
        shop_server.stop()
        sandbox.stop()
