"""Crash anywhere: run the real daemon as a subprocess, `kill -9` it at seeded random moments,
restart it each time, let it drain, then check every promise against what the sandboxes saw.

Used by tests/e2e/test_crash.py (a small store, a few kills) and bench/crash_anywhere.py (200
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
    writes_among_kills: int = 0  # review runs: Shopify writes made before the last start (between kills)

    def count(self, kind: str) -> int:
        """Problems of one kind: "media" (a duplicate or missing write), "charged", "backup"."""
        return sum(kind in problem for problem in self.problems)

    def line(self) -> str:
        return (
            f"{self.images} images, {self.kills} kill -9, drained in {self.seconds:.1f} s: states {self.states}; "
            f"{'every promise held' if not self.problems else 'BROKEN: ' + '; '.join(self.problems)}"
        )


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "retouch.sync", "run", "-c", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("a"),
        env={**os.environ, "NO_COLOR": "1"},
    )


def crash_anywhere(
    tmp: Path,
    shop: ShopifySandbox,
    provider: AigenSandbox,
    *,
    products: int,
    kills: int,
    seed: int,
    mode: str = "replace",
    max_alive: float = 2.5,
    drain_timeout: float = 300,
    limits: str | None = None,
    discover_every: str = "1s",
) -> CrashReport:
    """Seed `products` products of one image each, crash the daemon `kills` times, drain, check."""
    rng = random.Random(seed)
    seeded = shop.seed(products=products, images_per_product=1, seed=seed)
    originals = {p["legacy_id"]: p["media"][0] for p in seeded}
    config = tmp / "config.toml"
    options = {"limits": limits} if limits else {}
    config.write_text(
        config_text(shop, provider, tmp, mode=mode, new_only=False, **options).replace(
            'discover_every = "1s"', f'discover_every = "{discover_every}"'
        )
    )
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
    report = CrashReport(
        images=products,
        kills=kills,
        seconds=seconds,
        originals=originals,
        states={s: list(states.values()).count(s) for s in sorted(set(states.values()))},
    )
    report.problems = check_promises(db, shop, provider, originals, mode)
    report.tracebacks = log.read_text(errors="replace").count("Traceback")
    return report


def check_promises(
    db: Path,
    shop: ShopifySandbox,
    provider: AigenSandbox,
    originals: dict[str, dict],
    mode: str,
    backup_dir: Path | None = None,
) -> list[str]:
    """Broken promises, named. `backup_dir`: where the backups are, if not `backups/` beside the database."""
    problems: list[str] = []
    backup_dir = backup_dir or db.parent / "backups"
    rows = {
        media_id: (state, code, sha)
        for media_id, state, code, sha in db_rows(db, "select media_id, state, error_code, backup_sha256 from image")
    }
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


# ----- two installations on one store (issue 19) ---------------------------------------------------------


@dataclass
class RivalReport:
    images: int
    rival_starts: int
    refused: int  # rival starts that exited non-zero naming the first installation
    kills: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    tracebacks: int = 0

    def line(self) -> str:
        return (
            f"{self.images} images, {self.rival_starts} rival starts ({self.refused} refused), "
            f"{self.kills} kill -9, {self.seconds:.1f} s; "
            f"{'every promise held' if not self.problems else 'BROKEN: ' + '; '.join(self.problems)}"
        )


def _wait_final(db: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = image_states(db)
        if len(states) >= count and set(states.values()) <= FINAL:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not drained: {states}")
        time.sleep(0.2)


def two_installations(
    tmp: Path,
    shop: ShopifySandbox,
    provider: AigenSandbox,
    *,
    products: int,
    rival_starts: int,
    kills: int,
    seed: int,
    mode: str = "replace",
    lease: float = 6.0,
    max_alive: float = 2.5,
    drain_timeout: float = 300,
    limits: str | None = None,
) -> RivalReport:
    """Two installations of retouch (two folders, two databases) on one store.

    1. The home one runs on `products` products; meanwhile a rival is started `rival_starts` times at
       seeded random moments (each must exit non-zero naming the home database), and the home daemon
       is killed with kill -9 `kills` times and restarted at once (its own live claim is taken back:
       its database lock proves the old process gone). It drains.
    2. The home daemon is started and killed with kill -9 while idle; the rival refuses while the
       claim is live, then takes over with `--take-over` once the lease has passed, and enhances
       `products // 2` products added after its first pass.
    Then: every image final, no duplicate or missing media, nothing charged twice, originals kept."""
    rng = random.Random(seed)
    seeded = shop.seed(products=products, images_per_product=1, seed=seed)
    home_dir, rival_dir = tmp / "home", tmp / "rival"
    options = {"limits": limits} if limits else {}
    configs = {}
    for folder, new_only in ((home_dir, False), (rival_dir, True)):
        folder.mkdir(parents=True, exist_ok=True)
        configs[folder] = folder / "config.toml"
        configs[folder].write_text(
            config_text(shop, provider, folder, mode=mode, new_only=new_only, **options)
            + f'\n[claim]\nlease = "{lease:g}s"\n'
        )
    home_db, rival_db = home_dir / "retouch.db", rival_dir / "retouch.db"
    log = tmp / "daemons.log"
    report = RivalReport(
        images=products + products // 2, rival_starts=rival_starts, refused=0, kills=kills, seconds=0.0
    )
    started = time.monotonic()

    def rival_refused(*args: str) -> bool:
        seen = len(log.read_text(errors="replace")) if log.exists() else 0
        rival = _start(configs[rival_dir], log, *args)
        try:
            status = rival.wait(30)
        except subprocess.TimeoutExpired:
            rival.kill()
            rival.wait(10)
            report.problems.append("a rival retouch ran beside the home one")
            return False
        said = log.read_text(errors="replace")[seen:]  # (the home daemon writes here too; it names no "database …")
        if status == 0 or f"database {home_db}" not in said:
            report.problems.append(f"a rival start exited {status} without naming the home database")
            return False
        return True

    home = _start(configs[home_dir], log)
    moments = sorted(
        [("rival", rng.uniform(0.2, max_alive)) for _ in range(rival_starts)]
        + [("kill", rng.uniform(0.2, max_alive)) for _ in range(kills)],
        key=lambda m: m[1],
    )
    for what, _ in moments:
        time.sleep(rng.uniform(0.05, max_alive))  # anywhere: start-up, claim, discovery, submit, poll, write
        if what == "rival":
            report.refused += rival_refused()
        else:
            home.kill()
            home.wait(10)
            home = _start(configs[home_dir], log)
    try:
        _wait_final(home_db, products, drain_timeout)
    finally:
        home.terminate()
        home.wait(15)

    # The home installation dies while idle: the rival must wait for the lease, then may take over.
    home = _start(configs[home_dir], log)
    time.sleep(max_alive + 2.0)
    home.kill()
    home.wait(10)
    report.kills += 1
    died = time.monotonic()
    report.rival_starts += 1
    report.refused += rival_refused("--take-over")  # live: never taken over
    time.sleep(max(0.0, died + lease + 1.0 - time.monotonic()))
    rival = _start(configs[rival_dir], log, "--take-over")
    try:
        deadline = time.monotonic() + 60
        while not _baseline_recorded(rival_db):
            if rival.poll() is not None or time.monotonic() > deadline:
                report.problems.append(f"the take-over did not start (exit {rival.poll()})")
                break
            time.sleep(0.2)
        later = shop.seed(products=products // 2, images_per_product=1, seed=seed + 1000)
        if rival.poll() is None:
            _wait_final(rival_db, len(later), drain_timeout)
    finally:
        rival.terminate()
        rival.wait(15)
    report.seconds = time.monotonic() - started
    report.problems += check_promises(home_db, shop, provider, {p["legacy_id"]: p["media"][0] for p in seeded}, mode)
    report.problems += check_promises(rival_db, shop, provider, {p["legacy_id"]: p["media"][0] for p in later}, mode)
    report.tracebacks = log.read_text(errors="replace").count("Traceback")
    return report


def _baseline_recorded(db: Path) -> bool:
    try:
        return bool(db.exists() and db_rows(db, "select value from meta where key = 'baseline_recorded'"))
    except Exception:
        return False


# ----- review before publish (issue 22) ---------------------------------------------------------------------------


def crash_with_review(
    tmp: Path,
    shop: ShopifySandbox,
    provider: AigenSandbox,
    *,
    products: int,
    kills: int,
    seed: int,
    max_alive: float = 2.5,
    drain_timeout: float = 300,
) -> CrashReport:
    """`crash_anywhere` with `[review] mode = "all"`. The owner decides on the results waiting (the images
    of even-numbered products approved, the others rejected) through sync/review.py, as the CLI and the
    web page do, a seeded few at a time. The first half of the kills come at random moments (start-up,
    discovery, the job); each of the others waits for results to be waiting, decides on some, then kills
    at a random moment soon after (before, during or after the approved one's write) or the moment an
    approved image records its write intent. Then every result is decided and the daemon drains.
    `check_review_promises` holds the sandbox's write log against the approvals, besides `check_promises`."""
    rng = random.Random(seed)
    seeded = shop.seed(products=products, images_per_product=1, seed=seed)
    originals = {p["legacy_id"]: p["media"][0] for p in seeded}
    approve_media = {p["media"][0]["id"] for n, p in enumerate(seeded) if n % 2 == 0}
    config = tmp / "config.toml"
    config.write_text(config_text(shop, provider, tmp, new_only=False, extra='\n[review]\nmode = "all"\n'))
    db, log = tmp / "retouch.db", tmp / "daemon.log"

    def waiting() -> list[tuple[int, str]]:
        try:
            return db_rows(db, "select id, media_id from image where state = 'awaiting_review' order by id")
        except Exception:  # not created yet
            return []

    def decide(most: int | None = None) -> None:
        """The owner's decisions on (some of) what waits now; a CLI beside the daemon does the same."""
        from retouch.storage.store import Store
        from retouch.sync import review

        chosen = waiting()
        if most is not None:
            chosen = rng.sample(chosen, min(most, len(chosen)))
        if not chosen:
            return
        store = Store(f"sqlite:///{db}")
        try:
            review.approve(store, [i for i, media in chosen if media in approve_media], now=time.time())
            review.reject(
                store,
                [i for i, media in chosen if media not in approve_media],
                reason="not good enough",
                now=time.time(),
            )
        finally:
            store.close()

    def wait_until(condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    def writing() -> bool:
        return bool(
            db.exists()
            and db_rows(
                db,
                "select 1 from image where approved_at is not null and "
                "write_source is not null and state = 'backed_up'",
            )
        )

    started = time.monotonic()
    for n in range(kills):
        daemon = _start(config, log)
        if n < kills // 2:
            time.sleep(rng.uniform(0.05, max_alive))  # anywhere: start-up, discovery, submit, poll
        else:
            wait_until(lambda: bool(waiting()), 60)
            decide(most=rng.randint(1, 2))
            if n % 2:
                wait_until(writing, 5)  # the moment an approved result's write intent is recorded
            else:
                time.sleep(rng.uniform(0.0, max_alive))  # before, during or after the write
        daemon.kill()
        daemon.wait(10)
    written_among_kills = len(shop.writes())
    daemon = _start(config, log)
    try:
        deadline = time.monotonic() + drain_timeout
        while True:
            decide()
            states = image_states(db)
            if len(states) == products and set(states.values()) <= FINAL | {"rejected"}:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"not drained: {states}")
            time.sleep(0.3)
    finally:
        daemon.terminate()
        daemon.wait(15)
    states = image_states(db)
    report = CrashReport(
        images=products,
        kills=kills,
        seconds=time.monotonic() - started,
        originals=originals,
        states={s: list(states.values()).count(s) for s in sorted(set(states.values()))},
    )
    report.problems = check_promises(db, shop, provider, originals, "replace") + check_review_promises(
        db, shop, originals, shop.writes()
    )
    report.tracebacks = log.read_text(errors="replace").count("Traceback")
    report.writes_among_kills = written_among_kills
    return report


def check_review_promises(db: Path, shop: ShopifySandbox, originals: dict[str, dict], writes: list[dict]) -> list[str]:
    """With review on: every Shopify write (the sandbox's log: fileUpdate, productUpdate adding media)
    carries a result that was approved before the write, byte for byte the one kept for review; a
    rejected image's original is untouched; an approved one shows its kept result."""
    problems: list[str] = []
    rows = {
        int(media_id.rsplit("/", 1)[-1]): (media_id, state, sha, approved_at)
        for media_id, state, sha, approved_at in db_rows(
            db, "select media_id, state, result_sha256, approved_at from image"
        )
    }
    for write in writes:
        media_id, state, sha, approved_at = rows.get(write["media_id"], (write["media_id"], None, None, None))
        if approved_at is None or write["at"] < approved_at:
            problems.append(f"{media_id}: a {write['operation']} wrote a result not approved at the time")
        elif write["sha256"] != sha:
            problems.append(f"{media_id}: a {write['operation']} wrote other bytes than the approved result")
    for legacy_id, original in originals.items():
        now = {m["id"]: m for m in shop.product(legacy_id)["media"]}.get(original["id"])
        media_id, state, sha, _ = rows.get(int(original["id"].rsplit("/", 1)[-1]), (original["id"], None, None, None))
        if state == "rejected" and (now is None or now["sha256"] != original["sha256"]):
            problems.append(f"{media_id} rejected but its original was changed")
        if state == "done" and (now is None or now["sha256"] != sha):
            problems.append(f"{media_id} done but the store does not show its approved result")
    return problems
