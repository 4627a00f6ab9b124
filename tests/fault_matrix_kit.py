"""The fault matrix's parts, shared by tests/integration/test_fault_matrix.py and bench/fault_matrix.py.

A *service* is one sandbox under fault (Shopify, or one provider); a *kind* is one fault of the
shared language (sandbox_kit/faults.py). `plan_faults` turns (service, kind) into faults
spread over the service's endpoints; `run_pipeline` drives the real pipeline in-process until every
image settles; `broken_promises` checks what a store owner is promised and names what broke.
Pure checks (`broken_promises`) are kept apart from I/O (the sandboxes, the pipeline).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from structlog.testing import capture_logs

# The client timeout is longer than a stalled CI machine can hold up an answer (ProductAI's submit
# is not retried: a needless timeout there fails the image), and a hang outlasts it by as much.
HANG_SECONDS = 8.0  # beyond the client timeout the matrix configures
CLIENT_TIMEOUT = "5s"  # long enough for a loaded machine: only a hang outlasts it
TICK = "0.1s"  # the scheduler's tick and the shortest poll interval: fast sandboxes, fast runs
ANSWER_KINDS = ("503", "429", "429+retry-after", "reset", "truncated", "non_json", "wrong_shape", "hang")
WEBHOOK_KINDS = ("duplicate", "late")

# Each service: the endpoints its faults go to (the paid/state-changing ones first), and the kinds
# it offers beyond the shared answer kinds.
ENDPOINTS = {
    "shopify": ("graphql",),
    "aigenstudio": ("create", "status"),
    "imagen": (
        "create_project",
        "upload_links",
        "upload",
        "edit",
        "edit_status",
        "edit_links",
        "export",
        "export_status",
        "export_links",
        "download",
    ),
    "productai": ("generate", "job"),
}
EXTRA_KINDS = {
    "shopify": ("throttled", "media_failed"),
    "aigenstudio": ("drop_response", "fail", *WEBHOOK_KINDS),
    "imagen": ("drop_response", "fail", *WEBHOOK_KINDS),
    "productai": ("drop_response", "fail", *WEBHOOK_KINDS),
}
SUITE_NAMES = {"shopify": "Shopify", "aigenstudio": "AI Gen Studio", "imagen": "Imagen AI", "productai": "ProductAI"}


def kinds_of(service: str) -> tuple[str, ...]:
    return (*ANSWER_KINDS, *EXTRA_KINDS[service])


def fault_fields(kind: str) -> dict[str, Any]:
    """The shared fault language's fields for `kind`."""
    if kind == "429+retry-after":
        return {"status": 429, "retry_after": 1}
    if kind.isdigit():
        return {"status": int(kind)}
    if kind == "hang":
        return {"mode": "hang", "seconds": HANG_SECONDS}
    if kind == "late":
        return {"mode": "late", "seconds": 1.0}
    return {"mode": kind}


def plan_faults(
    sandbox: Any,
    service: str,
    kind: str,
    *,
    count: int = 1,
    probability: float = 1.0,
    endpoints: tuple[str, ...] | None = None,
) -> None:
    """Put `kind` on the service's endpoints (all, or these): `count` faults each (at `probability`);
    on Shopify spread by `skip` so that later requests (a write-back after discovery) meet them too."""
    fields = fault_fields(kind)
    if service == "shopify":
        if kind == "media_failed":
            sandbox.add_fault(fail_media_processing=count, probability=probability)
        elif kind == "throttled":
            sandbox.add_fault(throttle=True, count=count, probability=probability)
        elif probability < 1:  # a rate: it spreads over the run by itself
            sandbox.add_fault(**fields, count=count, probability=probability)
        else:
            for skip in range(0, 4 * count, 4):  # one every few GraphQL requests, over the whole run
                sandbox.add_fault(**fields, skip=skip)
        return
    if kind in WEBHOOK_KINDS:
        sandbox.add_fault("webhook", **fields, count=count, probability=probability)
        return
    applies = sandbox.faults.modes.get(fields.get("mode"), ENDPOINTS[service])
    chosen = [e for e in endpoints or ENDPOINTS[service] if e in applies]
    # a mode for a few endpoints only (drop_response, fail) goes to those, whatever was chosen
    for endpoint in chosen or [e for e in ENDPOINTS[service] if e in applies]:
        sandbox.add_fault(endpoint, **fields, count=count, probability=probability)


