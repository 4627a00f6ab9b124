"""The Imagen AI client: the whole flow against the loopback sandbox, and every failure mapped, without leaks."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import structlog
from PIL import Image, ImageChops, ImageDraw, ImageStat

from conftest import FakeClock
from retouch.plugin.providers import errors as generic
from retouch.plugin.providers.imagen.client import ImagenClient, Profile
from retouch.plugin.providers.imagen.errors import (
    AuthenticationFailed,
    InvalidRequest,
    LinkExpired,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)
from retouch.plugin.providers.imagen.sandbox import ImagenSandbox

KEY = "imagen_TESTSECRET_client_5d1f"
WRONG_KEY = "imagen_WRONGSECRET_9a7e"
JPG_PROFILE = 5700
NAME = "8123456789_44070841549106.jpg"
MOCK_API = "https://api.imagen.test/v1"
LINK = "https://s3.imagen.test/bucket/p1/a.jpg?X-Amz-Expires=60&X-Amz-Signature=SIGNATURESECRET"


def photo_jpeg() -> bytes:
    photo = Image.new("RGB", (240, 160), (70, 80, 110))
    ImageDraw.Draw(photo).rectangle((80, 40, 160, 120), fill=(150, 60, 40))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = photo_jpeg()


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sandbox(clock: FakeClock) -> Iterator[ImagenSandbox]:
    sandbox = ImagenSandbox(
        api_keys=(KEY,),
        edit_pending_seconds=0.02,
        edit_seconds=0.05,
        export_seconds=0.05,
        link_lifetime_seconds=60,
        clock=clock,
    )
    sandbox.start()
    yield sandbox
    sandbox.close()


@pytest.fixture(autouse=True)
def no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").clear_faults()


def run(client: ImagenClient, go: Callable[[ImagenClient], Any]) -> Any:
    async def main() -> Any:
        async with client:
            return await go(client)

    return asyncio.run(main())


def fault(sandbox: ImagenSandbox, **body: Any) -> None:
    assert httpx.post(sandbox.base_url + "/_sandbox/faults", json=body).status_code == 200


async def until_done(poll: Callable[[], Any]) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] not in ("Completed", "Failed"):
        assert time.monotonic() < deadline, f"stuck in {seen[-1]}"
        seen.append(await poll())
        await asyncio.sleep(0.02)
    return seen


async def exported(client: ImagenClient, **edit: Any) -> tuple[str, dict[str, str]]:
    """Create, upload, edit, export: the project and its export links."""
    project = await client.create_project()
    links = await client.upload_links(project, [NAME])
    await client.upload(links[NAME], JPEG)
    await client.start_edit(
        project, **{"profile_key": JPG_PROFILE, "photography_type": None, "callback_url": None, "options": {}, **edit}
    )
    assert (await until_done(lambda: client.edit_status(project)))[-1] == "Completed"
    await client.start_export(project)
    assert (await until_done(lambda: client.export_status(project)))[-1] == "Completed"
    return project, await client.export_links(project)


# --- against the sandbox -------------------------------------------------------------------------


def test_whole_flow_gives_an_edited_jpeg_without_leaking_secrets(sandbox: ImagenSandbox) -> None:
    before = sandbox.stats()
    client = ImagenClient(KEY, sandbox.api_url)

    async def go(client: ImagenClient) -> tuple[list[Profile], str, dict[str, str], bytes]:
        profiles = await client.list_profiles()
        project, links = await exported(client, photography_type="OTHER", options={"straighten": True})
        return profiles, project, links, await client.download(links[NAME])

    with structlog.testing.capture_logs() as logs:
        profiles, project, links, result = run(client, go)

    assert Profile(JPG_PROFILE, "CLEAN PRODUCT", "Personal", "JPG") in profiles
    assert set(links) == {NAME}
    image = Image.open(io.BytesIO(result))
    assert image.format == "JPEG"
    original = Image.open(io.BytesIO(JPEG)).convert("RGB")
    difference = ImageChops.difference(image.convert("RGB").resize(original.size), original)
    assert sum(ImageStat.Stat(difference).mean) / 3 > 1  # visibly edited
    seen = sandbox.project(project)
    assert seen is not None and seen["files"] == [{"file_name": NAME, "uploaded": True}]
    assert seen["edit"]["options"] == {
        "profile_key": JPG_PROFILE,
        "photography_type": "OTHER",
        "callback_url": None,
        "straighten": True,
    }
    after = sandbox.stats()
    assert after["uploads_with_api_key"] == before["uploads_with_api_key"]  # the key never went to storage
    assert after["uploads_refused_content_type"] == before["uploads_refused_content_type"]
    assert after["charges"] == before["charges"] + 1
    assert set(client.stats) == {"ok"}
    assert {"requested", "storage_requested", "project_created", "edit_started"} <= {e["event"] for e in logs}
    logged = repr(logs)
    assert KEY not in logged and "X-Amz-Signature" not in logged and KEY not in repr(client)


def test_a_wrong_key_is_authentication_failed_and_never_shown(sandbox: ImagenSandbox) -> None:
    client = ImagenClient(WRONG_KEY, sandbox.api_url)
    with structlog.testing.capture_logs() as logs, pytest.raises(AuthenticationFailed) as caught:
        run(client, lambda c: c.list_profiles())
    error = caught.value
    assert isinstance(error, generic.AuthenticationFailed)
    assert (error.status, error.message) == (401, "Invalid API key or unauthorized.")
    for text in (str(error), repr(error), repr(client), repr(logs), repr(error.__dict__)):
        assert WRONG_KEY not in text
    assert client.stats == {"client_error": 1}  # not retried


def test_a_503_on_a_get_or_an_upload_is_retried(sandbox: ImagenSandbox) -> None:
    requests = sandbox.stats()["requests"]
    fault(sandbox, endpoint="profiles", status=503, count=1)
    fault(sandbox, endpoint="upload", status=503, count=1)
    client = ImagenClient(KEY, sandbox.api_url, retry_base=0.001)

    async def go(client: ImagenClient) -> list[Profile]:
        profiles = await client.list_profiles()
        project = await client.create_project()
        links = await client.upload_links(project, ["a.jpg"])
        await client.upload(links["a.jpg"], JPEG)
        assert sandbox.project(project)["files"] == [{"file_name": "a.jpg", "uploaded": True}]
        return profiles

    assert run(client, go)
    assert client.stats == {"server_error": 2, "ok": 4}
    after = sandbox.stats()["requests"]
    assert after["profiles"] - requests.get("profiles", 0) == 2
    assert after["upload"] - requests.get("upload", 0) == 2


def test_a_get_gives_up_after_its_retries(sandbox: ImagenSandbox) -> None:
    fault(sandbox, endpoint="profiles", status=502, count=3)
    client = ImagenClient(KEY, sandbox.api_url, retries=2, retry_base=0.001)
    with pytest.raises(ServiceUnavailable) as caught:
        run(client, lambda c: c.list_profiles())
    assert (caught.value.reason, caught.value.status) == ("server_error", 502)
    assert client.stats == {"server_error": 3}


def test_a_503_on_a_post_is_not_retried(sandbox: ImagenSandbox) -> None:
    before = sandbox.stats()
    fault(sandbox, endpoint="create_project", status=503, count=1)
    client = ImagenClient(KEY, sandbox.api_url, retry_base=0.001)
    with pytest.raises(ServiceUnavailable) as caught:
        run(client, lambda c: c.create_project())
    assert (caught.value.reason, caught.value.status) == ("server_error", 503)
    assert isinstance(caught.value, generic.Unavailable)
    assert client.stats == {"server_error": 1}
    after = sandbox.stats()
    assert after["requests"]["create_project"] - before["requests"].get("create_project", 0) == 1
    assert after["projects"] == before["projects"]


def test_a_hanging_service_is_a_timeout(sandbox: ImagenSandbox) -> None:
    # The hang outlasts the 0.2 s timeout by more than a stalled CI machine can lose.
    fault(sandbox, endpoint="edit_status", mode="hang", seconds=5.0)
    client = ImagenClient(KEY, sandbox.api_url, timeout=0.2, retries=0)

    async def go(client: ImagenClient) -> str:
        return await client.edit_status(await client.create_project())

    with pytest.raises(ServiceUnavailable) as caught:
        run(client, go)
    assert (caught.value.reason, caught.value.status) == ("timeout", None)
    assert client.stats == {"ok": 1, "timeout": 1}


def test_an_expired_or_tampered_download_link_is_link_expired(sandbox: ImagenSandbox, clock: FakeClock) -> None:
    client = ImagenClient(KEY, sandbox.api_url, retry_base=0.001)
    expired_before = sandbox.stats()["expired_link_fetches"]

    async def go(client: ImagenClient) -> tuple[LinkExpired, LinkExpired, bytes]:
        project, links = await exported(client)
        with pytest.raises(LinkExpired) as tampered:
            await client.download(links[NAME].replace("X-Amz-Signature=", "X-Amz-Signature=0"))
        clock.now += 61
        with pytest.raises(LinkExpired) as expired:
            await client.download(links[NAME])
        fresh = await client.export_links(project)  # fresh links work again
        return tampered.value, expired.value, await client.download(fresh[NAME])

    tampered, expired, data = run(client, go)
    assert isinstance(expired, generic.Unavailable) and not isinstance(expired, ServiceUnavailable)
    assert (expired.status, expired.code) == (403, "AccessDenied") and "Request has expired" in expired.message
    assert (tampered.status, tampered.code) == (403, "SignatureDoesNotMatch")
    assert "X-Amz-Signature" not in str(expired) + repr(expired) + str(tampered)
    assert data.startswith(b"\xff\xd8\xff")
    assert sandbox.stats()["expired_link_fetches"] == expired_before + 1  # not retried
    assert client.stats["client_error"] == 2


# --- against a mock transport --------------------------------------------------------------------


class Mock:
    """An httpx.MockTransport answering each path with the next of its queued answers; records requests."""

    def __init__(self, answers: dict[str, list[httpx.Response]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[request.url.path].pop(0)

    def client(self, **options: Any) -> ImagenClient:
        return ImagenClient(KEY, MOCK_API, transport=httpx.MockTransport(self), **options)


def ok(body: Any, *, wrapped: bool = True) -> httpx.Response:
    return httpx.Response(200, json={"data": body} if wrapped else body)


def failed(status: int, detail: Any) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail})


def test_headers_of_upload_edit_and_export() -> None:
    mock = Mock(
        {
            "/bucket/p1/a.jpg": [httpx.Response(200)],
            "/v1/projects/": [ok({"project_uuid": "p1"})],
            "/v1/projects/p1/edit": [ok({"status": "Pending"})],
            "/v1/projects/p1/export": [ok({"status": "In Progress"})],
        }
    )

    async def go(client: ImagenClient) -> None:
        await client.create_project("batch")
        await client.upload(LINK, JPEG)
        await client.start_edit(
            "p1",
            profile_key=JPG_PROFILE,
            photography_type="OTHER",
            callback_url="https://hooks.test/t0k3n",
            options={"crop": True},
        )
        await client.start_export("p1")

    run(mock.client(), go)
    create, upload, edit, export = mock.requests
    assert (create.headers["x-api-key"], create.headers["content-type"]) == (KEY, "application/json")
    assert json.loads(create.content) == {"name": "batch"}
    assert (upload.method, str(upload.url), upload.content) == ("PUT", LINK, JPEG)
    assert "x-api-key" not in upload.headers and "content-type" not in upload.headers
    assert "cookie" not in upload.headers and "authorization" not in upload.headers
    assert (edit.headers["content-type"], edit.headers["x-api-key"]) == ("", KEY)
    assert json.loads(edit.content) == {
        "profile_key": JPG_PROFILE,
        "photography_type": "OTHER",
        "callback_url": "https://hooks.test/t0k3n",
        "crop": True,
    }
    assert (export.method, export.headers["content-type"], export.content) == ("POST", "", b"")


@pytest.mark.parametrize("wrapped", [True, False])
def test_wrapped_and_unwrapped_bodies(wrapped: bool) -> None:
    profile = {"profile_key": 1, "profile_name": "P", "profile_type": "Talent", "image_type": "RAW", "new": 1}
    links = [{"file_name": "a.jpg", "download_link": LINK}]
    mock = Mock(
        {
            "/v1/profiles": [ok({"profiles": [profile]}, wrapped=wrapped)],
            "/v1/projects/": [ok({"project_uuid": "p1"}, wrapped=wrapped)],
            "/v1/projects/p1/get_temporary_upload_links": [
                ok({"files_list": [{"file_name": "a.jpg", "upload_link": LINK}]}, wrapped=wrapped)
            ],
            "/v1/projects/p1/edit/status": [ok({"status": "In Progress", "progress": 3.0}, wrapped=wrapped)],
            "/v1/projects/p1/export/status": [ok({"status": "Completed"}, wrapped=wrapped)],
            "/v1/projects/p1/export/get_temporary_download_links": [ok({"files_list": links}, wrapped=wrapped)],
        }
    )

    async def go(client: ImagenClient) -> tuple[Any, ...]:
        return (
            await client.list_profiles(),
            await client.create_project(),
            await client.upload_links("p1", ["a.jpg"]),
            await client.edit_status("p1"),
            await client.export_status("p1"),
            await client.export_links("p1"),
        )

    assert run(mock.client(), go) == (
        [Profile(1, "P", "Talent", "RAW")],
        "p1",
        {"a.jpg": LINK},
        "In Progress",
        "Completed",
        {"a.jpg": LINK},
    )


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        (
            ok({"profiles": [{"profile_key": "5700", "profile_name": "P", "profile_type": "T", "image_type": "JPG"}]}),
            UnexpectedResponse,
            None,
        ),
        (ok([{"profile_key": 1}]), UnexpectedResponse, None),  # a list is read (production), not this one
        (httpx.Response(200, json=[1, 2]), UnexpectedResponse, None),
        (httpx.Response(200, text="<html>maintenance</html>"), ServiceUnavailable, "non_json_body"),
        (httpx.Response(302, headers={"Location": "https://elsewhere.test/"}), UnexpectedResponse, None),
    ],
)
def test_a_body_of_the_wrong_shape(answer: httpx.Response, error: type[Exception], reason: str | None) -> None:
    mock = Mock({"/v1/profiles": [answer]})
    with pytest.raises(error) as caught:
        run(mock.client(retries=0), lambda c: c.list_profiles())
    assert isinstance(caught.value, generic.Unavailable)
    assert getattr(caught.value, "reason", None) == reason
    assert len(mock.requests) == 1  # a redirect is not followed


def test_a_status_or_links_of_the_wrong_shape() -> None:
    other_name = {"files_list": [{"file_name": "b.jpg", "upload_link": LINK}]}
    # A status word we do not know is read (and logged once): the pipeline's deadline bounds it. A
    # status that is not a word is not.
    mock = Mock(
        {
            "/v1/projects/p1/edit/status": [ok({"status": ["Done"]})],
            "/v1/projects/p1/get_temporary_upload_links": [ok(other_name)],
        }
    )

    async def go(client: ImagenClient) -> None:
        with pytest.raises(UnexpectedResponse):
            await client.edit_status("p1")
        with pytest.raises(UnexpectedResponse):
            await client.upload_links("p1", ["a.jpg"])

    run(mock.client(), go)


@pytest.mark.parametrize(
    ("answer", "error", "generic_class", "message"),
    [
        (failed(400, "Unknown profile_key 1."), InvalidRequest, generic.Rejected, "Unknown profile_key 1."),
        (failed(409, "An edit is already running."), InvalidRequest, generic.Rejected, None),
        (failed(422, [{"msg": "field required"}]), InvalidRequest, generic.Rejected, "field required"),
        (failed(403, "Forbidden"), AuthenticationFailed, generic.AuthenticationFailed, None),
        (failed(404, "Project not found."), NotFound, generic.NotFound, "Project not found."),
        (
            httpx.Response(429, json={"detail": "slow"}, headers={"Retry-After": "7"}),
            RateLimited,
            generic.RateLimited,
            None,
        ),
        (failed(500, "Internal Server Error"), ServiceUnavailable, generic.Unavailable, None),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), ServiceUnavailable, generic.Unavailable, None),
        (httpx.Response(408), ServiceUnavailable, generic.Unavailable, None),
    ],
)
def test_error_statuses_of_a_post(
    answer: httpx.Response, error: type[Exception], generic_class: type[Exception], message: str | None
) -> None:
    mock = Mock({"/v1/projects/p1/edit": [answer]})
    with pytest.raises(error) as caught:
        run(
            mock.client(retry_base=0.001),
            lambda c: c.start_edit("p1", profile_key=1, photography_type=None, callback_url=None, options={}),
        )
    assert isinstance(caught.value, generic_class)
    assert caught.value.status == answer.status_code
    if message is not None:
        assert caught.value.message == message
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7
    assert len(mock.requests) == 1  # a POST is never repeated by the client


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "-inf"])
def test_a_retry_after_that_is_no_finite_number_is_garbled(value: str) -> None:
    """Like the other providers' readers: an infinite Retry-After would hold every request for good."""
    from retouch.plugin.providers.imagen.client import parse_retry_after

    assert parse_retry_after({"retry-after": value}, time.time()) is None
    assert parse_retry_after({"retry-after": "7"}, time.time()) == 7


