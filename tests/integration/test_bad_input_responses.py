"""Bad input, responses: each provider client and the Shopify client, answered by a loopback server
with whatever hypothesis makes up (wrong shapes, truncated or non-JSON bodies, nulls, huge numbers,
odd statuses and headers), raise only their documented error tree — never a KeyError, TypeError,
ValidationError or a hang — and never put a secret in an error.

RETOUCH_FUZZ_EXAMPLES sets the examples per client (bench/bad_input.py runs many more).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_clients import BY_NAME, TARGETS, Target, run_operation
from fuzz_http import Answer, AnsweringServer, answers

EXAMPLES = int(os.environ.get("RETOUCH_FUZZ_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def server() -> Iterator[AnsweringServer]:
    answering = AnsweringServer()
    yield answering
    answering.stop()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_only_documented_errors_come_out(server: AnsweringServer, target: Target) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(operation=st.sampled_from(sorted(target.operations)), data=st.data())
    def check(operation: str, data: st.DataObject) -> None:
        server.answer = data.draw(answers(target.templates_for(operation), server.url), label="answer")
        unexpected = run_operation(target, operation, server.url)
        if unexpected is not None:
            raise AssertionError(
                f"{target.name}.{operation} let out {type(unexpected).__name__}: "
                + "".join(traceback.format_exception(unexpected))[-1500:]
            )

    check()


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


# Answers that got past a client before it was fixed; each must now be one of its documented errors.
HOSTILE = [
    *[
        (target, operation, Answer(200, {"Content-Type": "application/json"}, b"[" * 100_000))
        for target, operation in (
            ("aigenstudio", "get_enhancement"),
            ("imagen", "edit_status"),
            ("productai", "job"),
            ("shopify", "shop"),
        )
    ],
    *[
        (target, operation, Answer(301, {"Location": "http:x"}, b"{}"))
        for target, operation in (
            ("aigenstudio", "list_presets"),
            ("imagen", "create_project"),
            ("productai", "generate"),
            ("shopify", "get_product"),
        )
    ],
    ("shopify", "shop", Answer(200, {}, _json({"errors": [{"message": "x", "extensions": {"code": ["THROTTLED"]}}]}))),
    ("shopify", "delete_media", Answer(200, {}, _json({"data": {"fileDelete": {"userErrors": "denied"}}}))),
    ("shopify", "delete_media", Answer(200, {}, _json({"data": {"fileDelete": {"userErrors": [{"field": 5}]}}}))),
    ("shopify", "add_media", Answer(200, {}, _json({"data": {"productUpdate": {"userErrors": [["x"]]}}}))),
    ("shopify", "iter_products", Answer(200, {}, _json({"data": {"products": {"pageInfo": {}}}}))),
    ("shopify", "iter_products", Answer(200, {}, _json({"data": {"products": "none"}}))),
    ("shopify", "move_media", Answer(200, {}, _json({"data": {"productReorderMedia": {"job": "queued"}}}))),
    ("shopify", "move_media", Answer(200, {}, _json({"data": {"productReorderMedia": {"job": {"done": False}}}}))),
    (
        "shopify",
        "move_media",
        Answer(200, {}, _json({"data": {"productReorderMedia": {"job": {"id": "j", "done": False}}, "job": ["done"]}})),
    ),
    (
        "shopify",
        "staged_upload",
        Answer(
            200,
            {},
            _json(
                {"data": {"stagedUploadsCreate": {"stagedTargets": [{"url": 5, "resourceUrl": "r", "parameters": []}]}}}
            ),
        ),
    ),
    (
        "shopify",
        "staged_upload",
        Answer(
            200,
            {},
            _json(
                {
                    "data": {
                        "stagedUploadsCreate": {
                            "stagedTargets": [
                                {
                                    "url": "http://[bad",
                                    "resourceUrl": "r",
                                    "parameters": [{"name": "k", "value": {"v": 1}}],
                                }
                            ]
                        }
                    }
                }
            ),
        ),
    ),
]


@pytest.mark.parametrize(
    ("target", "operation", "answer"), HOSTILE, ids=[f"{t}.{o}-{i}" for i, (t, o, _) in enumerate(HOSTILE)]
)
def test_answers_that_once_got_through(server: AnsweringServer, target: str, operation: str, answer: Answer) -> None:
    server.answer = answer
    assert run_operation(BY_NAME[target], operation, server.url) is None