def faults_served(sandbox: Any, service: str) -> dict[str, int]:
    """The sandbox's own count of the faults it injected, by kind."""
    return sandbox.faults_served() if service == "shopify" else sandbox.faults.served()


def matrix_config(text: str, *, webhooks_url: str | None = None) -> str:
    """A pipeline config made for faults: short client timeouts (a hang outlasts them), fast polls,
    and, for webhook kinds, the daemon's server with webhooks as the only prompt to poll."""
    text = text.replace('timeout = "5s"', f'timeout = "{CLIENT_TIMEOUT}"')
    text = text.replace("[shop]\n", f'[shop]\ntimeout = "{CLIENT_TIMEOUT}"\n', 1)
    text = text.replace('tick = "0.2s"', f'tick = "{TICK}"').replace('first_poll = "0.3s"', f'first_poll = "{TICK}"')
    text = text.replace('poll_every = "0.3s"\n', "").replace('discover_every = "1s"', 'discover_every = "0.3s"')
    text = text.replace("[schedule]\n", f'[schedule]\npoll_every = "{TICK}"\n', 1)
    if webhooks_url:
        text += f'\n[server]\nlisten = "{webhooks_url[7:]}"\npublic_url = "{webhooks_url}"\nsafety_poll_every = "1h"\n'
    return text


# --- one service's world ------------------------------------------------------------------------------

PAI_WINDOW = 6.0  # ProductAI's budget window, short in the sandbox and in [productai]: no retry waits a minute
PAI_REQUESTS = 60  # per window, in both: faults make retries, retries spend the budget
# AI Gen Studio's quota window, short for the same reason: a 429 without Retry-After waits a job's
# share of the window (here 1 s; with the default hour, 12 minutes). The same quotas in both.
AIGEN_WINDOW, AIGEN_JOBS, AIGEN_IMAGES, AIGEN_POLLS = 10, 10, 200, 400


@dataclass
class World:
    """One service under fault: its store, the sandbox the faults go to, the one that charges."""

    service: str
    shop: Any
    faulty: Any
    charged: Any
    settings: Any
    originals: dict[str, dict]
    original_bytes: dict[str, bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def started(stack: ExitStack, sandbox: Any) -> Any:
    server = sandbox.start()
    stack.callback(server.stop)
    return sandbox


def build_world(stack: ExitStack, service: str, home: Path, *, products: int, seed: int, webhooks: bool) -> World:
    """Sandboxes as fast as they go (the faults, not their pace, set the time), a config made for
    faults, `products` products with a new image each; no fault yet. "shopify" is a store under
    fault with AI Gen Studio behind it."""
    from conftest import (
        IMAGEN_KEY,
        IMAGEN_TABLE,
        PRODUCTAI_KEY,
        PRODUCTAI_TABLE,
        SHOP_TOKEN,
        config_text,
        provider_config_text,
    )
    from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
    from retouch.plugin.providers.base import webhook_token
    from retouch.plugin.providers.imagen.sandbox import ImagenSandbox
    from retouch.plugin.providers.productai.sandbox import ProductAISandbox
    from retouch.plugin.shopify.sandbox import ShopifySandbox
    from retouch.sync.config import load_settings

    shop = started(stack, ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.05, restore_rate=2000))
    if service in ("shopify", "aigenstudio"):
        charged = started(
            stack,
            AigenSandbox(
                window_seconds=AIGEN_WINDOW,
                jobs_per_window=AIGEN_JOBS,
                images_per_window=AIGEN_IMAGES,
                polls_per_window=AIGEN_POLLS,
                seconds_per_item=0.05,
            ),
        )
        limits = (
            f'window = "{AIGEN_WINDOW}s", jobs = {AIGEN_JOBS}, images = {AIGEN_IMAGES}, '
            f'polls = {AIGEN_POLLS}, active_jobs = 1'
        )
        text = config_text(shop, charged, home, new_only=False, limits=limits)
    elif service == "imagen":
        charged = started(
            stack,
            ImagenSandbox(api_keys=(IMAGEN_KEY,), edit_pending_seconds=0.05, edit_seconds=0.15, export_seconds=0.1),
        )
        text = provider_config_text(
            shop,
            home,
            provider="imagen",
            base_url=charged.api_url,
            api_key=IMAGEN_KEY,
            table=IMAGEN_TABLE,
            new_only=False,
        )
    else:
        charged = started(
            stack,
            ProductAISandbox(
                keys={PRODUCTAI_KEY: 10_000_000},
                job_seconds=0.1,
                rate_limit_scope="key",
                window_seconds=PAI_WINDOW,
                requests_per_window=PAI_REQUESTS,
            ),
        )
        table = PRODUCTAI_TABLE.replace("requests_per_minute = 15", f"requests_per_minute = {PAI_REQUESTS}")
        text = provider_config_text(
            shop,
            home,
            provider="productai",
            base_url=charged.base_url,
            api_key=PRODUCTAI_KEY,
            new_only=False,
            table=table + f'window = "{PAI_WINDOW:g}s"\n',
        )
    webhooks_url = f"http://127.0.0.1:{free_port()}" if webhooks else None
    if service == "productai" and webhooks_url:  # ProductAI's webhook is the account's, set in its dashboard
        charged.set_webhook(PRODUCTAI_KEY, f"{webhooks_url}/webhooks/productai/{webhook_token(PRODUCTAI_KEY)}")
    path = home / "config.toml"
    path.write_text(matrix_config(text, webhooks_url=webhooks_url))
    faulty = shop if service == "shopify" else charged
    originals, original_bytes = seed_store(shop, products=products, seed=seed)
    return World(service, shop, faulty, charged, load_settings(path), originals, original_bytes)


