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
from fault_matrix_kit import (
    ENDPOINTS,
    WEBHOOK_KINDS,
    World,
    check_run,
    faults_served,
    image_rows,
    kinds_of,
    plan_faults,
    reasons,
    settle_all,
)
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
    found = check_run(
        world.shop, world.charged, world.service, world.settings, world.originals, world.original_bytes, events
    )
    rows = image_rows(world.settings.database_path)
    problems = list(found.problems)
    problems += [
        f"{name}: {value}"
        for name in ("duplicates", "double_charges", "originals_lost", "crashes")
        if (value := getattr(found, name))
    ]
    if recovers(world.service, kind) and {row["state"] for row in rows} != {"done"}:
        problems.append(f"not recovered: {reasons(rows)}")
    return problems


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[tuple[str, str], list[str]]:
    """Every selected case run once: (service, kind) -> what broke."""
    selected = [
        case
        for case in CASES
        if case
        in {
            (item.callspec.params["service"], item.callspec.params["kind"])
            for item in request.session.items
            if item.module is request.module and hasattr(item, "callspec")
        }
    ]
    with ExitStack() as stack:
        worlds = {
            f"{service}-{kind}": build_world(stack, service, kind, tmp_path_factory.mktemp(service + kind))
            for service, kind in selected
        }
        events = run_async(
            settle_all({label: w.settings for label, w in worlds.items()}, timeout=90, at_once=12), timeout=600
        )
        return {
            (w.service, kind): broken(w, kind, events[label]) for (label, w), (_, kind) in zip(worlds.items(), selected)
        }


@pytest.mark.parametrize("service,kind", CASES)
def test_a_fault_breaks_no_promise(service: str, kind: str, outcomes) -> None:
    assert outcomes[(service, kind)] == []


def test_the_promise_checker_names_every_broken_promise() -> None:
    """The pure check the matrix relies on: a run that broke each promise once is reported so."""
    from fault_matrix_kit import broken_promises

    def media(media_id: str, product_id: str, sha: str) -> dict:
        return {"id": media_id, "product_id": product_id, "sha256": sha}

    originals = {"m1": media("m1", "p1", "a"), "m2": media("m2", "p2", "b"), "m3": media("m3", "p3", "c")}
    rows = [  # m1 done but its backup differs; m2 failed without a reason; m3 never tracked
        {"media_id": "m1", "state": "done", "error_code": None, "error_message": None, "backup_sha256": "x"},
        {"media_id": "m2", "state": "failed", "error_code": None, "error_message": None, "backup_sha256": None},
    ]
    media_now = {
        "p1": [media("m1", "p1", "new")],
        "p2": [media("m2", "p2", "b"), media("m9", "p2", "dup")],
        "p3": [media("m3", "p3", "c")],
    }
    found = broken_promises(
        originals=originals,
        rows=rows,
        media_now=media_now,
        charges={"p1": 2, "p2": 1},
        backups=lambda sha: b"not the original",
        original_bytes={m: b"orig" for m in originals},
        events=[{"event": "step_crashed"}, {"event": "not_settled", "reason": "p3 stuck"}],
    )
    assert (found.duplicates, found.double_charges, found.originals_lost, found.crashes) == (1, 1, 1, 1)
    assert found.problems == ["m2 ended failed without a reason", "m3 lost: not tracked", "p3 stuck"]
    clean = broken_promises(
        originals={"m1": originals["m1"]},
        rows=[{**rows[0], "backup_sha256": "a"}],
        media_now={"p1": media_now["p1"]},
        charges={"p1": 1},
        backups=lambda sha: b"orig",
        original_bytes={"m1": b"orig"},
        events=[],
    )
    assert (clean.duplicates, clean.double_charges, clean.originals_lost, clean.crashes, clean.problems) == (
        0,
        0,
        0,
        0,
        [],
    )
