"""Time to live, and the daemon's service figures (not a test).

    .venv/bin/python bench/time_to_live.py [--samples 5] [--discover-every 10] [--seed 1]

A store with 3 products (their images are already there: new_only = true leaves them alone) and
the daemon idling on the shipped [schedule] (tick 2 s, poll_every unset: the provider's), except
`discover_every` (shipped 5 min; here --discover-every). The provider's limits are set far above
the samples: with the documented 5 jobs an hour, the 4th one-image job of the hour is rightly held
back to be batched with later images (spending a whole job on one image would cost 4 images of
the hour's 25), which is the quota race's subject, not this one's: here each sample is one image
added to an idle daemon with quota to spare.
Then, --samples times, at a random moment of the discovery cycle, a new image is added to a
product, as the merchant would, and the bench waits until the image is `done`: the enhancement
written back to the product and READY. Figure: that time minus the provider's own processing time
(the sandbox's enhancement, created -> completed). Two runs:

  polling   discovery is polled every --discover-every; the provider is polled.
            Target: <= the discovery interval + 2 s.
  webhooks  [server] listen/public_url and shopify_webhook_secret: Shopify's products/create and
            products/update webhooks make the product's discovery immediate, and AI Gen Studio's
            signed webhooks say when the job is done. Target: < 2 s.

Also measured in the same runs: daemon start -> READY=1 (a real NOTIFY_SOCKET datagram socket) and
SIGTERM -> exit. The breakdown (discovered, submitted, job finished, done: from the daemon's JSON
log) says where the time went.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import structlog
from daemon_run import free_port, image_states
from harness import Row, command_line, emit

from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

SHOP_TOKEN = "shpat_bench_shop_token_0003"
APP_SECRET = "shpss_bench_app_secret_0003"  # signs the sandbox's product webhooks
KEY = "aigen_test_bench_key_0123456789abcdef"
SHOPIFY_PROCESSING = 0.3  # seconds Shopify takes to make a new media READY (the sandbox's default)
# Quota to spare (see above); one active job, as documented.
LIMITS = 'window = "1h", jobs = 1000, images = 1000, polls = 10000, active_jobs = 1'


def config_text(shop: ShopifySandbox, provider: AigenSandbox, tmp: Path, *, discover_every: float, extra: str) -> str:
    return f"""
[shop]
url = "{shop.shop_url}"
access_token = "{SHOP_TOKEN}"

[provider]
name = "aigenstudio"
api_key = "{KEY}"
base_url = "{provider.base_url}"

[aigenstudio]
limits = {{ {LIMITS} }}

[writeback]
mode = "replace"
backup_dir = "{tmp / 'backups'}"

[schedule]
discover_every = "{discover_every:g}s"

[storage]
url = "sqlite:///{tmp / 'retouch.db'}"

[log]
level = "debug"
format = "json"
{extra}
"""


def wait(predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def provider_seconds(provider: AigenSandbox) -> dict[str, float]:
    """external_id (the product) -> the latest enhancement's processing time, created -> completed."""
    state = provider._state  # in-process: the sandbox's own record of when it worked
    with state.lock:
        jobs = [j for j in state._enhancements.values() if j.completed_at is not None]
        return {
            item.external_id: j.completed_at - j.created_at
            for j in sorted(jobs, key=lambda j: j.created_at)
            for item in j.payload.images
        }


def log_events(path: Path, media_id: str) -> dict[str, datetime]:
    """The first time the daemon logged each step of one image (or of its job)."""
    events: dict[str, datetime] = {}
    job_id = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
            at = datetime.fromisoformat(event["timestamp"])
        except (ValueError, KeyError):
            continue
        name = event.get("event")
        if event.get("media_id") == media_id:
            if name == "queued":
                events.setdefault("queued", at)
            if event.get("job_id") is not None:
                job_id = event["job_id"]
            if name in ("item_completed", "item_enhanced") or name == "done":
                events.setdefault(name, at)
        elif job_id is not None and event.get("job_id") == job_id and name in ("submitted", "job_finished"):
            events.setdefault(name, at)
    return events


