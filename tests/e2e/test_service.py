"""retouch as systemd runs it: the unit file, the notify protocol over a real datagram socket, the
watchdog, SIGHUP reloads, one daemon per database, and the HTTP server inside the daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import retouch.sync
from conftest import PROVIDER_KEY, SHOP_TOKEN, cli, config_text, image_states, wait_for
from retouch.plugin.providers.aigenstudio import contract, webhooks
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.sync.config import ScheduleSettings
from retouch.sync.systemd import InstanceLock, Notifier, is_held, status_line, watchdog_interval

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

UNIT = Path(retouch.sync.__file__).with_name("retouch.service")


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd; records (arrival time, message)."""

    def __init__(self) -> None:
        # sun_path holds 108 bytes: pytest's tmp_path can be longer, so a short directory of our own.
        self.dir = tempfile.mkdtemp(prefix="rt-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.received.append((time.time(), line))

    def lines(self) -> list[str]:
        return [line for _, line in self.received]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def event_time(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


# ----- the unit file ----------------------------------------------------------------------------

REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": None,
    "Restart": "on-failure",
    "TimeoutStopSec": None,
    "DynamicUser": "yes",
    "StateDirectory": "retouch",
    "ConfigurationDirectory": "retouch",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter": None,
    "LoadCredential": None,
}


def test_the_unit_file_is_hardened_and_says_why_on_each_line() -> None:
    lines = UNIT.read_text().splitlines()
    directives: dict[str, list[str]] = {}
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if key in REQUIRED and key not in directives:
                assert lines[number - 1].startswith("# "), f"{key}= has no comment saying why"
            directives.setdefault(key, []).append(value)
    for key, value in REQUIRED.items():
        assert key in directives, f"{key}= missing"
        if value is not None:
            assert directives[key] == [value], key
    # The ordinary service's calls, less the privileged and resource-changing ones (test_unit_security.py).
    assert directives["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    # Both secrets arrive as credentials, under the names the config reader looks for.
    assert sorted(v.split(":")[0] for v in directives["LoadCredential"]) == [
        "provider_api_key",
        "shopify_client_secret",
    ]
    assert "#LoadCredential=shopify_access_token:" in UNIT.read_text()  # the legacy token's line, to swap in
    # The daemon's own drain must end before systemd's stop timeout kills it.
    assert int(directives["TimeoutStopSec"][0]) > ScheduleSettings().shutdown_grace
    assert int(directives["WatchdogSec"][0]) >= 10


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at the retouch this test runs.
    retouch = Path(sys.executable).with_name("retouch")
    assert retouch.exists()
    unit = tmp_path / "retouch.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/retouch", str(retouch)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys; every complaint about our file names it.
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and complaints == [], done.stdout + done.stderr


# ----- notify protocol and lock, in-process -----------------------------------------------------


def test_notifier_sends_each_message_as_a_datagram(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.path)
    assert notifier.ready() and notifier.status("3 queued,\n1 done") and notifier.watchdog()
    assert notifier.reloading() and notifier.stopping()
    wait_for(lambda: len(notify_socket.received) >= 6, 5)
    lines = notify_socket.lines()
    assert lines[:3] == ["READY=1", "STATUS=3 queued, 1 done", "WATCHDOG=1"]
    assert lines[3] == "RELOADING=1" and re.fullmatch(r"MONOTONIC_USEC=\d+", lines[4])
    assert lines[5] == "STOPPING=1"
    notifier.close()


def test_notifier_reaches_an_abstract_socket_and_is_silent_without_one() -> None:
    name = f"retouch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"
    assert Notifier.from_env({}).ready() is False
    # A socket that went away is a warning, never an exception.
    assert Notifier("/nonexistent/notify").ready() is False


def test_watchdog_interval_is_half_of_what_systemd_asks() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_status_line_counts_the_queue() -> None:
    assert status_line({"discovered": 2, "submitted": 3, "done": 4, "failed": 1}) == "5 queued, 4 done, 1 failed"
    assert status_line({}, "no credits") == "0 queued, 0 done, 0 failed; paused: no credits"


def test_instance_lock_is_exclusive_and_probing_does_not_take_it(tmp_path: Path) -> None:
    db = tmp_path / "retouch.db"
    first, second = InstanceLock(db), InstanceLock(db)
    assert is_held(db) is None
    assert first.acquire()
    assert is_held(db) == os.getpid() == first.holder_pid()
    assert not second.acquire(patience=0.2)
    first.release()
    assert is_held(db) is None
    assert second.acquire(patience=0)
    second.release()


# ----- the daemon under systemd's eyes -------------------------------------------------------------


def test_notify_messages_in_order_with_watchdog_pings_while_a_request_hangs(
    shop, provider, write_config, daemon, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    shop.seed(products=1, images_per_product=1, seed=31)
    # The job's create takes 6 s (client timeout 10 s): even if a stalled CI machine loses 3 s of it,
    # there is room for the 3 pings asked below.
    provider.add_fault(endpoint="create", mode="hang", seconds=6, count=1)
    config = write_config(new_only=False)
    config.write_text(config.read_text().replace('timeout = "5s"', 'timeout = "10s"'))
    run = daemon(config, env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000"})
    wait_for(lambda: set(image_states(tmp_path / "retouch.db").values()) == {"done"}, 60, what="the image done")
    wait_for(lambda: any(line.startswith("STATUS=0 queued, 1 done") for line in notify_socket.lines()), 20)
    assert run.terminate(timeout=10) == 0
    wait_for(lambda: "STOPPING=1" in notify_socket.lines(), 5)

    lines = notify_socket.lines()
    assert lines.count("READY=1") == 1 and lines[-1] == "STOPPING=1"
    ready = lines.index("READY=1")
    assert not any(line.startswith("STATUS=") for line in lines[:ready])  # READY first, then the counts
    assert set(lines) <= {"READY=1", "WATCHDOG=1", "STOPPING=1"} | {l for l in lines if l.startswith("STATUS=")}

    # While the create request hung, the event loop kept pinging (every 0.5 s here).
    events = run.events()
    created = event_time(next(e for e in events if e["event"] == "job_created"))
    submitted = event_time(next(e for e in events if e["event"] == "submitted"))
    assert submitted - created >= 5.5
    pings = [at for at, line in notify_socket.received if line == "WATCHDOG=1" and created < at < submitted]
    assert len(pings) >= 3, pings

    start = next(e for e in events if e["event"] == "starting")
    for key in ("version", "config", "provider", "mode", "shop", "db", "limits"):
        assert key in start, key
    assert start["mode"] == "sandbox" and start["limits"]["images"] == 25


def test_sighup_reloads_a_good_config_and_keeps_the_old_one_on_a_bad_one(
    shop, provider, write_config, daemon, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    import signal

    products = shop.seed(products=1, images_per_product=1, seed=32)
    config = write_config()
    db = tmp_path / "retouch.db"
    run = daemon(config, env={"NOTIFY_SOCKET": notify_socket.path})
    wait_for(lambda: "READY=1" in notify_socket.lines(), 30, what="ready")
    wait_for(lambda: len(image_states(db)) == 1, 30, what="baseline")

    good = config.read_text().replace('discover_every = "1s"', 'discover_every = "2s"')
    assert good != config.read_text()
    config.write_text(good)
    run.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "reloaded" for e in run.events()), 10, what="reloaded")
    reloaded = next(e for e in run.events() if e["event"] == "reloaded")
    assert reloaded["changed"] == ["schedule"]
    wait_for(lambda: notify_socket.lines().count("READY=1") == 2, 5)
    lines = notify_socket.lines()
    assert lines.index("RELOADING=1") < len(lines) - 1 - lines[::-1].index("READY=1")

    config.write_text(good.replace('mode = "replace"', 'mode = "sideways"'))
    run.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "reload_failed" for e in run.events()), 10, what="reload_failed")
    failed = next(e for e in run.events() if e["event"] == "reload_failed")
    assert "[writeback] mode" in failed["reason"]
    assert notify_socket.lines().count("RELOADING=1") == 1  # a refused config never announced a reload

    # Still running, on the previous (good) config.
    added = shop.add_image(products[0]["legacy_id"], filename="after-reload.jpg", alt="after")
    wait_for(lambda: image_states(db).get(added["id"]) == "done", 60, what="the new image done")
    assert run.proc.poll() is None
    assert run.terminate(timeout=10) == 0


def test_a_second_daemon_on_the_same_database_is_refused(shop, provider, write_config, daemon) -> None:
    shop.seed(products=1, images_per_product=1, seed=33)
    config = write_config()
    first = daemon(config)
    wait_for(lambda: any(e["event"] == "ready" for e in first.events()), 30, what="first daemon ready")

    second = cli("run", config=config, timeout=60)
    assert second.returncode == 1
    assert "another retouch daemon" in second.stderr and str(first.proc.pid) in second.stderr
    assert "Traceback" not in second.stderr

    status = json.loads(cli("status", "--json", config=config).stdout)
    assert status["daemon"]["pid"] == first.proc.pid and status["daemon"]["last_heartbeat"]
    assert first.terminate(timeout=10) == 0
    status = json.loads(cli("status", "--json", config=config).stdout)
    assert status["daemon"]["pid"] is None


# ----- the HTTP server inside the daemon -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def slow_provider() -> Iterator[AigenSandbox]:
    """Items of 2 s: the daemon has stored the job long before it ends, so the job's webhook always
    finds it. (With the usual 0.2 s, a loaded machine could see the job end, and its webhook come,
    before the create answer was recorded: the hint is then unmatched and a poll finishes the job.)"""
    sandbox = AigenSandbox(window_seconds=3600, seconds_per_item=2.0)
    server = sandbox.start()
    yield sandbox
    server.stop()


def test_webhooks_drive_the_job_and_health_and_metrics_report_the_run(
    shop, slow_provider, daemon, tmp_path: Path
) -> None:
    provider = slow_provider
    products = shop.seed(products=1, images_per_product=1, seed=34)
    port = free_port()
    # A safety poll of an hour: once the first poll finds the job running, only a webhook can finish it.
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(
            shop,
            provider,
            tmp_path,
            extra=f"""
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
safety_poll_every = "1h"
""",
        )
    )
    db = tmp_path / "retouch.db"
    run = daemon(config)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10)
    wait_for(lambda: len(image_states(db)) == 1, 30, what="baseline")
    added = shop.add_image(products[0]["legacy_id"], filename="hooked.jpg", alt="hooked")
    wait_for(lambda: image_states(db).get(added["id"]) == "done", 60, what="the new image done")
    events = run.events()
    assert any(e["event"] == "webhook_received" for e in events)
    assert provider.stats()["webhooks"]["delivered"] >= 2

    health = http.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True
    samples = metric_samples(http.get("/metrics").text)
    assert samples[("retouch_images", (("state", "done"),))] == 1
    assert samples[("retouch_images", (("state", "baseline"),))] == 1
    assert samples[("retouch_provider_requests_total", (("outcome", "ok"),))] >= 2  # create + polls
    assert samples[("retouch_shopify_requests_total", ())] > 0
    assert ("retouch_provider_credits_used_total", ()) in samples  # 0 on a sandbox key

    # A signed event about a job we never sent: accepted (the sender stops) and only logged.
    body = json.dumps({"type": "enhancement.completed", "enhancement_id": "enh_not_ours"}).encode()
    stamp, event_id = str(int(time.time())), "evt_unknown_job_1"
    answer = http.post(
        "/webhooks/aigenstudio",
        content=body,
        headers={
            contract.TIMESTAMP_HEADER: stamp,
            contract.EVENT_ID_HEADER: event_id,
            contract.SIGNATURE_HEADER: webhooks.sign(PROVIDER_KEY, stamp, event_id, body),
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 200
    wait_for(
        lambda: any(e["event"] == "webhook_unmatched" and e["provider_job_id"] == "enh_not_ours" for e in run.events()),
        5,
    )
    assert run.terminate(timeout=10) == 0
    with pytest.raises(httpx.ConnectError):
        http.get("/healthz")  # the server stopped with the daemon


# ----- retouch check: the service setup ---------------------------------------------------------------


def test_check_covers_the_service_setup(shop, provider, write_config, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(extra=f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n')
    config.chmod(0o600)
    good = cli("check", config=config, env={"SHOPIFY_UNUSED": "1"})
    assert good.returncode == 0, good.stdout + good.stderr
    assert (
        "secrets: found ([shop] access_token from the config file; [provider] api_key from the config file)"
        in good.stdout
    )
    assert f"database: {tmp_path} is writable" in good.stdout
    assert f"webhooks: ok — http://127.0.0.1:{port}/healthz reaches this machine's server" in good.stdout

    # As the service would run it: a config the dynamic user cannot read, a public URL that leads
    # nowhere, a backup directory that cannot be created (not even by root: /proc takes no
    # directories; one beneath a file is already refused when the config is read).
    elsewhere = free_port()
    broken = write_config(
        "broken.toml", extra=f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{elsewhere}"\n'
    )
    broken.write_text(
        broken.read_text().replace(f'backup_dir = "{tmp_path / "backups"}"', 'backup_dir = "/proc/retouch-backups"')
    )
    broken.chmod(0o600)
    bad = cli("check", config=broken, env={"CONFIGURATION_DIRECTORY": str(tmp_path)})
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "is not readable by other users" in bad.stdout
    assert "backups: cannot write to /proc/retouch-backups" in bad.stdout
    assert f"webhooks: http://127.0.0.1:{elsewhere}/healthz does not reach" in bad.stdout

    # Secrets from credentials are named by where they were found, never shown.
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "shopify_access_token").write_text(SHOP_TOKEN)
    (creds / "provider_api_key").write_text(PROVIDER_KEY)
    from_creds = write_config("creds.toml")
    text = (
        from_creds.read_text()
        .replace(f'access_token = "{SHOP_TOKEN}"\n', "")
        .replace(f'api_key = "{PROVIDER_KEY}"\n', "")
    )
    from_creds.write_text(text)
    answer = cli("check", config=from_creds, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert answer.returncode == 0, answer.stdout
    assert (
        "secrets: found ([shop] access_token from systemd credential shopify_access_token; "
        "[provider] api_key from systemd credential provider_api_key)"
    ) in answer.stdout


def test_resync_beside_a_running_daemon_queues_and_waits_for_it(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    products = shop.seed(products=2, images_per_product=1, seed=35)
    config = write_config()
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(lambda: len(image_states(db)) == 2, 30, what="baseline")
    target = products[0]
    done = cli("resync", "--product", target["legacy_id"], config=config, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"the daemon (pid {run.proc.pid}) runs on this database" in done.stdout
    assert "1 done" in done.stdout
    assert image_states(db)[target["media"][0]["id"]] == "done"
    stats = provider.stats()["keys"][PROVIDER_KEY]
    assert stats["creations"] == 1 and stats["images_charged"] == 1  # one process submitted, once
    assert run.terminate(timeout=10) == 0


def test_a_notify_socket_nobody_reads_never_blocks_the_daemon(tmp_path: Path) -> None:
    sock = NotifySocket()
    sock._closed.set()  # stop reading: the socket's buffer fills up
    sock._thread.join(2)
    try:
        notifier = Notifier(sock.path)
        # A blocking send would hang here once the buffer is full (pytest-timeout would end the test).
        results = [notifier.status(f"{n} queued") for n in range(5000)]
        assert results[0] is True and results[-1] is False  # the overflow is dropped, not waited for
    finally:
        sock.close()
