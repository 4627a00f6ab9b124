"""A `[server] listen` the daemon cannot have stops `retouch run` at once with one line (never a
daemon without its server), and `retouch check` says so too. The CLI as a real subprocess."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import cli, config_text
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(shop: ShopifySandbox, provider: AigenSandbox, tmp_path: Path, listen: str) -> Path:
    path = tmp_path / "config.toml"
    server = f'\n[server]\nlisten = "{listen}"\nallow_public_bind = true\n'
    path.write_text(config_text(shop, provider, tmp_path, extra=server))
    return path


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_run_with_a_busy_port_stops_with_one_line_and_exit_1(shop, provider, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        done = cli("run", config=write(shop, provider, tmp_path, listen), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert line.startswith("[server] listen:") and listen in line and "in use" in line
    assert '"serving"' not in done.stdout and '"starting"' not in done.stdout


@pytest.mark.parametrize("listen", ["192.0.2.1:{port}", "[2001:db8::1]:{port}"], ids=["not-ours-v4", "not-ours-v6"])
def test_run_with_an_address_that_is_not_this_machines_stops_with_exit_2(
    shop, provider, tmp_path: Path, listen: str
) -> None:
    listen = listen.format(port=free_port())
    done = cli("run", config=write(shop, provider, tmp_path, listen), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert line.startswith("[server] listen:") and "cannot listen on" in line


def test_check_says_when_the_listen_address_cannot_be_bound(shop, provider, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        done = cli("check", config=write(shop, provider, tmp_path, listen), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"server: {listen} is in use by another program" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_check_says_the_listen_address_is_free(shop, provider, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    done = cli("check", config=write(shop, provider, tmp_path, listen), timeout=60)
    assert f"server: ok — can listen on {listen}" in done.stdout, done.stdout + done.stderr


def test_a_server_that_ends_while_the_daemon_runs_stops_the_daemon(shop, provider, tmp_path: Path) -> None:
    """Never a daemon without its server: the server task's end (here: it fails after a moment) sets
    the daemon stopping, with the reason `run` prints before it exits 1."""
    import asyncio

    from conftest import pipeline_settings, run_async
    from retouch.sync.runtime import open_context
    from retouch.sync.scheduler import Daemon

    settings = pipeline_settings(shop, provider, tmp_path)

    async def failing_server(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.5)
        raise OSError(98, "Address already in use")

    async def scenario() -> str | None:
        async with open_context(settings) as ctx:
            daemon = Daemon(ctx)
            await asyncio.wait_for(daemon.run(server=failing_server), timeout=60)
            return daemon.server_failure

    assert run_async(scenario(), timeout=90) == "OSError: [Errno 98] Address already in use"
