"""Every sandbox x every fault kind, through the real pipeline: the store owner's promises hold.

One case per (service, kind): Shopify (with AI Gen Studio behind it) and each provider, each kind
the service offers. Every case gets its own store with two new images, the fault on its endpoints
(spread over the run with `skip` on Shopify), and its own real daemon (its scheduler and steps, and
for webhook faults its HTTP server receiving the sandbox's webhooks) run in-process until nothing
is pending. The daemons run side by side, a few at a time, once for the module (the cases wait on
faults, not on the CPU); each test then checks its own case: every image is done or keeps its
state with a reason, no step crashed, the provider charged each image at most once, no product
gained a media, every replaced original is in the backup store byte for byte, and the sandbox
really injected the fault.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import (IMAGEN_KEY, IMAGEN_TABLE, PRODUCTAI_KEY, PRODUCTAI_TABLE, SHOP_TOKEN, config_text,
                      provider_config_text, run_async)
from fault_matrix_kit import (ENDPOINTS, WEBHOOK_KINDS, check_run, faults_served, image_rows, kinds_of, matrix_config,
                              plan_faults, reasons, seed_store, settle_all)
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.providers.base import webhook_token
from retouch.plugin.providers.imagen.sandbox import ImagenSandbox
from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.sync.config import load_settings

SERVICES = ("shopify", "aigenstudio", "imagen", "productai")
CASES = [(service, kind) for service in SERVICES for kind in kinds_of(service)]
PAI_WINDOW = 6.0  # ProductAI's budget window, short in the sandbox and in [productai]: no retry waits a minute
# AI Gen Studio's quota window, short for the same reason: a 429 without Retry-After waits a
# job's share of the window (here 2 s; with the default hour, 12 minutes).
AIGEN_LIMITS = 'window = "10s", jobs = 5, images = 25, polls = 120, active_jobs = 1'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class World:
    """One service under fault: its store, the sandbox the faults go to, the one that charges."""

    service: str
    shop: ShopifySandbox
    faulty: Any
    charged: Any
    settings: Any
    originals: dict[str, dict]
    original_bytes: dict[str, bytes]


def started(stack: ExitStack, sandbox: Any) -> Any:
    server = sandbox.start()
    stack.callback(server.stop)
    return sandbox


def build_world(stack: ExitStack, service: str, kind: str, tmp_path: Path) -> World:
    """Sandboxes as fast as they go (the faults, not their pace, set the time), a config made for
    faults, two products with a new image each, and the fault planned."""
    home = tmp_path / service
    home.mkdir()
    shop = started(stack, ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.05, restore_rate=2000))
    if service in ("shopify", "aigenstudio"):
        charged = started(stack, AigenSandbox(window_seconds=10, seconds_per_item=0.05))
        text = config_text(shop, charged, home, new_only=False, limits=AIGEN_LIMITS)
    elif service == "imagen":
        charged = started(stack, ImagenSandbox(api_keys=(IMAGEN_KEY,), edit_pending_seconds=0.05,
                                               edit_seconds=0.15, export_seconds=0.1))
        text = provider_config_text(shop, home, provider="imagen", base_url=charged.api_url, api_key=IMAGEN_KEY,
                                    table=IMAGEN_TABLE, new_only=False)
    else:
        charged = started(stack, ProductAISandbox(keys={PRODUCTAI_KEY: 100_000}, job_seconds=0.1,
                                                  rate_limit_scope="key", window_seconds=PAI_WINDOW))
        text = provider_config_text(shop, home, provider="productai", base_url=charged.base_url,
                                    api_key=PRODUCTAI_KEY, new_only=False,
                                    table=PRODUCTAI_TABLE + f'window = "{PAI_WINDOW:g}s"\n')
    webhooks_url = f"http://127.0.0.1:{free_port()}" if kind in WEBHOOK_KINDS else None
    if service == "productai" and webhooks_url:  # ProductAI's webhook is the account's, set in its dashboard
        charged.set_webhook(PRODUCTAI_KEY, f"{webhooks_url}/webhooks/productai/{webhook_token(PRODUCTAI_KEY)}")
    path = home / "config.toml"
    path.write_text(matrix_config(text, webhooks_url=webhooks_url))
    faulty = shop if service == "shopify" else charged
    originals, original_bytes = seed_store(shop, products=2, seed=61)
    plan_faults(faulty, service, kind, endpoints=endpoints_for(service, kind))
    return World(service, shop, faulty, charged, load_settings(path), originals, original_bytes)


def endpoints_for(service: str, kind: str) -> tuple[str, ...]:
    """Three of the service's endpoints, rotating with the kind, so every endpoint meets several
    kinds here (bench/fault_matrix.py puts every kind on every endpoint)."""
    endpoints = ENDPOINTS[service]
    if len(endpoints) <= 3:
        return endpoints
    start = kinds_of(service).index(kind)
    return tuple(dict.fromkeys(endpoints[(start + step * 3) % len(endpoints)] for step in range(3)))


def recovers(service: str, kind: str) -> bool:
    """Whether every image must end done. Otherwise failing with a reason is the promise: a media
    Shopify fails, a job the provider fails, and ProductAI (no idempotency key) after an answer it
    may have charged for was lost — it is not sent again by itself."""
    if kind in ("media_failed", "fail"):
        return False
    if service == "productai" and kind not in ("429", "429+retry-after", *WEBHOOK_KINDS):
        return False
    return True


def broken(world: World, kind: str, events: list[dict]) -> list[str]:
    """What broke for this service, named (empty: every promise held)."""
    served = faults_served(world.faulty, world.service)
    if served.get({"media_failed": "fail"}.get(kind, kind), 0) < 1:
        return [f"the fault was never injected (served: {served})"]
    found = check_run(world.shop, world.charged, world.service, world.settings, world.originals,
                      world.original_bytes, events)
    rows = image_rows(world.settings.database_path)
    problems = list(found.problems)
    problems += [f"{name}: {value}" for name in ("duplicates", "double_charges", "originals_lost", "crashes")
                 if (value := getattr(found, name))]
    if recovers(world.service, kind) and {row["state"] for row in rows} != {"done"}:
        problems.append(f"not recovered: {reasons(rows)}")
    return problems


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[tuple[str, str], list[str]]:
    """Every selected case run once: (service, kind) -> what broke."""
    selected = [case for case in CASES if case in {
        (item.callspec.params["service"], item.callspec.params["kind"]) for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")}]
    with ExitStack() as stack:
        worlds = {f"{service}-{kind}": build_world(stack, service, kind, tmp_path_factory.mktemp(f"{service}-{kind}"))
                  for service, kind in selected}
        events = run_async(settle_all({label: w.settings for label, w in worlds.items()}, timeout=90, at_once=12),
                           timeout=600)
        return {(w.service, kind): broken(w, kind, events[label])
                for (label, w), (_, kind) in zip(worlds.items(), selected)}


@pytest.mark.parametrize("service,kind", CASES)
def test_a_fault_breaks_no_promise(service: str, kind: str, outcomes) -> None:
    assert outcomes[(service, kind)] == []
