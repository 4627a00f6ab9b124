"""Imagen AI sandbox: real HTTP (httpx) against the loopback emulator, as a client would use it."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest import FakeClock
from retouch.plugin.providers.imagen.sandbox import DEFAULT_API_KEY, ImagenSandbox
from retouch.plugin.providers.imagen.sandbox.xmp import extract
from retouch.plugin.serve import serve_in_thread

KEY = DEFAULT_API_KEY
JPG_PROFILE = 5700  # the default JPG profile
RAW_PROFILE = 163322  # a default RAW profile (from the quickstart example)
T0 = 1_800_000_000.0


def product_photo(size: tuple[int, int] = (240, 160)) -> Image.Image:
    """A slightly dark, blue-tinted product shot: there is something for an editor to correct."""
    width, height = size
    photo = Image.new("RGB", size, (70, 80, 110))
    draw = ImageDraw.Draw(photo)
    draw.rectangle((width // 3, height // 4, width * 2 // 3, height * 3 // 4), fill=(150, 60, 40))
    draw.ellipse((10, 10, 50, 50), fill=(200, 200, 90))
    return photo


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


JPEG = encoded(product_photo(), "JPEG")
PNG = encoded(product_photo(), "PNG")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    b = b.resize(a.size)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


# --- a small client over raw HTTP ----------------------------------------------------------------


class Api:
    """The /v1 calls with an x-api-key, exactly as the quickstart shows them."""

    def __init__(self, sandbox: ImagenSandbox, key: str = KEY) -> None:
        self.url = sandbox.api_url
        self.headers = {"x-api-key": key}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers)

    def post(self, path: str, body: Any = None, *, content_type: str | None = "") -> httpx.Response:
        headers = dict(self.headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        content = b"" if body is None else httpx.Request("POST", "/", json=body).read()
        return httpx.post(self.url + path, content=content, headers=headers)

    def project(self, name: str | None = None) -> str:
        response = self.post("/projects/", {} if name is None else {"name": name}, content_type="application/json")
        assert response.status_code == 200, response.text
        return response.json()["data"]["project_uuid"]

    def upload_links(self, project: str, *names: str) -> httpx.Response:
        return self.post(
            f"/projects/{project}/get_temporary_upload_links",
            {"files_list": [{"file_name": name} for name in names]},
            content_type="application/json",
        )

    def upload(self, project: str, files: dict[str, bytes]) -> None:
        response = self.upload_links(project, *files)
        assert response.status_code == 200, response.text
        for entry in response.json()["data"]["files_list"]:
            put = httpx.put(entry["upload_link"], content=files[entry["file_name"]], headers={"Content-Type": ""})
            assert put.status_code == 200, put.text

    def edit(self, project: str, **body: Any) -> httpx.Response:
        return self.post(f"/projects/{project}/edit", {"profile_key": JPG_PROFILE, **body})

    def export(self, project: str) -> httpx.Response:
        return self.post(f"/projects/{project}/export")

    def status(self, project: str, action: str) -> str:
        response = self.get(f"/projects/{project}/{action}/status")
        assert response.status_code == 200, response.text
        return response.json()["data"]["status"]

    def wait(self, project: str, action: str, limit: float = 15.0) -> list[str]:
        """Every status seen while polling until a terminal one."""
        seen: list[str] = []
        deadline = time.monotonic() + limit
        while not seen or seen[-1] not in ("Completed", "Failed"):
            assert time.monotonic() < deadline, f"{action} stuck in {seen[-1]}"
            seen.append(self.status(project, action))
            time.sleep(0.02)
        return seen

    def links(self, project: str, action: str) -> list[dict[str, str]]:
        response = self.get(f"/projects/{project}/{action}/get_temporary_download_links")
        assert response.status_code == 200, response.text
        return response.json()["data"]["files_list"]

    def edited_and_exported(self, project: str, **options: Any) -> list[dict[str, str]]:
        assert self.edit(project, **options).status_code == 200
        assert self.wait(project, "edit")[-1] == "Completed"
        assert self.export(project).status_code == 200
        assert self.wait(project, "export")[-1] == "Completed"
        return self.links(project, "export")


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., ImagenSandbox]]:
    started: list[ImagenSandbox] = []

    def make(**options: Any) -> ImagenSandbox:
        options.setdefault("edit_pending_seconds", 0.02)
        options.setdefault("edit_seconds", 0.05)
        options.setdefault("export_seconds", 0.05)
        sandbox = ImagenSandbox(**options)
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., ImagenSandbox]) -> ImagenSandbox:
    return make_sandbox()


@pytest.fixture
def api(sandbox: ImagenSandbox) -> Api:
    return Api(sandbox)


# --- auth and profiles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, detail",
    [
        ({}, "Missing x-api-key header."),
        ({"x-api-key": "not-a-key"}, "Invalid API key or unauthorized."),
        ({"Authorization": f"Bearer {KEY}"}, "Missing x-api-key header."),  # only x-api-key counts
    ],
)
def test_profiles_need_a_known_x_api_key(sandbox: ImagenSandbox, headers: dict[str, str], detail: str) -> None:
    response = httpx.get(sandbox.api_url + "/profiles/", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert httpx.get(sandbox.api_url + f"/profiles?x-api-key={KEY}").status_code == 401
    assert sandbox.stats()["auth_failures"] == 2


def test_profiles_are_listed_with_and_without_trailing_slash(sandbox: ImagenSandbox, api: Api) -> None:
    for path in ("/profiles", "/profiles/"):
        response = api.get(path)
        assert response.status_code == 200
        profiles = response.json()["data"]["profiles"]
        assert {p["profile_key"] for p in profiles} >= {14715, 163322, JPG_PROFILE}
        for profile in profiles:
            assert set(profile) == {"profile_key", "profile_name", "profile_type", "image_type"}
            assert profile["image_type"] in ("RAW", "JPG")
    assert sandbox.stats()["requests"]["profiles"] == 2


def test_keys_and_profiles_can_be_registered_in_python_and_over_http(sandbox: ImagenSandbox) -> None:
    assert httpx.get(sandbox.api_url + "/profiles", headers={"x-api-key": "second-key"}).status_code == 401
    assert httpx.post(sandbox.base_url + "/_sandbox/api_keys", json={"key": "second-key"}).status_code == 200
    sandbox.add_api_key("third-key")
    assert (
        httpx.post(
            sandbox.base_url + "/_sandbox/profiles",
            json={"profile_key": 777, "profile_name": "STUDIO", "image_type": "JPG"},
        ).status_code
        == 200
    )
    sandbox.add_profile(888, "WARM", profile_type="Talent", image_type="RAW")
    for key in ("second-key", "third-key"):
        profiles = Api(sandbox, key).get("/profiles").json()["data"]["profiles"]
        assert {
            "profile_key": 777,
            "profile_name": "STUDIO",
            "profile_type": "Personal",
            "image_type": "JPG",
        } in profiles
        assert {"profile_key": 888, "profile_name": "WARM", "profile_type": "Talent", "image_type": "RAW"} in profiles
    assert httpx.post(sandbox.base_url + "/_sandbox/profiles", json={"profile_key": "x"}).status_code == 400


# --- the whole flow ------------------------------------------------------------------------------


def test_full_flow_create_upload_edit_export_download(make_sandbox: Callable[..., ImagenSandbox]) -> None:
    # Pending for 4 s: long enough that a stalled CI machine cannot reach the first status poll
    # only after the edit has left Pending (the test then waits for it: 3.5 s more than before).
    sandbox = make_sandbox(edit_pending_seconds=4.0, edit_seconds=0.3, export_seconds=0.3)
    api = Api(sandbox)
    project = api.project("shop-batch-1")
    links = api.upload_links(project, "8123456789_44070841549106.jpg")
    assert links.status_code == 200
    [entry] = links.json()["data"]["files_list"]
    assert entry["file_name"] == "8123456789_44070841549106.jpg"
    # [DOC] the PUT carries no x-api-key and an empty Content-Type.
    put = httpx.put(entry["upload_link"], content=JPEG, headers={"Content-Type": ""})
    assert put.status_code == 200

    started = api.edit(
        project, photography_type="OTHER", crop=True, crop_aspect_ratio="4X5", straighten=True, subject_mask=True
    )
    assert started.status_code == 200
    assert started.json()["data"] == {"project_uuid": project, "status": "Pending", "action": "edit"}
    seen = api.wait(project, "edit")
    assert seen[0] == "Pending" and seen[-1] == "Completed"
    assert set(seen) <= {"Pending", "In Progress", "Completed"}
    status = api.get(f"/projects/{project}/edit/status").json()["data"]
    assert status == {"status": "Completed", "progress": 100.0, "details": None}

    # [DOC] the edit alone is a JPEG with embedded XMP: nothing visible has changed yet.
    [edited] = api.links(project, "edit")
    edited_bytes = httpx.get(edited["download_link"]).content
    assert ImageChops.difference(decode(edited_bytes).convert("RGB"), decode(JPEG).convert("RGB")).getbbox() is None
    packet = extract(edited_bytes)
    assert packet is not None and b"crs:HasCrop=\"True\"" in packet and b"straighten" in packet
    assert api.get(f"/projects/{project}/export/get_temporary_download_links").status_code == 400

    exporting = api.export(project)
    assert exporting.json()["data"] == {"project_uuid": project, "status": "In Progress", "action": "export"}
    assert api.wait(project, "export")[-1] == "Completed"
    [exported] = api.links(project, "export")
    assert exported["file_name"] == "8123456789_44070841549106.jpg"
    assert urlsplit(exported["download_link"]).path.endswith("/8123456789_44070841549106.jpg")
    result = httpx.get(exported["download_link"])
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    image = decode(result.content)
    assert image.format == "JPEG"
    assert image.width / image.height == pytest.approx(5 / 4, abs=0.02)  # landscape 4X5 crop
    assert mean_difference(image, decode(JPEG)) > 8  # visibly edited

    stats = sandbox.stats()
    assert stats["charges"] == 1 and stats["charges_per_image"] == {f"{project}/8123456789_44070841549106.jpg": 1}
    assert (stats["edits_started"], stats["exports_started"], stats["images_uploaded"], stats["projects"]) == (
        1,
        1,
        1,
        1,
    )
    assert stats["uploads_with_api_key"] == 0
    seen_by_sandbox = httpx.get(f"{sandbox.base_url}/_sandbox/projects/{project}").json()
    assert seen_by_sandbox["edit"]["options"]["crop_aspect_ratio"] == "4X5"
    assert seen_by_sandbox["edit"]["options"]["subject_mask"] is True


def test_export_depends_on_the_profile_and_the_photo(sandbox: ImagenSandbox, api: Api) -> None:
    sandbox.add_profile(5701, "OTHER LOOK")
    results = []
    for profile in (JPG_PROFILE, 5701):
        project = api.project()
        api.upload(project, {"a.jpg": JPEG})
        [link] = api.edited_and_exported(project, profile_key=profile)
        results.append(decode(httpx.get(link["download_link"]).content))
    assert results[0].size == decode(JPEG).size  # no crop asked, no crop done
    assert mean_difference(results[0], results[1]) > 1


def test_project_names_are_unique_and_projects_private_to_their_key(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project("unique")
    assert api.post("/projects/", {"name": "unique"}, content_type="application/json").status_code == 400
    sandbox.add_api_key("someone-else")
    other = Api(sandbox, "someone-else")
    assert other.upload_links(project, "a.jpg").status_code == 404
    assert other.get(f"/projects/{project}/edit/status").status_code == 404
    assert api.get("/projects/00000000-0000-0000-0000-000000000000/edit/status").json() == {
        "detail": "Project not found."
    }


# --- uploads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["photo.png", "photo.webp", "photo.tiff", "photo", "IMG_1.CR2"])
def test_only_jpeg_file_names_get_upload_links(api: Api, name: str) -> None:
    project = api.project()
    response = api.upload_links(project, "ok.jpg", name)
    assert response.status_code == 400
    assert name in response.json()["detail"]
    assert api.upload_links(project, "ok.jpg", "also.JPEG").status_code == 200  # nothing was half-registered


def test_file_names_are_unique_per_project(api: Api) -> None:
    project = api.project()
    assert api.upload_links(project, "a.jpg", "a.jpg").status_code == 400
    assert api.upload_links(project, "a.jpg").status_code == 200
    again = api.upload_links(project, "b.jpg", "a.jpg")
    assert again.status_code == 400 and "a.jpg" in again.json()["detail"]
    assert api.upload_links(api.project(), "a.jpg").status_code == 200  # another project, same name: fine


def test_png_bytes_under_a_jpg_name_fail_the_edit_and_charge_nothing(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"good.jpg": JPEG, "disguised.jpg": PNG})
    assert sandbox.stats()["non_jpeg_uploads"] == 1
    assert api.edit(project).status_code == 200
    assert api.wait(project, "edit")[-1] == "Failed"
    details = api.get(f"/projects/{project}/edit/status").json()["data"]["details"]
    assert "disguised.jpg" in details and "good.jpg" not in details
    assert api.export(project).status_code == 400
    assert sandbox.stats()["charges"] == 0 and sandbox.stats()["edits_failed"] == 1


def test_upload_with_a_content_type_is_refused_like_s3(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    [entry] = api.upload_links(project, "a.jpg").json()["data"]["files_list"]
    refused = httpx.put(entry["upload_link"], content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert refused.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in refused.text
    assert api.edit(project).json() == {"detail": "The project has no uploaded files to edit."}
    # Absent Content-Type works as well as an empty one [DOC].
    assert httpx.put(entry["upload_link"], content=JPEG).status_code == 200
    assert api.edit(project).status_code == 200
    assert sandbox.stats()["uploads_refused_content_type"] == 1


def test_an_upload_carrying_the_api_key_is_counted(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    [entry] = api.upload_links(project, "a.jpg").json()["data"]["files_list"]
    assert (
        httpx.put(entry["upload_link"], content=JPEG, headers={"Content-Type": "", "x-api-key": KEY}).status_code == 200
    )
    assert sandbox.stats()["uploads_with_api_key"] == 1


# --- edit options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        ({"crop": True, "portrait_crop": True}, "Only one of"),
        ({"crop": True, "headshot_crop": True}, "Only one of"),
        ({"portrait_crop": True, "headshot_crop": True}, "Only one of"),
        ({"straighten": True, "perspective_correction": True}, "cannot be enabled together"),
        ({"crop_aspect_ratio": "16X9"}, "crop_aspect_ratio"),
        ({"hdr_output_compression": "ZIP"}, "hdr_output_compression"),
        ({"photography_type": "PRODUCT"}, "photography_type"),
        ({"crop": "yes"}, "crop must be a boolean"),
        ({"sky_replacement_template_id": "2"}, "sky_replacement_template_id"),
        ({"auto_magic": True}, "Unknown field"),
        ({"profile_key": "5700"}, "profile_key"),
        ({"profile_key": None}, "profile_key"),
        ({"profile_key": 99999}, "Unknown profile_key"),
        ({"profile_key": RAW_PROFILE}, "RAW profile"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
    ],
)
def test_invalid_edit_requests_are_400_and_start_nothing(
    sandbox: ImagenSandbox, api: Api, body: dict[str, Any], words: str
) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    response = api.edit(project, **body)
    assert response.status_code == 400
    assert words in response.json()["detail"]
    assert sandbox.stats()["edits_started"] == 0
    assert api.get(f"/projects/{project}/edit/status").status_code == 404


def test_allowed_combinations_are_accepted(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    response = api.edit(
        project,
        crop=True,
        straighten=True,
        perspective_correction=False,
        portrait_crop=False,
        subject_mask=True,
        smooth_skin=True,
        hdr_output_compression="LOSSY",
        sky_replacement=True,
        sky_replacement_template_id=2,
        photography_type="NO_TYPE",
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_edit_and_export_require_an_empty_content_type(api: Api, content_type: str) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    refused = api.post(f"/projects/{project}/edit", {"profile_key": JPG_PROFILE}, content_type=content_type)
    assert refused.status_code == 400 and "empty Content-Type" in refused.json()["detail"]
    assert api.post(f"/projects/{project}/edit", {"profile_key": JPG_PROFILE}, content_type=None).status_code == 200
    api.wait(project, "edit")
    assert api.post(f"/projects/{project}/export", content_type=content_type).status_code == 400
    assert api.post(f"/projects/{project}/export", content_type=None).status_code == 200


# --- order of steps ------------------------------------------------------------------------------


def test_steps_out_of_order_are_refused(make_sandbox: Callable[..., ImagenSandbox]) -> None:
    # Long enough that the requests in a row fall inside each step even if a stalled CI machine
    # loses 3 s between them (the edit: 4 s in all, waited for below).
    sandbox = make_sandbox(edit_pending_seconds=0.5, edit_seconds=3.5, export_seconds=5.0)
    api = Api(sandbox)
    project = api.project()
    assert api.get(f"/projects/{project}/edit/status").status_code == 404
    assert api.edit(project).status_code == 400  # nothing uploaded
    api.upload(project, {"a.jpg": JPEG})
    assert api.export(project).status_code == 400  # nothing edited
    assert api.edit(project).status_code == 200
    assert api.edit(project).status_code == 409  # still running
    assert api.get(f"/projects/{project}/edit/get_temporary_download_links").status_code == 400
    assert api.get(f"/projects/{project}/export/status").status_code == 404
    api.wait(project, "edit")
    assert api.export(project).status_code == 200
    assert api.export(project).status_code == 409
    assert api.edit(project).status_code == 409  # not during an export either
    assert sandbox.stats()["edits_started"] == 1 and sandbox.stats()["exports_started"] == 1


# --- temporary links -----------------------------------------------------------------------------


def test_download_links_expire_and_fetching_links_again_gives_fresh_ones(
    make_sandbox: Callable[..., ImagenSandbox],
) -> None:
    clock = FakeClock(T0)
    sandbox = make_sandbox(link_lifetime_seconds=60, clock=clock)
    api = Api(sandbox)
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    [old] = api.edited_and_exported(project)
    assert httpx.get(old["download_link"]).status_code == 200
    clock.now += 61
    expired = httpx.get(old["download_link"])
    assert expired.status_code == 403
    assert expired.headers["content-type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code>" in expired.text and "Request has expired" in expired.text
    [fresh] = api.links(project, "export")
    assert fresh["download_link"] != old["download_link"]
    assert decode(httpx.get(fresh["download_link"]).content).format == "JPEG"
    assert sandbox.stats()["expired_link_fetches"] == 1


def test_upload_links_expire_too(make_sandbox: Callable[..., ImagenSandbox]) -> None:
    clock = FakeClock(T0)
    sandbox = make_sandbox(link_lifetime_seconds=30, clock=clock)
    api = Api(sandbox)
    project = api.project()
    [entry] = api.upload_links(project, "a.jpg").json()["data"]["files_list"]
    clock.now += 31
    late = httpx.put(entry["upload_link"], content=JPEG, headers={"Content-Type": ""})
    assert late.status_code == 403 and "Request has expired" in late.text
    assert sandbox.stats()["images_uploaded"] == 0


def test_tampered_or_repurposed_links_are_refused(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG, "b.jpg": JPEG})
    [link_a, _] = api.edited_and_exported(project)
    url = link_a["download_link"]
    for bad in (url.replace("/a.jpg", "/b.jpg"), url.replace("/exports/", "/uploads/"), url.split("?")[0]):
        response = httpx.get(bad)
        assert response.status_code == 403, bad
        assert "<Error>" in response.text
    assert httpx.put(url, content=JPEG).status_code == 403  # a GET link cannot upload


# --- charges -------------------------------------------------------------------------------------


def test_every_charge_is_counted_per_image(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"p1_m1.jpg": JPEG, "p2_m2.jpg": JPEG})
    api.edited_and_exported(project)
    assert sandbox.stats()["charges"] == 2
    api.export(project)  # exporting again is free
    api.wait(project, "export")
    assert sandbox.stats()["charges"] == 2
    # Editing the same project again is paid again: the counter shows the second charge.
    assert api.edit(project).status_code == 200
    assert api.wait(project, "edit")[-1] == "Completed"
    stats = sandbox.stats()
    assert stats["charges"] == 4
    assert stats["charges_per_image"] == {f"{project}/p1_m1.jpg": 2, f"{project}/p2_m2.jpg": 2}
    assert stats["charges_per_file_name"] == {"p1_m1.jpg": 2, "p2_m2.jpg": 2}
    assert stats["charges_per_key"] == {KEY: 4}
    assert httpx.get(sandbox.base_url + "/_sandbox/stats").json()["charges"] == 4


# --- faults --------------------------------------------------------------------------------------


def test_5xx_faults_answer_n_times_then_recover(sandbox: ImagenSandbox, api: Api) -> None:
    assert (
        httpx.post(
            sandbox.base_url + "/_sandbox/faults", json={"endpoint": "profiles", "status": 503, "count": 2}
        ).status_code
        == 200
    )
    assert [api.get("/profiles").status_code for _ in range(3)] == [503, 503, 200]
    assert sandbox.stats()["requests"]["profiles"] == 3 and sandbox.stats()["faults_pending"] == 0


def test_html_fault_is_a_proxy_page(sandbox: ImagenSandbox, api: Api) -> None:
    sandbox.add_fault("create_project", mode="html")
    response = api.post("/projects/", {}, content_type="application/json")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert sandbox.stats()["projects"] == 0
    api.project()
    assert sandbox.stats()["projects"] == 1


def test_hang_fault_outlasts_a_short_client_timeout(sandbox: ImagenSandbox, api: Api) -> None:
    # The hang outlasts the 0.2 s timeout by more than a stalled CI machine can lose (the sandbox's
    # stop waits for it: 3 s more than before).
    sandbox.add_fault("profiles", mode="hang", seconds=4.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sandbox.api_url + "/profiles", headers={"x-api-key": KEY}, timeout=0.2)
    assert api.get("/profiles").status_code == 200


def test_dropped_edit_response_still_runs_and_charges_once(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    sandbox.add_fault("edit", mode="drop_response")
    assert api.edit(project).status_code == 500
    # A careful client asks for the status instead of editing again.
    assert api.wait(project, "edit")[-1] == "Completed"
    assert sandbox.stats()["charges_per_image"] == {f"{project}/a.jpg": 1}


def test_fail_fault_ends_the_job_failed(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    assert api.edit(project).status_code == 200
    api.wait(project, "edit")
    sandbox.add_fault("export", mode="fail")
    assert api.export(project).status_code == 200
    assert api.wait(project, "export")[-1] == "Failed"
    assert api.get(f"/projects/{project}/export/get_temporary_download_links").status_code == 400
    assert api.export(project).status_code == 200  # a failed export can be retried
    assert api.wait(project, "export")[-1] == "Completed"
    assert sandbox.stats()["exports_failed"] == 1


def test_storage_faults_answer_in_s3_xml(sandbox: ImagenSandbox, api: Api) -> None:
    project = api.project()
    api.upload(project, {"a.jpg": JPEG})
    [link] = api.edited_and_exported(project)
    sandbox.add_fault("download", status=503)
    response = httpx.get(link["download_link"])
    assert response.status_code == 503 and "<Code>SlowDown</Code>" in response.text
    assert httpx.get(link["download_link"]).status_code == 200


def test_fault_api_rejects_nonsense_and_can_be_cleared(sandbox: ImagenSandbox) -> None:
    for body in (
        {"endpoint": "delete_everything", "status": 500},
        {"endpoint": "profiles", "status": 404},
        {"endpoint": "profiles", "mode": "drop_response"},
        {"endpoint": "edit", "mode": "hang"},
        {"endpoint": "edit"},
        {"endpoint": "edit", "status": 500, "count": 0},
    ):
        assert httpx.post(sandbox.base_url + "/_sandbox/faults", json=body).status_code == 400, body
    sandbox.add_fault("profiles", status=500, count=3)
    assert sandbox.stats()["faults_pending"] == 3
    assert httpx.delete(sandbox.base_url + "/_sandbox/faults").status_code == 200
    assert Api(sandbox).get("/profiles").status_code == 200


# --- callbacks -----------------------------------------------------------------------------------


def test_callbacks_report_edit_and_export(sandbox: ImagenSandbox, api: Api) -> None:
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    async def hook(request: Request) -> Response:
        with lock:
            received.append(await request.json())
        return Response(status_code=204)

    with serve_in_thread(Starlette(routes=[Route("/hook/secret-token", hook, methods=["POST"])])) as receiver:
        project = api.project()
        api.upload(project, {"a.jpg": JPEG})
        api.edited_and_exported(project, callback_url=f"{receiver.url}/hook/secret-token")
        deadline = time.monotonic() + 10
        while len(received) < 2:
            assert time.monotonic() < deadline, "callbacks never arrived"
            time.sleep(0.02)
    assert sorted(received, key=lambda body: body["action"]) == [
        {"project_uuid": project, "status": "Completed", "action": "edit"},
        {"project_uuid": project, "status": "Completed", "action": "export"},
    ]
    assert sandbox.stats()["callbacks"] == {"delivered": 2, "failed": 0}