# --- driving the pipeline ----------------------------------------------------------------------------


async def settle(settings: Any, *, timeout: float, label: str = "") -> None:
    """Run the daemon in-process (its scheduler and steps; its HTTP server when the config has one,
    receiving the sandboxes' webhooks) until every image is discovered and none is on its way.
    Its log events carry `world=label`; a step that raises anything but a Shopify error logs
    `step_crashed` (see `broken_promises`)."""
    from retouch.storage.models import PENDING_STATES
    from retouch.sync.commands.run import _server
    from retouch.sync.runtime import open_context
    from retouch.sync.scheduler import Daemon

    structlog.contextvars.bind_contextvars(world=label)  # this task's context only
    async with open_context(settings) as ctx:
        daemon = Daemon(ctx)
        server = _server(settings, ctx, daemon) if settings.server.listen else None
        task = asyncio.create_task(daemon.run(server=server))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not (ctx.store.counts_by_state() and not ctx.store.images_in_state(*PENDING_STATES)):
                if task.done() or loop.time() > deadline:
                    raise AssertionError(f"{label} not settled in {timeout} s: {ctx.store.counts_by_state()}")
                await asyncio.sleep(0.05)
        finally:
            daemon.stopping.set()
            await asyncio.wait_for(task, 30)


async def settle_all(worlds: dict[str, Any], *, timeout: float, at_once: int = 8) -> dict[str, list[dict]]:
    """`settle` several daemons side by side, `at_once` at a time (each with its own store, database
    and provider). Returns each one's log events, by label (what went wrong there: a daemon that did
    not settle is reported as a `not_settled` event of its own, not raised)."""
    gate = asyncio.Semaphore(at_once)

    async def one(label: str, settings: Any) -> None:
        async with gate:
            try:
                await settle(settings, timeout=timeout, label=label)
            except AssertionError as exc:
                structlog.get_logger().error("not_settled", world=label, reason=str(exc))

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        await asyncio.gather(*(one(label, settings) for label, settings in worlds.items()))
    by_world: dict[str, list[dict]] = {label: [] for label in worlds}
    for event in events:
        by_world.setdefault(event.get("world", ""), []).append(event)
    return by_world


# --- the promises ------------------------------------------------------------------------------------


