"""ImagenSandbox: a loopback emulator of Imagen AI's `/v1` API and its presigned storage links.

    sandbox = ImagenSandbox(edit_seconds=0.1, export_seconds=0.1, link_lifetime_seconds=60)
    sandbox.start()                          # uvicorn on 127.0.0.1, free port
    ImagenClient(api_key, base_url=sandbox.api_url)   # api_url = base_url + "/v1"
    ...
    sandbox.close()

Public API (as CONTRACTS.md §2 describes it; `x-api-key` on every /v1 call):
    GET  /v1/profiles[/]
    POST /v1/projects[/]                                          {"name"?}
    POST /v1/projects/{uuid}/get_temporary_upload_links           {"files_list": [{"file_name"}]}
    POST /v1/projects/{uuid}/edit                                 empty Content-Type, JSON body
    GET  /v1/projects/{uuid}/edit/status
    GET  /v1/projects/{uuid}/edit/get_temporary_download_links    JPEG + embedded XMP
    POST /v1/projects/{uuid}/export                               empty Content-Type
    GET  /v1/projects/{uuid}/export/status
    GET  /v1/projects/{uuid}/export/get_temporary_download_links  rendered JPEGs
Storage, "S3" (no x-api-key; the presigned query string is the credential):
    PUT  /s3/uploads/{uuid}/{file_name}?X-Amz-…     empty/absent Content-Type
    GET  /s3/{edits|exports}/{uuid}/{file_name}?X-Amz-…
Inspection and faults (sandbox only, no auth):
    GET    /_sandbox/stats
    GET    /_sandbox/projects/{uuid}
    POST   /_sandbox/faults     {"endpoint", "status": 5xx|429, "retry_after"? | "mode": hang|html|reset|truncated|
                                 non_json|wrong_shape|drop_response|fail, "count", "seconds", "skip", "probability"}
                                {"endpoint": "webhook", "mode": "duplicate"|"late", "seconds"?}  (the callbacks)
    DELETE /_sandbox/faults
    POST   /_sandbox/api_keys   {"key"}
    POST   /_sandbox/profiles   {"profile_key", "profile_name", "profile_type"?, "image_type"?}
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retouch.plugin.serve import LoopbackSandbox

from ....sandbox_kit.faults import (
    Fault,
    SandboxFaults,
    answer_for,
    answered_after_work,
    delay_for,
    fault_from_body,
    retry_after_headers,
)
from . import contract
from .faults import STORAGE_ENDPOINTS, fault_book
from .jobs import CallbackSender, JobRunner
from .links import UPLOADS, LinkError, LinkSigner, LinkTarget, s3_error
from .state import ApiError, Project, SandboxState
from .validation import RequestError, parse_edit, parse_files_list, parse_project_name

DEFAULT_API_KEY = "imagen_sandbox_key"  # registered unless `api_keys` says otherwise

Handler = Callable[[Request, str, Fault | None], Awaitable[Response]]


def _data(body: dict[str, Any]) -> JSONResponse:
    """[DOC] successful answers are wrapped in {"data": …}."""
    return JSONResponse({"data": body})


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({contract.ERROR_FIELD: detail}, status_code=status)


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").strip()


def _json_body(raw: bytes, *, required: bool) -> Any:
    if not raw.strip():
        if required:
            raise RequestError("The body must be a JSON object.")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("The body is not valid JSON.") from None


class ImagenSandbox(LoopbackSandbox, SandboxFaults):
    """Imagen AI on loopback: key auth, profiles, projects, presigned uploads, async edit/export, expiring links."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        profiles: Iterable[dict[str, Any]] = contract.DEFAULT_PROFILES,
        edit_pending_seconds: float = 0.5,
        edit_seconds: float = 2.0,
        export_seconds: float = 1.0,
        link_lifetime_seconds: float = contract.LINK_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
        profile: str = "default",
    ) -> None:
        """profile: "default" (the quickstart's wrapped shapes), or "production": as the SDK source says
        production answers (contract.PROFILES): bodies at the root, a bare list of profiles,
        {"error": {"message"}} errors, exports renamed `x.jpg` -> `x.JPG`."""
        if profile not in contract.PROFILES:
            raise ValueError(f"profile must be one of {contract.PROFILES}")
        self.profile = profile
        self._state = SandboxState(tuple(api_keys), tuple(profiles))
        self.faults = fault_book()
        self._links = LinkSigner(link_lifetime_seconds, clock)
        self._stop = threading.Event()
        self._callbacks = CallbackSender(self.faults, self._stop)
        self._jobs = JobRunner(
            self._state,
            edit_pending_seconds=edit_pending_seconds,
            edit_seconds=edit_seconds,
            export_seconds=export_seconds,
            stop=self._stop,
            callbacks=self._callbacks,
            rename_exports=profile == "production",
        )
        project = contract.PROJECT_PATH
        routes = [
            *(Route(path, self._api("profiles", self._profiles), methods=["GET"]) for path in contract.PROFILES_PATHS),
            *(
                Route(path, self._api("create_project", self._create_project), methods=["POST"])
                for path in contract.PROJECTS_PATHS
            ),
            Route(
                f"{project}/get_temporary_upload_links", self._api("upload_links", self._upload_links), methods=["POST"]
            ),
            Route(f"{project}/edit", self._api("edit", self._edit), methods=["POST"]),
            Route(
                f"{project}/edit/status", self._api("edit_status", self._status(contract.ACTION_EDIT)), methods=["GET"]
            ),
            Route(
                f"{project}/edit/get_temporary_download_links",
                self._api("edit_links", self._download_links(contract.ACTION_EDIT)),
                methods=["GET"],
            ),
            Route(f"{project}/export", self._api("export", self._export), methods=["POST"]),
            Route(
                f"{project}/export/status",
                self._api("export_status", self._status(contract.ACTION_EXPORT)),
                methods=["GET"],
            ),
            Route(
                f"{project}/export/get_temporary_download_links",
                self._api("export_links", self._download_links(contract.ACTION_EXPORT)),
                methods=["GET"],
            ),
            Route("/s3/{bucket}/{project_uuid}/{file_name}", self._storage, methods=["GET", "PUT"]),
            Route("/_sandbox/stats", self._stats_endpoint, methods=["GET"]),
            Route("/_sandbox/projects/{project_uuid}", self._project_endpoint, methods=["GET"]),
            Route("/_sandbox/faults", self._faults_endpoint, methods=["POST", "DELETE"]),
            Route("/_sandbox/api_keys", self._api_keys_endpoint, methods=["POST"]),
            Route("/_sandbox/profiles", self._profiles_endpoint, methods=["POST"]),
        ]
        self.app = Starlette(
            routes=routes, exception_handlers={HTTPException: self._http_exception, Exception: self._crash}
        )

    # --- the answer shapes of this profile ----------------------------------------------------------

    def _data(self, body: dict[str, Any]) -> JSONResponse:
        if self.profile != "production":
            return _data(body)
        if set(body) == {"profiles"}:
            return JSONResponse(body["profiles"])  # [DOC: SDK source] a bare list in production
        return JSONResponse(body)  # [DOC: SDK source] at the root in production

    def _error(self, status: int, detail: str) -> JSONResponse:
        if self.profile != "production":
            return _error(status, detail)
        return JSONResponse({"error": {"message": detail}}, status_code=status)  # [DOC: SDK source]

    # --- running ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's root (the /_sandbox routes live here)."""
        return self.server_url

    @property
    def api_url(self) -> str:
        """What the Imagen SDK calls base_url: the root plus /v1."""
        return self.base_url + contract.API_PREFIX

    def _shutdown(self) -> None:
        """The job threads stop with the server."""
        self._stop.set()

    # --- inspection, registration and faults (also over HTTP under /_sandbox) ---------------------

    def add_api_key(self, key: str) -> None:
        self._state.add_key(key)

    def add_profile(
        self, profile_key: int, profile_name: str, profile_type: str = "Personal", image_type: str = "JPG"
    ) -> None:
        """Register (or replace) a profile; every key sees every profile."""
        self._state.add_profile(profile_key, profile_name, profile_type, image_type)

    def stats(self) -> dict[str, Any]:
        """Requests by endpoint, projects, uploads, edits/exports, charges (total, per image, per file name, per key)."""
        stats = self._state.stats()
        stats["faults_pending"] = self.faults.pending()
        stats["faults_served"] = self.faults.served()
        stats["callbacks"] = {"delivered": self._callbacks.delivered, "failed": self._callbacks.failed}
        return stats

    def project(self, project_uuid: str) -> dict[str, Any] | None:
        """A project's files, edit (with the options received) and export, or None."""
        return self._state.project_json(project_uuid)

    # --- the common path of every /v1 request -----------------------------------------------------

    def _api(self, endpoint: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint_function(request: Request) -> Response:
            fault, instead = await self._apply_fault(endpoint)
            if instead is not None:
                return instead
            try:
                key = self._authenticate(request)
                return await handler(request, key, fault)
            except RequestError as exc:
                return self._error(contract.BAD_REQUEST, str(exc))
            except ApiError as exc:
                return self._error(exc.status, exc.detail)

        return endpoint_function

    async def _apply_fault(self, endpoint: str) -> tuple[Fault | None, Response | None]:
        """Count the request; (the fault to pass on, or a response to send instead)."""
        self._state.count_request(endpoint)
        fault = self.faults.take(endpoint)
        if fault is None:
            return None, None
        if fault.status is not None:
            if endpoint in STORAGE_ENDPOINTS:
                code = "SlowDown" if fault.status in (429, 503) else "InternalError"
                answer = s3_error(LinkError(fault.status, code, "We encountered an internal error. Please try again."))
            else:
                answer = self._error(
                    fault.status, "Too Many Requests" if fault.status == 429 else "Internal Server Error"
                )
            answer.headers.update(retry_after_headers(fault))
            return None, answer
        if answered_after_work(self.faults, fault) or fault.mode == "fail":
            return fault, None  # the handler does the work, then decides
        instead = answer_for(fault)
        if instead is not None:
            return None, instead
        await delay_for(fault)
        return None, None

    def _authenticate(self, request: Request) -> str:
        """[DOC] the key travels in x-api-key only."""
        key = request.headers.get(contract.API_KEY_HEADER)
        if not key:
            self._state.count("auth_failures")
            raise ApiError(contract.UNAUTHORIZED, contract.MISSING_KEY_MESSAGE)
        if not self._state.is_key(key):
            self._state.count("auth_failures")
            raise ApiError(contract.UNAUTHORIZED, contract.INVALID_KEY_MESSAGE)
        return key

    def _project_of(self, request: Request, key: str) -> Project:
        return self._state.project(key, request.path_params["project_uuid"])

    # --- the API ----------------------------------------------------------------------------------

    async def _profiles(self, request: Request, key: str, fault: Fault | None) -> Response:
        return self._data({"profiles": self._state.profiles()})

    async def _create_project(self, request: Request, key: str, fault: Fault | None) -> Response:
        name = parse_project_name(_json_body(await request.body(), required=False))
        project = self._state.create_project(key, name)
        return self._data({"project_uuid": project.uuid})

    async def _upload_links(self, request: Request, key: str, fault: Fault | None) -> Response:
        project = self._project_of(request, key)
        names = parse_files_list(_json_body(await request.body(), required=True))
        self._state.add_upload_names(project, names)
        base = str(request.base_url)
        files = [
            {"file_name": name, "upload_link": self._links.sign(base, "PUT", LinkTarget(UPLOADS, project.uuid, name))}
            for name in names
        ]
        return self._data({"files_list": files})

    def _require_empty_content_type(self, request: Request) -> None:
        if contract.REQUIRE_EMPTY_CONTENT_TYPE and _content_type(request):
            raise RequestError(f"This endpoint requires an empty Content-Type header (got {_content_type(request)!r}).")

    async def _edit(self, request: Request, key: str, fault: Fault | None) -> Response:
        project = self._project_of(request, key)
        self._require_empty_content_type(request)
        edit_request = parse_edit(_json_body(await request.body(), required=True))
        job = self._state.start_edit(project, edit_request, fail=fault is not None and fault.mode == "fail")
        answer = {"project_uuid": project.uuid, "status": job.status, "action": contract.ACTION_EDIT}
        self._jobs.submit(project, job)
        return self._answer(answer, fault)

    async def _export(self, request: Request, key: str, fault: Fault | None) -> Response:
        project = self._project_of(request, key)
        self._require_empty_content_type(request)
        job = self._state.start_export(project, fail=fault is not None and fault.mode == "fail")
        answer = {"project_uuid": project.uuid, "status": job.status, "action": contract.ACTION_EXPORT}
        self._jobs.submit(project, job)
        return self._answer(answer, fault)

    def _answer(self, answer: dict[str, Any], fault: Fault | None) -> Response:
        if fault is not None and answered_after_work(self.faults, fault):
            # The job runs (and an edit will be charged); only the answer is lost or broken.
            return answer_for(fault) or self._error(500, "Internal Server Error")
        return self._data(answer)

    def _status(self, action: str) -> Handler:
        async def status(request: Request, key: str, fault: Fault | None) -> Response:
            return self._data(self._state.job_status(self._project_of(request, key), action))

        return status

    def _download_links(self, action: str) -> Handler:
        async def links(request: Request, key: str, fault: Fault | None) -> Response:
            project = self._project_of(request, key)
            base = str(request.base_url)
            files = [
                {
                    "file_name": name,
                    "download_link": self._links.sign(base, "GET", LinkTarget(bucket, project.uuid, name)),
                }
                for bucket, name in self._state.result_files(project, action)
            ]
            return self._data({"files_list": files})

        return links

    # --- storage ("S3") ---------------------------------------------------------------------------

    async def _storage(self, request: Request) -> Response:
        uploading = request.method == "PUT"
        data = await request.body() if uploading else b""
        _, instead = await self._apply_fault("upload" if uploading else "download")
        if instead is not None:
            return instead
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        try:
            self._links.verify(request.method, raw_path, dict(request.query_params))
        except LinkError as error:
            if error.message == "Request has expired":
                self._state.count("expired_link_fetches")
            return s3_error(error)
        bucket, project_uuid, file_name = (
            request.path_params[name] for name in ("bucket", "project_uuid", "file_name")
        )
        if uploading:
            return self._put_object(request, bucket, project_uuid, file_name, data)
        found = self._state.read_object(bucket, project_uuid, file_name)
        if found is None:
            return s3_error(LinkError(404, "NoSuchKey", "The specified key does not exist."))
        return Response(found, media_type="image/jpeg", headers={"ETag": f'"{hashlib.md5(found).hexdigest()}"'})

    def _put_object(self, request: Request, bucket: str, project_uuid: str, file_name: str, data: bytes) -> Response:
        if request.headers.get(contract.API_KEY_HEADER) is not None:
            self._state.count("uploads_with_api_key")  # accepted, as S3 ignores unsigned headers; but counted
        if _content_type(request):
            # [DOC] Content-Type must be empty or absent; the signature covers it (see contract.py).
            self._state.count("uploads_refused_content_type")
            return s3_error(
                LinkError(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                )
            )
        if bucket != UPLOADS or not self._state.store_upload(project_uuid, file_name, data):
            return s3_error(LinkError(403, "AccessDenied", "Access Denied"))
        return Response(b"", status_code=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    # --- sandbox-only endpoints -------------------------------------------------------------------

    async def _stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _project_endpoint(self, request: Request) -> Response:
        found = self.project(request.path_params["project_uuid"])
        return JSONResponse(found) if found is not None else self._error(404, "Project not found.")

    async def _admin_body(self, request: Request) -> dict[str, Any]:
        body = _json_body(await request.body(), required=True)
        if not isinstance(body, dict):
            raise RequestError("The body must be a JSON object.")
        return body

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse({"ok": True})
        try:
            body = await self._admin_body(request)
            self.faults.add(fault_from_body(body))
        except (RequestError, ValueError, TypeError) as exc:
            return self._error(400, str(exc))
        return JSONResponse({"ok": True})

    async def _api_keys_endpoint(self, request: Request) -> Response:
        try:
            self.add_api_key((await self._admin_body(request)).get("key"))  # type: ignore[arg-type]  # add_api_key checks it
        except (RequestError, ValueError, TypeError) as exc:
            return self._error(400, str(exc))
        return JSONResponse({"ok": True})

    async def _profiles_endpoint(self, request: Request) -> Response:
        try:
            body = await self._admin_body(request)
            self.add_profile(
                body.get("profile_key"),  # type: ignore[arg-type]  # add_profile checks it
                str(body.get("profile_name", "")),
                str(body.get("profile_type", "Personal")),
                str(body.get("image_type", "JPG")),
            )
        except (RequestError, ValueError, TypeError) as exc:
            return self._error(400, str(exc))
        return JSONResponse({"ok": True})

    # --- every other failure as {"detail": …} -----------------------------------------------------

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        answer = self._error(exc.status_code, str(exc.detail))
        answer.headers.update(dict(exc.headers or {}))
        return answer

    async def _crash(self, request: Request, exc: Exception) -> Response:
        return self._error(500, "Internal Server Error")
