"""Each provider client reads every example body of its reference pages (tests/data/providers/, see
SOURCES.md there), served over loopback HTTP; one test per documented example."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from fuzz_http import Answer, AnsweringServer
from retouch.plugin.providers import reading
from retouch.plugin.providers.aigenstudio import AigenClient, InvalidPayload, SourceImage
from retouch.plugin.providers.imagen import errors as imagen_errors
from retouch.plugin.providers.imagen.client import ImagenClient, match_exports
from retouch.plugin.providers.productai import errors as productai_errors
from retouch.plugin.providers.productai.client import ProductAIClient, parse_webhook

DATA = Path(__file__).parents[1] / "data" / "providers"
AIGEN_KEY = "aigen_test_examples_0123"
KEY = "examples-key-0123456789"


def body(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def answer(name: str, status: int = 200) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, (DATA / name).read_bytes())


@pytest.fixture(scope="module")
def server() -> Iterator[AnsweringServer]:
    answering = AnsweringServer()
    yield answering
    answering.stop()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize("provider", ["aigenstudio", "productai", "imagen"])
def test_every_example_file_has_a_test(provider: str) -> None:
    names = {p.name for p in (DATA / provider).glob("*.json")}
    assert names == set(EXPECTED[provider]), "each example body needs its own test below"


# --- AI Gen Studio -------------------------------------------------------------------------------


async def _aigen_create(url: str, status: int) -> Any:
    async with AigenClient(AIGEN_KEY, url) as client:
        return await client.create_enhancement(
            idempotency_key="examples-key-1",
            preset=None,
            preservation_level="strict",
            images=[SourceImage("product-001", "https://example.com/product.jpg")],
        )


async def _aigen_status(url: str) -> Any:
    async with AigenClient(AIGEN_KEY, url) as client:
        return await client.get_enhancement("f693e677-51e0-4ebe-80a0-ad06acbc4443")


@pytest.mark.parametrize(
    "name,http_status",
    [
        ("conventions_create_status.json", 201),
        ("quickstart_create.json", 202),
        ("reference_create_no_status.json", 200),
    ],
)
def test_aigenstudio_create_examples(server: AnsweringServer, name: str, http_status: int) -> None:
    server.answer = answer(f"aigenstudio/{name}", http_status)
    result = run(_aigen_create(server.url, http_status))
    assert result.enhancement.id == "f693e677-51e0-4ebe-80a0-ad06acbc4443"
    assert result.enhancement.status == "queued"  # given, or derived: nothing done yet
    assert result.enhancement.total_items == 1
    assert result.replayed is (http_status == 200)  # [DOC] 200 is an existing idempotent enhancement


def test_aigenstudio_status_example_of_the_guide(server: AnsweringServer) -> None:
    server.answer = answer("aigenstudio/guide_status_completed.json")
    enhancement = run(_aigen_status(server.url))
    assert (enhancement.status, enhancement.is_terminal) == ("completed", True)
    (item,) = enhancement.items
    assert (item.status, item.external_id, item.result_url) == (
        "completed",
        "product-001",
        "https://cdn.aigenstudio.app/r/itm_1.png",
    )


def test_aigenstudio_status_example_of_the_reference_has_no_status(server: AnsweringServer) -> None:
    server.answer = answer("aigenstudio/reference_status_no_status.json")
    enhancement = run(_aigen_status(server.url))
    assert (enhancement.status, enhancement.is_terminal) == ("partially_completed", True)
    assert [(i.status, i.error_code) for i in enhancement.items] == [
        ("completed", None),
        ("failed", "source_download_failed"),
    ]


def test_aigenstudio_presets_example(server: AnsweringServer) -> None:
    server.answer = answer("aigenstudio/conventions_presets.json")

    async def go() -> Any:
        async with AigenClient(AIGEN_KEY, server.url) as client:
            return await client.list_presets()

    (preset,) = run(go())
    assert preset.id == "single_product_white_background"


def test_aigenstudio_error_example(server: AnsweringServer) -> None:
    server.answer = answer("aigenstudio/conventions_error.json", 400)
    with pytest.raises(InvalidPayload) as caught:
        run(_aigen_create(server.url, 400))
    assert (caught.value.code, caught.value.request_id) == ("invalid_payload", "req_...")


# --- ProductAI ------------------------------------------------------------------------------------


async def _productai(url: str, call: str, job_id: int = 22292) -> Any:
    async with ProductAIClient(KEY, url) as client:
        if call == "generate":
            return await client.generate(model="kontext-pro", image_url="https://example.com/product.jpg", prompt="p")
        if call == "upscale":
            return await client.upscale(image_url="https://example.com/image.jpg")
        return await client.job(job_id)


@pytest.mark.parametrize(
    "name,call,expected", [("generate_started.json", "generate", 22292), ("upscale_started.json", "upscale", 22293)]
)
def test_productai_start_examples(server: AnsweringServer, name: str, call: str, expected: int) -> None:
    server.answer = answer(f"productai/{name}")
    assert run(_productai(server.url, call)) == expected


@pytest.mark.parametrize(
    "name,job_id,status,finished,failed,image_url",
    [
        ("job_running.json", 22292, "RUNNING", False, False, None),
        ("job_completed.json", 22292, "COMPLETED", True, False, "https://generated-image-url.jpg"),
        ("upscale_completed.json", 22293, "COMPLETED", True, False, "https://upscaled-image-url.jpg"),
        ("job_error.json", 22292, "ERROR", True, True, None),
        ("vendor_job_failed.json", 22292, "FAILED", True, True, None),
        ("vendor_job_timeout.json", 22292, "TIMEOUT", True, True, None),
        ("vendor_job_not_started.json", 22292, "NOT_STARTED", False, False, None),
    ],
)
def test_productai_job_examples(
    server: AnsweringServer, name: str, job_id: int, status: str, finished: bool, failed: bool, image_url: str | None
) -> None:
    server.answer = answer(f"productai/{name}")
    job = run(_productai(server.url, "job", job_id))
    assert (job.status, job.finished, job.failed, job.image_url) == (status, finished, failed, image_url)


def test_productai_out_of_tokens_example(server: AnsweringServer) -> None:
    server.answer = answer("productai/out_of_tokens.json", 400)
    with pytest.raises(productai_errors.OutOfTokens):
        run(_productai(server.url, "generate"))


@pytest.mark.parametrize(
    "name,status,job_id", [("webhook_success.json", "success", 12312), ("webhook_error.json", "error", None)]
)
def test_productai_webhook_examples(name: str, status: str, job_id: int | None) -> None:
    event = parse_webhook((DATA / "productai" / name).read_bytes())
    assert (event.status, event.job_id) == (status, job_id)


def test_productai_unknown_status_is_running_and_logged_once(server: AnsweringServer) -> None:
    reading.forget_seen()
    server.answer = Answer(
        200,
        {"Content-Type": "application/json"},
        json.dumps({"status": "OK", "data": {"id": 7, "status": "QUEUED_FOR_GPU"}}).encode(),
    )
    with structlog.testing.capture_logs() as logs:
        jobs = [run(_productai(server.url, "job", 7)) for _ in range(3)]
    assert all(not job.finished and not job.failed for job in jobs)
    assert [e["status"] for e in logs if e["event"] == "unknown_status"] == ["QUEUED_FOR_GPU"]


# --- Imagen ---------------------------------------------------------------------------------------


def _imagen(url: str) -> ImagenClient:
    return ImagenClient(KEY, url + "/v1", retries=0)


async def _imagen_call(url: str, call: str) -> Any:
    async with _imagen(url) as client:
        if call == "profiles":
            return await client.list_profiles()
        if call == "project":
            return await client.create_project("shoot")
        if call == "edit_status":
            return await client.edit_status("p1")
        return await client.export_links("p1")


@pytest.mark.parametrize("name", ["quickstart_profiles.json", "production_profiles_bare_list.json"])
def test_imagen_profiles_examples(server: AnsweringServer, name: str) -> None:
    server.answer = answer(f"imagen/{name}")
    profiles = run(_imagen_call(server.url, "profiles"))
    expected = body(f"imagen/{name}")
    listed = expected if isinstance(expected, list) else expected["data"]["profiles"]
    assert [(p.profile_key, p.profile_name, p.image_type) for p in profiles] == [
        (p["profile_key"], p["profile_name"], p["image_type"]) for p in listed
    ]


@pytest.mark.parametrize("name", ["quickstart_project.json", "production_project_root.json"])
def test_imagen_project_examples(server: AnsweringServer, name: str) -> None:
    server.answer = answer(f"imagen/{name}")
    assert run(_imagen_call(server.url, "project")) == "3f6c1d7e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    "name,status", [("quickstart_edit_status.json", "In Progress"), ("production_edit_status_root.json", "Completed")]
)
def test_imagen_status_examples(server: AnsweringServer, name: str, status: str) -> None:
    server.answer = answer(f"imagen/{name}")
    assert run(_imagen_call(server.url, "edit_status")) == status


@pytest.mark.parametrize("name", ["quickstart_export_links.json", "production_export_links_root.json"])
def test_imagen_export_links_examples_match_by_stem(server: AnsweringServer, name: str) -> None:
    server.answer = answer(f"imagen/{name}")
    links = run(_imagen_call(server.url, "export_links"))
    # We uploaded `922A4846.CR2`-like names in lower case; the export answers `.JPG`.
    matched = match_exports(links, ["922a4846.jpg", "nothing.jpg"])
    assert matched == {"922a4846.jpg": "https://s3.example/922A4846.JPG?X-Amz-Signature=a"}


@pytest.mark.parametrize(
    "name,message", [("production_error.json", "Project not found"), ("legacy_error_detail.json", "Project not found")]
)
def test_imagen_error_examples(server: AnsweringServer, name: str, message: str) -> None:
    server.answer = answer(f"imagen/{name}", 404)
    with pytest.raises(imagen_errors.NotFound) as caught:
        run(_imagen_call(server.url, "edit_status"))
    assert message in str(caught.value)


def test_imagen_callback_example() -> None:
    callback = body("imagen/quickstart_callback.json")
    assert (callback["project_uuid"], callback["status"], callback["action"]) == (
        "3f6c1d7e-0000-4000-8000-000000000001",
        "Completed",
        "edit",
    )


def test_imagen_export_match_refuses_an_ambiguous_stem() -> None:
    links = {"a.JPG": "https://s/1", "A.jpeg": "https://s/2", "b.jpg": "https://s/3"}
    assert match_exports(links, ["a.jpg", "b.jpg"]) == {"b.jpg": "https://s/3"}


EXPECTED = {
    "aigenstudio": [
        "conventions_create_status.json",
        "quickstart_create.json",
        "reference_create_no_status.json",
        "guide_status_completed.json",
        "reference_status_no_status.json",
        "conventions_presets.json",
        "conventions_error.json",
    ],
    "productai": [
        "generate_started.json",
        "upscale_started.json",
        "job_running.json",
        "job_completed.json",
        "upscale_completed.json",
        "job_error.json",
        "vendor_job_failed.json",
        "vendor_job_timeout.json",
        "vendor_job_not_started.json",
        "out_of_tokens.json",
        "webhook_success.json",
        "webhook_error.json",
    ],
    "imagen": [
        "quickstart_profiles.json",
        "production_profiles_bare_list.json",
        "quickstart_project.json",
        "production_project_root.json",
        "quickstart_edit_status.json",
        "production_edit_status_root.json",
        "quickstart_export_links.json",
        "production_export_links_root.json",
        "production_error.json",
        "legacy_error_detail.json",
        "quickstart_callback.json",
    ],
}


# --- the reading rules themselves -----------------------------------------------------------------


@pytest.mark.parametrize(
    "total,completed,failed,status",
    [
        (3, 0, 0, "queued"),
        (3, 1, 0, "processing"),
        (3, 3, 0, "completed"),
        (3, 2, 1, "partially_completed"),
        (3, 0, 3, "failed"),
        (0, 0, 0, "queued"),
    ],
)
def test_aigenstudio_derives_a_missing_enhancement_status(total: int, completed: int, failed: int, status: str) -> None:
    from retouch.plugin.providers.aigenstudio import contract

    assert contract.derive_enhancement_status(total, completed, failed) == status


def test_aigenstudio_unknown_status_is_not_finished_and_logged_once(server: AnsweringServer) -> None:
    reading.forget_seen()
    server.answer = Answer(
        200,
        {"Content-Type": "application/json"},
        json.dumps(
            {
                "enhancement": {
                    "id": "e9",
                    "status": "archiving",
                    "total_items": 1,
                    "items": [{"id": "i1", "status": "paused"}],
                }
            }
        ).encode(),
    )
    with structlog.testing.capture_logs() as logs:
        answers = [run(_aigen_status(server.url)) for _ in range(2)]
    assert not any(e.is_terminal for e in answers)
    assert sorted(e["status"] for e in logs if e["event"] == "unknown_status") == ["archiving", "paused"]


def test_productai_unlisted_model_is_accepted_with_a_warning() -> None:
    from retouch.plugin.providers.productai import contract
    from retouch.plugin.providers.productai.plugin import ProductAISettings, capabilities, unlisted_model_warning

    settings = ProductAISettings(model="nanobanana2")
    assert "not on ProductAI's documented list" in (unlisted_model_warning(settings) or "")
    assert capabilities(settings).credits_per_image == contract.UNLISTED_MODEL_TOKENS
    assert unlisted_model_warning(ProductAISettings(model="seedream")) is None