def test_a_429_on_a_get_waits_retry_after_capped_then_backoff_with_jitter() -> None:
    date = formatdate(time.time() + 30, usegmt=True)
    mock = Mock(
        {
            "/v1/profiles": [
                httpx.Response(429, headers={"Retry-After": "120"}),
                httpx.Response(429, headers={"Retry-After": date}),
                httpx.Response(503, json={"detail": "busy"}),
                ok({"profiles": []}),
            ]
        }
    )
    client = mock.client(retries=3, retry_base=0.5)
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    client._sleep = record
    assert run(client, lambda c: c.list_profiles()) == []
    assert delays[0] == 60.0 and 25 <= delays[1] <= 30 and 2.0 <= delays[2] <= 4.0  # third try: 0.5 * 2**2
    assert client.stats == {"rate_limited": 2, "server_error": 1, "ok": 1}


def test_the_imagen_provider_renews_its_own_expired_result_links(sandbox: ImagenSandbox, clock: FakeClock) -> None:
    """An export link past its lifetime, fetched through the result seam (providers/fetch.py), is refused;
    Imagen's own rule (contract.EXPIRED_LINK_STATUSES) calls that an expiry, a timeout not, and its
    fresh_results gives a new link to the same result without a new edit or export."""
    from retouch.plugin.providers.base import ProviderConfig, Ticket, TicketItem
    from retouch.plugin.providers.fetch import FetchRefused, FetchTimeout, ResultFetcher
    from retouch.plugin.providers.imagen.plugin import ImagenProvider, ImagenSettings

    provider = ImagenProvider(
        ProviderConfig(
            api_key=KEY,
            base_url=sandbox.api_url,
            timeout=5.0,
            public_url=None,
            settings=ImagenSettings(profile_key=JPG_PROFILE),
        )
    )
    product, media = NAME.removesuffix(".jpg").split("_")
    before = sandbox.stats()

    async def go(client: ImagenClient) -> tuple[FetchRefused, dict[int, str], str, bytes]:
        project, links = await exported(client)
        ticket = Ticket(
            key="renewal",
            options={},
            provider_job_id=project,
            items=[
                TicketItem(
                    0,
                    f"gid://shopify/Product/{product}",
                    product,
                    f"gid://shopify/MediaImage/{media}",
                    "https://cdn.shopify.test/a.jpg",
                    NAME,
                    "image/jpeg",
                )
            ],
        )
        clock.now += 61
        async with ResultFetcher(retry_base=0.001) as fetcher:
            with pytest.raises(FetchRefused) as expired:
                await fetcher.fetch(links[NAME])
            renewed = await provider.fresh_results(ticket, None)  # type: ignore[arg-type]  (no progress needed)
            return expired.value, renewed, links[NAME], (await fetcher.fetch(renewed[0])).data

    expired, renewed, first, data = run(provider.client, go)
    assert expired.status == 403 and provider.result_link_expired(expired)
    assert not provider.result_link_expired(FetchTimeout("timeout", "slow", host=expired.host))
    assert set(renewed) == {0} and renewed[0] != first and data.startswith(b"\xff\xd8\xff")
    after = sandbox.stats()
    assert (
        after["edits_started"] - before["edits_started"] == 1
        and after["exports_started"] - before["exports_started"] == 1
    )
