"""Hostile but signed webhook deliveries: deeply nested JSON (400, never a 500 with a traceback),
a captured Shopify delivery replayed under fresh webhook ids (a duplicate), product ids that are
not plain numbers (400) — on the daemon's endpoints over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retouch.sync.nesting import MAX_DEPTH, nested_deeper_than
from retouch.sync.shopify_webhooks import Refused, check_delivery, product_gid
from test_server import Harness, event_body
from test_shopify_webhooks import BODY, PRODUCT, SECRET, Endpoint, endpoint, headers, lower  # noqa: F401


def nested(depth: int, opener: str = "[", closer: str = "]", inner: str = "1") -> bytes:
    return (opener * depth + inner + closer * depth).encode()


def deep_product(depth: int) -> bytes:
    return b'{"id": 42, "variants": ' + nested(depth) + b"}"


# ----- depth, without parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "deep"),
    [
        (nested(MAX_DEPTH), False),
        (nested(MAX_DEPTH + 1), True),
        (nested(100_000), True),
        (nested(5000, "{\"a\":", "}"), True),
        (b'{"a": "' + b"[" * 5000 + b'"}', False),  # brackets inside a string
        (b'{"a": "\\"' + b"[" * 100 + b'"}', False),
        (b"[" * 50, True),
        (b"]" * 50 + b"[" * 10, False),
        (b"", False),
    ],
)
def test_nesting_is_measured_outside_strings(raw: bytes, deep: bool) -> None:
    assert nested_deeper_than(raw) is deep


# ----- Shopify ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2_000, 200_000])
def test_a_signed_but_deeply_nested_shopify_body_is_400(endpoint: Endpoint, depth: int) -> None:
    body = deep_product(depth)
    answer = endpoint.post(body)
    assert (answer.status_code, answer.json()) == (400, {"error": "body nested too deeply"})
    assert endpoint.handed_over() == []


def test_the_decision_itself_refuses_what_json_cannot_parse_deeply() -> None:
    body = b'{"id": 42, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert check_delivery(SECRET, lower(headers(body)), body) == Refused(400, "body nested too deeply")


def test_a_captured_delivery_replayed_under_fresh_ids_is_a_duplicate(endpoint: Endpoint) -> None:
    assert endpoint.post(BODY, webhook_id="wh_original").json() == {"accepted": True}
    for n in range(5):
        assert endpoint.post(BODY, webhook_id=f"wh_fresh_{n}").json() == {"duplicate": True}
    # The same body under another topic is another event (create, then update with the same payload).
    assert endpoint.post(BODY, webhook_id="wh_create", topic="products/create").json() == {"accepted": True}
    assert endpoint.handed_over() == [PRODUCT, PRODUCT]


@pytest.mark.parametrize(
    "gid",
    [
        "gid://shopify/Product/1/../2",
        "gid://shopify/Product/1/2",
        "gid://shopify/Product/12?x=1",
        "gid://shopify/Product/12#x",
        "gid://shopify/Product/12\n",
        "gid://shopify/Product/ 12",
        "gid://shopify/Product/１２",
        "gid://shopify/Product/²",
        "gid://shopify/Product/0",
        "gid://shopify/Product/-3",
        "gid://shopify/Product/012",
        "gid://shopify/Product/99999999999999999999",
        "gid://shopify/Variant/12",
        "gid://shopify/Product/",
        "GID://shopify/Product/12",
        "gid://shopify/Product/12/",
    ],
)
def test_a_product_gid_that_is_not_a_plain_number_is_400(endpoint: Endpoint, gid: str) -> None:
    body = json.dumps({"id": 12, "admin_graphql_api_id": gid}).encode()
    answer = endpoint.post(body, webhook_id=f"wh_{abs(hash(gid))}")
    assert (answer.status_code, answer.json()) == (400, {"error": "no product id in the body"})
    assert endpoint.handed_over() == []


@pytest.mark.parametrize(
    "body",
    [
        {"id": 2**63},
        {"id": 0},
        {"id": -1},
        {"id": True},
        {"id": 1.5},
        {"id": "12"},
        {"id": 12, "admin_graphql_api_id": "gid://shopify/Product/13"},  # the two ids disagree
    ],
)
def test_numeric_ids_must_be_positive_64_bit_integers(body: dict) -> None:
    assert product_gid(body) is None


def test_plain_ids_are_still_accepted() -> None:
    assert product_gid({"id": 2**63 - 1}) == f"gid://shopify/Product/{2**63 - 1}"
    assert product_gid({"admin_graphql_api_id": PRODUCT}) == PRODUCT


# ----- the provider's webhooks ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
def test_a_signed_but_deeply_nested_provider_event_is_400(tmp_path: Path, depth: int) -> None:
    harness = Harness(tmp_path)
    try:
        inner = json.loads(event_body())
        body = json.dumps(inner)[:-1].encode() + b', "extra": ' + nested(depth) + b"}"
        answer = harness.deliver(body, event_id=f"evt_deep_{depth}")
        assert (answer.status_code, answer.json()) == (400, {"error": "body nested too deeply"})
        assert harness.handed_over() == []
    finally:
        harness.close()


# ----- a handler that fails ---------------------------------------------------------------------------------


def test_a_full_database_under_webhooks_is_503_one_line_each_and_one_traceback(tmp_path: Path) -> None:
    import io
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from retouch.sync.logs import configure

    out = io.StringIO()
    configure("info", "json", stream=out)
    harness = Harness(tmp_path)

    def full(*args, **kwargs):
        raise OperationalError("INSERT INTO seenevent", {}, sqlite3.OperationalError("database or disk is full"))

    harness.store.remember_event = full  # the seen-event insert meets a full disk
    try:
        answers = [harness.deliver(event_body(), event_id=f"evt_full_{n}") for n in range(5)]
    finally:
        harness.close()
    assert [a.status_code for a in answers] == [503] * 5  # the sender retries later
    failed = [
        json.loads(line)
        for line in out.getvalue().splitlines()
        if line.startswith("{") and "http_handler_failed" in line
    ]
    assert len(failed) == 5 and all("database or disk is full" in e["reason"] for e in failed)
    assert sum("exception" in e for e in failed) == 1
    assert harness.handed_over() == []


def test_a_flood_of_forged_deliveries_is_one_log_line_per_kind(tmp_path: Path) -> None:
    import io

    from retouch.sync.logs import configure

    out = io.StringIO()
    configure("info", "json", stream=out)
    harness = Harness(tmp_path)
    try:
        forged = [
            harness.deliver(event_body(), event_id=f"evt_forged_{n}", key="aigen_test_guessed_key_0000")
            for n in range(40)
        ]
        deep = [harness.deliver(b'{"a": ' + nested(100) + b"}", event_id=f"evt_deep_{n}") for n in range(10)]
    finally:
        harness.close()
    assert {a.status_code for a in forged} == {401} and {a.status_code for a in deep} == {400}
    reasons = [json.loads(line)["reason"] for line in out.getvalue().splitlines() if '"webhook_rejected"' in line]
    assert len(reasons) == 2 and reasons[1] == "nested too deeply", reasons  # 50 refusals, one line per kind


def test_a_captured_delivery_replayed_many_times_is_one_log_line(tmp_path: Path) -> None:
    import io

    from retouch.sync.logs import configure

    out = io.StringIO()
    configure("info", "json", stream=out)
    hooks = Endpoint(tmp_path)
    try:
        assert hooks.post(BODY, webhook_id="wh_first").json() == {"accepted": True}
        replies = [hooks.post(BODY, webhook_id=f"wh_replay_{n}").json() for n in range(30)]
    finally:
        hooks.close()
    assert replies == [{"duplicate": True}] * 30 and hooks.handed_over() == [PRODUCT]
    assert out.getvalue().count('"shopify_webhook_duplicate"') == 1