def measure(*, webhooks: bool, samples: int, discover_every: float, rng: random.Random) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="retouch-bench-ttl-"))
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=SHOPIFY_PROCESSING, webhook_secret=APP_SECRET)
    shop_server = shop.start()
    provider = AigenSandbox(jobs_per_window=1000, images_per_window=1000, polls_per_window=10000)
    provider.start()
    daemon = None
    result: dict = {"live": [], "provider": [], "breakdown": []}
    try:
        products = shop.seed(products=3, images_per_product=1, seed=5)
        extra = ""
        if webhooks:
            port = free_port()
            extra = (
                f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
                f'shopify_webhook_secret = "{APP_SECRET}"\n'
            )
        config = tmp / "config.toml"
        config.write_text(config_text(shop, provider, tmp, discover_every=discover_every, extra=extra))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify"))
        notify.settimeout(60)
        log_path = tmp / "daemon.log"
        started = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "retouch.sync", "run", "-c", str(config)],
            env={**os.environ, "NOTIFY_SOCKET": str(tmp / "notify"), "NO_COLOR": "1"},
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
        )
        while notify.recv(4096) != b"READY=1":
            pass
        result["ready"] = time.monotonic() - started
        notify.close()  # from here on nobody reads: the daemon must not care
        db = tmp / "retouch.db"
        wait(lambda: len(image_states(db)) == 3)
        for n in range(samples):
            time.sleep(rng.uniform(0, discover_every))  # anywhere in the discovery cycle
            product = products[n % len(products)]
            added = shop.add_image(product["legacy_id"], filename=f"new-{n}.jpg", alt=f"new {n}")
            added_at = time.monotonic()
            wait(lambda: image_states(db).get(added["id"]) in ("done", "failed"))
            took = time.monotonic() - added_at
            processing = provider_seconds(provider).get(str(product["legacy_id"]), 0.0)
            result["live"].append(took - processing)
            result["provider"].append(processing)
            events = log_events(log_path, added["id"])
            if "queued" in events:
                base = events["queued"]
                result["breakdown"].append({k: (v - base).total_seconds() for k, v in events.items()})
        stop_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        result["exit_code"] = daemon.wait(30)
        result["stop"] = time.monotonic() - stop_at
        result["log"] = str(log_path)
        return result
    finally:
        if daemon is not None and daemon.poll() is None:  # a sample that never finished: no orphan
            daemon.kill()
            daemon.wait(10)
        provider.close()
        shop_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--discover-every", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    command = command_line(
        "bench/time_to_live.py",
        "--samples",
        args.samples,
        "--discover-every",
        f"{args.discover_every:g}",
        "--seed",
        args.seed,
    )
    rng = random.Random(args.seed)
    targets = {"polling": args.discover_every + 2.0, "webhooks": 2.0}
    rows: list[Row] = []
    runs = {}
    for name in ("polling", "webhooks"):
        runs[name] = r = measure(
            webhooks=name == "webhooks", samples=args.samples, discover_every=args.discover_every, rng=rng
        )
        live = r["live"]
        print(
            f"{name}: start->READY {r['ready']:.2f} s; new image -> live minus provider time: "
            f"mean {sum(live) / len(live):.2f} s, max {max(live):.2f} s over {len(live)} "
            f"(provider {sum(r['provider']) / len(r['provider']):.2f} s each); SIGTERM->exit {r['stop']:.2f} s "
            f"(exit {r['exit_code']})",
            flush=True,
        )
        for steps in r["breakdown"]:
            print(
                "   since queued: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(steps.items(), key=lambda kv: kv[1]))
            )
        print(f"   daemon log: {r['log']}")
        target = targets[name]
        rows.append(
            Row(
                "Time to live",
                f"new image -> live, {name} (discover every {args.discover_every:g} s), "
                f"max of {len(live)}, minus provider time",
                max(live),
                "s",
                limit=target,
                limit_kind="ceiling",
                target=f"< {target:g} s" if name == "webhooks" else f"<= {target:g} s",
                met=max(live) < target if name == "webhooks" else max(live) <= target,
                command=command,
            )
        )
    rows.append(Row("Service", "daemon start -> READY=1", runs["polling"]["ready"], "s", command=command))
    rows.append(Row("Service", "SIGTERM -> exit", max(r["stop"] for r in runs.values()), "s", command=command))
    emit(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
