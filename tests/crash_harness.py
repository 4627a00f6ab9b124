"""Crash anywhere: run the real daemon as a subprocess, `kill -9` it at seeded random moments,
restart it each time, let it drain, then check every promise against what the sandboxes saw.

Used by tests/test_crash.py (a small store, a few kills) and bench/crash_anywhere.py (200
images, 25+ kills, printed figures).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import PROVIDER_KEY, config_text, db_rows, image_states
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

FINAL = {"done", "failed", "skipped"}


@dataclass
class CrashReport:
    images: int
    kills: int
    states: dict[str, int]
    seconds: float
    problems: list[str] = field(default_factory=list)
    originals: dict[str, dict] = field(default_factory=dict, repr=False)  # legacy id -> seeded media
    tracebacks: int = 0  # in the daemon's log: a crash of its own, not one of our kills

    def count(self, kind: str) -> int:
        """Problems of one kind: "media" (a duplicate or missing write), "charged", "backup"."""
        return sum(kind in problem for problem in self.problems)

    def line(self) -> str:
        return (f"{self.images} images, {self.kills} kill -9, drained in {self.seconds:.1f} s: states {self.states}; "
                f"{'every promise held' if not self.problems else 'BROKEN: ' + '; '.join(self.problems)}")


def _start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "retouch.sync", "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log.open("a"), env={**os.environ, "NO_COLOR": "1"})


def crash_anywhere(tmp: Path, shop: ShopifySandbox, provider: AigenSandbox, *, products: int, kills: int,
                   seed: int, mode: str = "replace", max_alive: float = 2.5, drain_timeout: float = 300,
                   limits: str | None = None, discover_every: str = "1s") -> CrashReport:
    """Seed `products` products of one image each, crash the daemon `kills` times, drain, check."""
    rng = random.Random(seed)
    seeded = shop.seed(products=products, images_per_product=1, seed=seed)
    originals = {p["legacy_id"]: p["media"][0] for p in seeded}
    config = tmp / "config.toml"
    options = {"limits": limits} if limits else {}
    config.write_text(config_text(shop, provider, tmp, mode=mode, new_only=False, **options)
                      .replace('discover_every = "1s"', f'discover_every = "{discover_every}"'))
    db, log = tmp / "retouch.db", tmp / "daemon.log"
    started = time.monotonic()
    for _ in range(kills):
        daemon = _start(config, log)
        time.sleep(rng.uniform(0.05, max_alive))  # anywhere: start-up, discovery, submit, poll, write
        daemon.kill()
        daemon.wait(10)
    daemon = _start(config, log)
    try:
        deadline = time.monotonic() + drain_timeout
        while True:
            states = image_states(db)
            if len(states) == products and set(states.values()) <= FINAL:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"not drained: {states}")
            time.sleep(0.2)
    finally:
        daemon.terminate()
        daemon.wait(15)
    seconds = time.monotonic() - started
    states = image_states(db)
    report = CrashReport(images=products, kills=kills, seconds=seconds, originals=originals,
                         states={s: list(states.values()).count(s) for s in sorted(set(states.values()))})
    report.problems = check_promises(db, shop, provider, originals, mode)
    report.tracebacks = log.read_text(errors="replace").count("Traceback")
    return report


def check_promises(db: Path, shop: ShopifySandbox, provider: AigenSandbox, originals: dict[str, dict],
                   mode: str, backup_dir: Path | None = None) -> list[str]:
    """Broken promises, named. `backup_dir`: where the backups are, if not `backups/` beside the database."""
    problems: list[str] = []
    backup_dir = backup_dir or db.parent / "backups"
    rows = {media_id: (state, code, sha) for media_id, state, code, sha in db_rows(
        db, "select media_id, state, error_code, backup_sha256 from image")}
    stats = provider.stats()["keys"].get(PROVIDER_KEY, {})
    charged_per_product = stats.get("images_by_external_id", {})
    for legacy_id, original in originals.items():
        media = shop.product(legacy_id)["media"]
        state, code, sha = rows.get(original["id"], (None, None, None))
        if state == "failed" and not code:
            problems.append(f"{original['id']} failed without a reason")
        expected = 2 if mode == "append" and state == "done" else 1
        if len(media) != expected:
            problems.append(f"product {legacy_id} has {len(media)} media, expected {expected}")
        if charged_per_product.get(str(legacy_id), 0) > 1:
            problems.append(f"product {legacy_id}'s image charged {charged_per_product[str(legacy_id)]} times")
        if state == "done":
            # The original is kept, byte for byte, before anything in Shopify changed.
            if sha != original["sha256"]:
                problems.append(f"{original['id']} done but its backup is not the original")
            elif not (backup_dir / sha[:2] / sha).exists():
                problems.append(f"{original['id']} done but its backup file is missing")
    for key, count in stats.get("charged_per_idempotency_key", {}).items():
        if count > 20:
            problems.append(f"idempotency key {key} charged for {count} images")
    return problems
