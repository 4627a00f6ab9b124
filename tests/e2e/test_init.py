"""`retouch init` as a real subprocess: with flags and no terminal (a script), and answering its
questions through a pseudo-terminal (a person). Either way it writes a 0600 config (or 0600
credential files and a config naming no secret) and runs `check` against the sandboxes."""

from __future__ import annotations

import fcntl
import os
import select
import stat
import subprocess
import sys
import termios
import time
import tomllib
from pathlib import Path

import pytest

from conftest import CLI_OUTPUT, CLIENT_ID, CLIENT_SECRET, PROVIDER_KEY, SHOP_TOKEN

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def init(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "retouch.sync", "init", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1", "CREDENTIALS_DIRECTORY": ""},
    )
    CLI_OUTPUT.extend((done.stdout, done.stderr))
    return done


def flags(app_shop, provider, out: Path) -> list[str]:
    return [
        "--shop",
        app_shop.shop_url,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--api-key",
        PROVIDER_KEY,
        "--provider-url",
        provider.base_url,
        "--out",
        str(out),
        "--yes",
    ]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_with_flags_writes_a_private_config_and_checks_it(app_shop, provider, tmp_path: Path) -> None:
    out = tmp_path / "config.toml"
    done = init(tmp_path, *flags(app_shop, provider, out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert mode(out) == 0o600
    config = tomllib.loads(out.read_text())
    assert config["shop"] == {"url": app_shop.shop_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert config["provider"]["api_key"] == PROVIDER_KEY
    assert "shopify: ok" in done.stdout and "client credentials" in done.stdout and "provider: ok" in done.stdout

    again = init(tmp_path, *flags(app_shop, provider, out))
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    forced = init(tmp_path, *flags(app_shop, provider, out), "--force", "--no-check")
    assert forced.returncode == 0 and mode(out) == 0o600


def test_init_can_put_the_secrets_in_systemd_credentials(app_shop, provider, tmp_path: Path) -> None:
    out = tmp_path / "config.toml"
    credentials = tmp_path / "credentials"
    done = init(tmp_path, *flags(app_shop, provider, out), "--credentials-dir", str(credentials))
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    assert CLIENT_SECRET not in text and PROVIDER_KEY not in text
    assert (credentials / "shopify_client_secret").read_text().strip() == CLIENT_SECRET
    assert (credentials / "provider_api_key").read_text().strip() == PROVIDER_KEY
    assert {mode(p) for p in credentials.iterdir()} == {0o600}
    assert "LoadCredential=shopify_client_secret:" in done.stdout and "shopify: ok" in done.stdout


def test_init_without_a_terminal_names_the_missing_flag(tmp_path: Path) -> None:
    done = init(tmp_path, "--shop", "my-store", "--client-id", "abc", "--out", str(tmp_path / "c.toml"))
    assert done.returncode == 2
    assert done.stderr.strip() == "init: --client-secret is required (no terminal to ask on)"
    assert not (tmp_path / "c.toml").exists()
    both = init(tmp_path, "--shop", "my-store", "--client-id", "abc", "--access-token", SHOP_TOKEN, "--yes")
    assert both.returncode == 2 and "not both" in both.stderr


def test_init_with_a_legacy_token(shop, provider, tmp_path: Path) -> None:
    out = tmp_path / "config.toml"
    done = init(
        tmp_path,
        "--shop",
        shop.shop_url,
        "--access-token",
        SHOP_TOKEN,
        "--api-key",
        PROVIDER_KEY,
        "--provider-url",
        provider.base_url,
        "--out",
        str(out),
        "--yes",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert tomllib.loads(out.read_text())["shop"]["access_token"] == SHOP_TOKEN
    assert "a static access token" in done.stdout


class Terminal:
    """A child process on a pseudo-terminal that is its controlling terminal (so getpass hides input)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()

        def take_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            close_fds=True,
            preexec_fn=take_terminal,
            env={**os.environ, "NO_COLOR": "1", "CREDENTIALS_DIRECTORY": "", "TERM": "dumb"},
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on the terminal; it shows: {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    if self.proc.poll() is not None and text not in self.seen:
                        raise AssertionError(f"exited before {text!r}: {self.seen[-500:]!r}") from None

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        code = self.proc.wait(max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code


def test_init_asks_on_a_terminal_and_hides_the_secrets(app_shop, provider, tmp_path: Path) -> None:
    out = tmp_path / "config.toml"
    term = Terminal(
        [sys.executable, "-m", "retouch.sync", "init", "--out", str(out), "--provider-url", provider.base_url], tmp_path
    )
    term.expect("Shop (your-store.myshopify.com):")
    term.send(app_shop.shop_url)
    term.expect("Client ID")
    term.send(CLIENT_ID)
    # click writes "Client secret:", then getpass turns echo off and writes " ": wait for that space
    # (typing earlier is echoed by the terminal, and then flushed by getpass).
    term.expect("Client secret: ")
    term.send(CLIENT_SECRET)
    term.expect("Provider")
    term.send("")  # the default
    term.expect("API key: ")
    term.send(PROVIDER_KEY)
    code = term.finish()
    CLI_OUTPUT.append(term.seen)  # the secrets were typed but never echoed
    assert code == 0, term.seen
    assert CLIENT_ID in term.seen and "shopify: ok" in term.seen and "client credentials" in term.seen
    assert mode(out) == 0o600
    config = tomllib.loads(out.read_text())
    assert config["shop"]["client_secret"] == CLIENT_SECRET and config["provider"]["name"] == "aigenstudio"
