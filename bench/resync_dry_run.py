"""`retouch resync --all --dry-run` on a 100,000-product / 300,000-media store (not a test; not in run.py).

    .venv/bin/python bench/resync_dry_run.py [--products 100000] [--images 3] [--restore-rate 100]

The Shopify sandbox runs in a child process with Shopify Standard's limits (bucket 2000, restore 100
points/s), seeded with the catalog; no database exists yet (a first run). Printed: the command's wall
time and peak RSS (GNU time's %e and %M: its own, as /usr/bin/time forks it from a small process),
the Shopify operations it sent, and what it printed. The plan must start no bulk operation and write
no file.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shopify_catalog import TOKEN, _config, _serve  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--restore-rate", type=float, default=100.0)
    args = parser.parse_args()
    from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox

    context = mp.get_context("spawn")
    answers, stop = context.Queue(), context.Event()
    child = context.Process(
        target=_serve, args=(args.products, args.images, args.restore_rate, answers, stop), daemon=True
    )
    child.start()
    provider = AigenSandbox(window_seconds=3600)
    provider_server = provider.start()
    try:
        info = answers.get(timeout=900)
        print(f"seeded {info['products']:,} products / {info['media']:,} media in {info['seed_seconds']:.1f} s")
        tmp = Path(tempfile.mkdtemp(prefix="retouch-dry-run-"))
        config = _config(info["url"], provider.base_url, tmp)
        before = sorted(p.name for p in tmp.iterdir())
        command = [
            "/usr/bin/time",
            "-f",
            "measured: %e s wall, %M KiB peak RSS, %U s user, %S s sys",
            sys.executable,
            "-m",
            "retouch.sync",
            "resync",
            "--all",
            "--dry-run",
            "-c",
            str(config),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=900)
        out, err = done.stdout, done.stderr
        stats = httpx.get(f"{info['url']}/_sandbox/stats", timeout=60, headers={"X-Shopify-Access-Token": TOKEN}).json()
        after = sorted(p.name for p in tmp.iterdir())
    finally:
        stop.set()
        provider_server.stop()
        child.join(30)
    print(out + err)
    print(f"exit {done.returncode}")
    print(f"Shopify operations: {stats.get('operations')}")
    print(f"files before {before}, after {after}")
    return 0 if "BulkProductsRun" not in stats.get("operations", {}) and before == after else 1


if __name__ == "__main__":
    sys.exit(main())
