"""Service figures of the daemon as systemd runs it, from one run each (not a test):

    start -> READY=1, new image -> done (polling vs AI Gen Studio webhooks), SIGTERM -> exit

    .venv/bin/python bench/service_latency.py

Runs the real `retouch run` subprocess against both sandboxes on loopback with `poll_every = 30s`
(the shipped default) and a real datagram socket as NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import SHOP_TOKEN, config_text, image_states  # noqa: E402

from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox  # noqa: E402
from retouch.plugin.shopify.sandbox import ShopifySandbox  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.02)


def measure(webhooks: bool) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="retouch-bench-"))
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    shop_server = shop.start()
    provider = AigenSandbox()
    provider.start()
    try:
        products = shop.seed(products=3, images_per_product=1, seed=5)
        port = free_port()
        extra = (f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
                 if webhooks else "")
        config = tmp / "config.toml"
        config.write_text(config_text(shop, provider, tmp, extra=extra).replace('poll_every = "0.3s"',
                                                                                'poll_every = "30s"'))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify"))
        notify.settimeout(60)
        started = time.monotonic()
        daemon = subprocess.Popen([sys.executable, "-m", "retouch.sync", "run", "-c", str(config)],
                                  env={**os.environ, "NOTIFY_SOCKET": str(tmp / "notify")},
                                  stdout=subprocess.DEVNULL, stderr=(tmp / "daemon.log").open("w"))
        while notify.recv(4096) != b"READY=1":
            pass
        ready = time.monotonic() - started
        notify.close()  # from here on nobody reads: the daemon must not care
        db = tmp / "retouch.db"
        wait(lambda: len(image_states(db)) == 3)
        added = shop.add_image(products[0]["legacy_id"], filename="new.jpg", alt="new")
        added_at = time.monotonic()
        wait(lambda: image_states(db).get(added["id"]) == "done")
        to_done = time.monotonic() - added_at
        stop_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
        stopped = time.monotonic() - stop_at
        return (f"{'webhooks' if webhooks else 'polling '}: start->READY {ready:.2f} s, new image->done "
                f"{to_done:.2f} s, SIGTERM->exit {stopped:.2f} s (exit {code})")
    finally:
        provider.close()
        shop_server.stop()


if __name__ == "__main__":
    for use_webhooks in (False, True):
        print(measure(use_webhooks), flush=True)
