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

from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import run_async
from fault_matrix_kit import (ENDPOINTS, WEBHOOK_KINDS, World, check_run, faults_served, image_rows, kinds_of,
                              plan_faults, reasons, settle_all)
from fault_matrix_kit import build_world as kit_world

SERVICES = ("shopify", "aigenstudio", "imagen", "productai")
CASES = [(service, kind) for service in SERVICES for kind in kinds_of(service)]


def build_world(stack: ExitStack, service: str, kind: str, home: Path) -> World:
    """The service's world with the fault planned on a few of its endpoints."""
    world = kit_world(stack, service, home, products=2, seed=61, webhooks=kind in WEBHOOK_KINDS)
    plan_faults(world.faulty, service, kind, endpoints=endpoints_for(service, kind))
    return world


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
        worlds = {f"{service}-{kind}": build_world(stack, service, kind, tmp_path_factory.mktemp(service + kind))
                  for service, kind in selected}
        events = run_async(settle_all({label: w.settings for label, w in worlds.items()}, timeout=90, at_once=12),
                           timeout=600)
        return {(w.service, kind): broken(w, kind, events[label])
                for (label, w), (_, kind) in zip(worlds.items(), selected)}


@pytest.mark.parametrize("service,kind", CASES)
def test_a_fault_breaks_no_promise(service: str, kind: str, outcomes) -> None:
    assert outcomes[(service, kind)] == []
