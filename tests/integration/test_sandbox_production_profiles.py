"""Each provider sandbox's `production` profile answers in the shapes the real service documents
(CONTRACTS.md "What the API reference shows beside the guides", "Production shapes", the ProductAI
vendor-code note), and our clients read them. Raw HTTP on loopback, so the shapes themselves are seen."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from conftest import wait_for
from retouch.plugin.providers.aigenstudio import AigenClient
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.providers.imagen.client import ImagenClient
from retouch.plugin.providers.imagen.sandbox import DEFAULT_API_KEY, ImagenSandbox
from retouch.plugin.providers.productai.sandbox import ProductAISandbox

AIGEN_KEY = "aigen_test_profiles_0123"
PAI_KEY = "pai_profiles_key_0123"
UNREACHABLE = "http://127.0.0.1:9/p.jpg"  # the item fails: a body with an error and no status


@pytest.fixture
def started():
    servers = []

    def start(sandbox):
        servers.append(sandbox.start())
        return sandbox

    yield start
    for server in servers:
        server.stop()


def _create(base_url: str, key: str, **body) -> httpx.Response:
    payload = {"images": [{"external_id": "1", "source_url": UNREACHABLE}], **body}
    return httpx.post(
        f"{base_url}/api/v1/product-image-enhancements",
        json=payload,
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"profiles-{time.time_ns()}"},
    )


def test_aigenstudio_production_answers_without_status_and_202(started) -> None:
    sandbox = started(AigenSandbox(seconds_per_item=0.05, profile="production"))
    created = _create(sandbox.base_url, AIGEN_KEY)  # no preset: optional in the API reference
    assert created.status_code == 202 and "status" not in created.json()["enhancement"]
    enhancement_id = created.json()["enhancement"]["id"]
    url = f"{sandbox.base_url}/api/v1/product-image-enhancements/{enhancement_id}"
    headers = {"Authorization": f"Bearer {AIGEN_KEY}"}
    body = wait_for(
        lambda: (b := httpx.get(url, headers=headers).json()["enhancement"])["failed_items"] == 1 and b,
        30,
        what="the item failed",
    )
    assert "status" not in body and all("status" not in item for item in body["items"])

    async def read():
        async with AigenClient(AIGEN_KEY, sandbox.base_url) as client:
            return await client.get_enhancement(enhancement_id)

    enhancement = asyncio.run(read())
    assert (enhancement.status, enhancement.items[0].status) == ("failed", "failed")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.0.0.7", "169.254.169.254", "[::1]"])
def test_aigenstudio_production_refuses_a_private_webhook_url(started, host: str) -> None:
    production = started(AigenSandbox(profile="production"))
    refused = _create(production.base_url, AIGEN_KEY, webhook_url=f"https://{host}/webhooks/aigenstudio")
    assert refused.status_code == 400 and "webhook_url" in refused.json()["error"]["message"]
    assert _create(production.base_url, AIGEN_KEY, webhook_url="https://hooks.example.com/w").status_code == 202
    default = started(AigenSandbox())  # the declared sandbox exception: tests receive webhooks on loopback
    assert _create(default.base_url, AIGEN_KEY, webhook_url="http://127.0.0.1:9/w").status_code == 201


def test_imagen_production_answers_at_the_root_with_bare_lists_and_error_objects(started) -> None:
    sandbox = started(ImagenSandbox(profile="production"))
    headers = {"x-api-key": DEFAULT_API_KEY}
    profiles = httpx.get(f"{sandbox.api_url}/profiles", headers=headers).json()
    assert isinstance(profiles, list) and {"profile_key", "image_type"} <= set(profiles[0])
    project = httpx.post(f"{sandbox.api_url}/projects/", json={}, headers=headers).json()
    assert set(project) == {"project_uuid"}
    missing = httpx.get(f"{sandbox.api_url}/projects/nope/edit/status", headers=headers)
    assert missing.status_code == 404 and set(missing.json()) == {"error"} and missing.json()["error"]["message"]

    async def read():
        async with ImagenClient(DEFAULT_API_KEY, sandbox.api_url) as client:
            return await client.list_profiles(), await client.create_project("p2")

    listed, project_uuid = asyncio.run(read())
    assert [p.profile_key for p in listed] == [p["profile_key"] for p in profiles] and project_uuid


def test_productai_production_shows_not_started_then_failed(started) -> None:
    sandbox = started(ProductAISandbox(keys={PAI_KEY: 100}, job_seconds=0.2, profile="production"))
    sandbox.add_fault("generate", mode="fail")
    headers = {"x-api-key": PAI_KEY}
    job_id = httpx.post(
        f"{sandbox.base_url}/api/generate",
        headers=headers,
        json={"model": "kontext-pro", "image_url": UNREACHABLE, "prompt": "p"},
    ).json()["data"]["id"]
    first = httpx.get(f"{sandbox.base_url}/api/job/{job_id}", headers=headers).json()["data"]["status"]
    assert first == "NOT_STARTED"
    wait_for(
        lambda: (
            httpx.get(f"{sandbox.base_url}/api/job/{job_id}", headers=headers).json()["data"]
            == {"id": job_id, "status": "FAILED"}
        ),
        30,
        what="the job FAILED",
    )
