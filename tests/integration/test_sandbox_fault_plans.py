"""Fault plans for the provider sandboxes: an exact schedule (`skip`) or a rate (`probability`),
repeatable from a seed, settable per test over HTTP like any other fault."""

from __future__ import annotations

import httpx
import pytest

from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.plugin.sandbox_kit.faults import Fault, FaultBook

BOOK = {"endpoints": ("create", "status"), "modes": {"hang": ("create", "status")}}


def hits(book: FaultBook, endpoint: str, requests: int) -> list[int]:
    """Which of `requests` requests to `endpoint` met a fault."""
    return [n for n in range(requests) if book.take(endpoint) is not None]


def test_skip_is_an_exact_schedule() -> None:
    book = FaultBook(**BOOK)
    book.add(Fault("status", count=2, status=503, skip=3))
    assert hits(book, "status", 8) == [3, 4]  # the 4th and 5th requests, then no more
    assert book.pending() == 0


def test_probability_is_a_rate_repeatable_from_the_seed() -> None:
    def run(seed: int) -> list[int]:
        book = FaultBook(**BOOK, seed=seed)
        book.add(Fault("create", count=10_000, status=503, probability=0.2))
        return hits(book, "create", 2_000)

    first = run(7)
    assert 300 < len(first) < 500  # about 20% of 2,000
    assert run(7) == first and run(8) != first
    book = FaultBook(**BOOK)
    book.add(Fault("create", count=3, status=503, probability=0.5))
    assert len(hits(book, "create", 200)) == 3  # a rate, but never more than its count


def test_other_endpoints_are_not_touched() -> None:
    book = FaultBook(**BOOK)
    book.add(Fault("create", count=5, status=503))
    assert hits(book, "status", 5) == []
    assert book.pending() == 5


@pytest.mark.parametrize(
    "bad,reason", [({"skip": -1}, "skip"), ({"probability": 0}, "probability"), ({"probability": 1.5}, "probability")]
)
def test_nonsense_plans_are_refused(bad: dict, reason: str) -> None:
    book = FaultBook(**BOOK)
    with pytest.raises(ValueError, match=reason):
        book.add(Fault("create", status=503, **bad))


def test_a_plan_set_over_http_shapes_the_sandboxs_answers() -> None:
    sandbox = ProductAISandbox(
        keys={"pai_fault_plan_key": 100}, job_seconds=0.1, rate_limit_scope="key", requests_per_window=1000
    )
    server = sandbox.start()
    try:
        with httpx.Client(trust_env=False, timeout=10) as http:
            plan = {"endpoint": "job", "status": 503, "count": 2, "skip": 1}
            assert http.post(f"{sandbox.server_url}/_sandbox/faults", json=plan).status_code < 300
            answers = [
                http.get(f"{sandbox.base_url}/api/job/1", headers={"x-api-key": "pai_fault_plan_key"}).status_code
                for _ in range(4)
            ]
            refused = http.post(
                f"{sandbox.server_url}/_sandbox/faults", json={"endpoint": "job", "status": 503, "probability": 2}
            )
    finally:
        server.stop()
    assert answers == [404, 503, 503, 404]  # the first goes through, the next two fail, then normal again
    assert refused.status_code == 400


# --- the same fault language on every sandbox, over HTTP ---------------------------------------------


def _shopify():
    from retouch.plugin.shopify.sandbox import ShopifySandbox

    sandbox = ShopifySandbox(access_token="shpat_fault_plans")
    return (
        sandbox,
        sandbox.start(),
        sandbox.shop_url,
        "graphql",
        lambda http: http.post(
            f"{sandbox.shop_url}/admin/api/{sandbox.api_version}/graphql.json",
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": "shpat_fault_plans"},
        ),
    )


def _aigen():
    from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox

    sandbox = AigenSandbox()
    return (
        sandbox,
        sandbox.start(),
        sandbox.base_url,
        "status",
        lambda http: http.get(
            f"{sandbox.base_url}/api/v1/product-image-enhancements/enh_none",
            headers={"Authorization": "Bearer aigen_test_faultplans"},
        ),
    )


def _imagen():
    from retouch.plugin.providers.imagen.sandbox import ImagenSandbox

    sandbox = ImagenSandbox(api_keys=("imagen_fault_plans",))
    return (
        sandbox,
        sandbox.start(),
        sandbox.base_url,
        "profiles",
        lambda http: http.get(f"{sandbox.api_url}/profiles", headers={"x-api-key": "imagen_fault_plans"}),
    )


def _productai():
    sandbox = ProductAISandbox(keys={"pai_fault_plan_key": 100}, rate_limit_scope="key", requests_per_window=1000)
    return (
        sandbox,
        sandbox.start(),
        sandbox.server_url,
        "job",
        lambda http: http.get(f"{sandbox.base_url}/api/job/1", headers={"x-api-key": "pai_fault_plan_key"}),
    )


SANDBOXES = {"shopify": _shopify, "aigenstudio": _aigen, "imagen": _imagen, "productai": _productai}
PLANS = {
    "429": {"status": 429},
    "429+retry-after": {"status": 429, "retry_after": 1.5},
    "reset": {"mode": "reset"},
    "truncated": {"mode": "truncated"},
    "non_json": {"mode": "non_json"},
    "wrong_shape": {"mode": "wrong_shape"},
}


def _outcome(request) -> str:
    """What one request met, in the words of PLANS' keys ("normal" for a real answer)."""
    try:
        response = request()
    except httpx.RemoteProtocolError as exc:
        # No status line at all is a reset; a status line and a short body is a truncation.
        return "truncated" if "complete message body" in str(exc) else "reset"
    except httpx.ReadError:
        return "reset"
    if response.status_code == 429:
        return "429+retry-after" if response.headers.get("retry-after") == "2" else "429"
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            return "non_json"
        if isinstance(body, list):
            return "wrong_shape"
    return "normal"


@pytest.mark.parametrize("service", SANDBOXES)
def test_every_sandbox_injects_every_kind_over_its_admin_endpoint(service: str) -> None:
    sandbox, server, admin_root, endpoint, request = SANDBOXES[service]()
    try:
        met = {}
        for kind, plan in PLANS.items():
            with httpx.Client(trust_env=False, timeout=10) as admin:
                added = admin.post(f"{admin_root}/_sandbox/faults", json={"endpoint": endpoint, **plan})
                assert added.status_code < 300, added.text
            with httpx.Client(trust_env=False, timeout=10) as http:
                met[kind] = (_outcome(lambda: request(http)), _outcome(lambda: request(http)))
        served = sandbox.faults_served() if service == "shopify" else sandbox.faults.served()
    finally:
        server.stop()
    # Each fault meets the first request, and only it: the second gets a real answer.
    assert met == {kind: (kind, "normal") for kind in PLANS}
    assert served == {kind: 1 for kind in PLANS}  # the sandbox's own count, for the benchmarks