@dataclass
class Findings:
    """What one run broke, counted as bench/proof.py's ProofRow counts it."""

    images: int = 0
    duplicates: int = 0
    double_charges: int = 0
    originals_lost: int = 0
    crashes: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: "Findings") -> None:
        for name in ("images", "duplicates", "double_charges", "originals_lost", "crashes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems


def charges_per_image(sandbox: Any, service: str) -> dict[str, int]:
    """How many times the provider charged each image (by whatever names one image there)."""
    stats = sandbox.stats()
    if service in ("shopify", "aigenstudio"):
        # one new image per product: the product id (AI Gen Studio's external_id) names the image
        return {k: v for record in stats["keys"].values() for k, v in record["images_by_external_id"].items()}
    if service == "imagen":
        return stats["charges_per_file_name"]
    return {k: v for record in stats["keys"].values() for k, v in record["jobs_by_image_url"].items()}


def image_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [
            dict(row)
            for row in conn.execute(
                "select media_id, product_id, state, error_code, error_message, backup_sha256 from image"
            )
        ]


def reasons(rows: list[dict]) -> list[str]:
    """One line per image that is not done: its state and reason (for assertion messages)."""
    return [f"{r['state']}: {r['error_code']}: {r['error_message']}" for r in rows if r["state"] != "done"]


def broken_promises(
    *,
    originals: dict[str, dict],
    rows: list[dict],
    media_now: dict[str, list[dict]],
    charges: dict[str, int],
    backups: Callable[[str], bytes | None],
    original_bytes: dict[str, bytes],
    events: list[dict],
) -> Findings:
    """Pure: every promise checked against what the run left behind.

    originals: media id -> the media as seeded; rows: the image table; media_now: product id -> its
    media now; charges: image -> times charged; backups(sha) -> the stored backup's bytes."""
    found = Findings(images=len(originals))
    by_media = {row["media_id"]: row for row in rows}
    for media_id, media in originals.items():
        row = by_media.get(media_id)
        if row is None:
            found.problems.append(f"{media_id} lost: not tracked")
            continue
        if row["state"] != "done" and not (row["error_code"] and row["error_message"]):
            found.problems.append(f"{media_id} ended {row['state']} without a reason")
        now = next((m for m in media_now.get(media["product_id"], []) if m["id"] == media_id), None)
        changed = now is None or now["sha256"] != media["sha256"]
        if changed or row["state"] == "done":
            kept = backups(row["backup_sha256"]) if row["backup_sha256"] else None
            if kept != original_bytes[media_id]:
                found.originals_lost += 1
    for product_id, media in media_now.items():
        seeded = sum(1 for m in originals.values() if m["product_id"] == product_id)
        found.duplicates += max(0, len(media) - seeded)  # replace mode: the product keeps its count
    found.double_charges = sum(times - 1 for times in charges.values() if times > 1)
    found.crashes = sum(1 for e in events if e.get("event") == "step_crashed" or e.get("log_level") == "critical")
    found.problems += [e["reason"] for e in events if e.get("event") == "not_settled"]
    return found


def check_run(
    shop: Any,
    sandbox: Any,
    service: str,
    settings: Any,
    originals: dict[str, dict],
    original_bytes: dict[str, bytes],
    events: list[dict],
) -> Findings:
    """Gather what the run left (database, backups, the store, the provider's charges) and check it."""
    backup_dir = Path(settings.backup_dir)

    def backup(sha: str) -> bytes | None:
        path = backup_dir / sha[:2] / sha
        return path.read_bytes() if path.exists() else None

    products = {m["product_id"] for m in originals.values()}
    media_now = {p: shop.product(p.rsplit("/", 1)[-1])["media"] for p in products}
    return broken_promises(
        originals=originals,
        rows=image_rows(settings.database_path),
        media_now=media_now,
        charges=charges_per_image(sandbox, service),
        backups=backup,
        original_bytes=original_bytes,
        events=events,
    )


def seed_store(shop: Any, products: int, seed: int) -> tuple[dict[str, dict], dict[str, bytes]]:
    """`products` products with one image each: (media id -> media, media id -> its bytes)."""
    seeded = shop.seed(products=products, images_per_product=1, seed=seed)
    originals = {m["id"]: m for p in seeded for m in p["media"]}
    data = {media_id: shop.media_bytes(media_id.rsplit("/", 1)[-1]) for media_id in originals}
    assert all(hashlib.sha256(d).hexdigest() == originals[m]["sha256"] for m, d in data.items())
    return originals, data
