"""A thin async client for Imagen AI's `/v1` API and its presigned storage links (CONTRACTS.md §2).

One method per step of the flow (the answers are read by `answers.py`). Every failure is mapped to
the exception tree in `errors.py` where it enters.

    async with ImagenClient(api_key, "https://api.imagen-ai.com/v1") as client:
        project = await client.create_project()
        links = await client.upload_links(project, ["8123456789_44070841549106.jpg"])
        await client.upload(links["8123456789_44070841549106.jpg"], jpeg_bytes)
        await client.start_edit(project, profile_key=5700, photography_type=None, callback_url=None, options={})
        ...  # poll edit_status until "Completed", start_export, poll export_status
        data = await client.download((await client.export_links(project))["8123456789_44070841549106.jpg"])

Retries: GETs and storage PUTs (safe to repeat) are retried here, up to `retries` more times, on
5xx/408/timeouts/connection errors/non-JSON bodies (exponential backoff with jitter) and on 429
(after Retry-After, capped at 60 s). POSTs are never retried here: a lost answer to an edit may
still mean a started, charged edit, so the caller decides.

The API key only ever goes into the x-api-key header of /v1 calls: never to the storage host, nor
into logs, messages or reprs. A presigned link's query string is its credential: never logged either.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import pydantic
import structlog

from .. import reading
from ..http import ClosingClient, api_client, first_error
from . import contract
from .answers import (
    AcceptedShape,
    DownloadLinksShape,
    Profile,
    ProfilesShape,
    ProjectShape,
    Shape,
    StatusShape,
    UploadLinksShape,
    check_link,
    error_detail,
    match_exports,
    parse_retry_after,
    s3_error,
    unwrap,
    without_query,
)
from .errors import (
    AuthenticationFailed,
    ImagenError,
    InvalidRequest,
    LinkExpired,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)

log = structlog.get_logger(__name__)

API_KEY_HEADER = "x-api-key"
MAX_RETRY_DELAY = 60.0  # seconds: the longest the client itself waits before trying again
_T = TypeVar("_T")

# Non-retryable API statuses, by the class that names them. 429, 408 and 5xx are handled apart.
_CLIENT_ERRORS: dict[int, type[ImagenError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    404: NotFound,
    409: InvalidRequest,
    413: InvalidRequest,
    422: InvalidRequest,
}
_LINK_REFUSED = (403, 404, 410)  # what S3 answers for an expired, bad or stale presigned link


class ImagenClient(ClosingClient):
    """Async client for one Imagen API key. `base_url` is the API root including /v1."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 2,
        retry_base: float = 0.5,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or api_key != api_key.strip() or not api_key.isprintable():
            raise ValueError("the Imagen API key must be a non-empty printable string without surrounding spaces")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"base_url must be an http(s) URL such as https://api.imagen-ai.com/v1, got {base_url!r}")
        if retries < 0 or retry_base < 0 or timeout <= 0:
            raise ValueError("retries and retry_base must be >= 0, timeout > 0")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._retries = retries
        self._retry_base = retry_base
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it
        # Attempts by outcome ("ok", "rate_limited", "server_error", "client_error", "timeout",
        # "connection_error", "non_json_body"), for metrics; every attempt (retries too) counts once.
        self.stats: Counter[str] = Counter()
        # One connection pool for the API and the storage links: no base_url, so that a link never
        # borrows anything from the API's requests; the key is added per /v1 request only.
        self._http = api_client(timeout=timeout, transport=transport, headers={"User-Agent": "retouch/imagen"})

    def __repr__(self) -> str:
        return f"ImagenClient(base_url={self._base_url!r}, retries={self._retries})"

    # --- endpoints ----------------------------------------------------------------------------

    async def list_profiles(self) -> list[Profile]:
        """The account's editing profiles."""
        body = unwrap(await self._api("GET", "/profiles"))
        if isinstance(body, list):  # [DOC: SDK source] production answers a bare list
            body = {"profiles": body}
        parsed = self._parse(ProfilesShape, body, "profiles")
        return [Profile(p.profile_key, p.profile_name, p.profile_type, p.image_type) for p in parsed.profiles]

    async def create_project(self, name: str | None = None) -> str:
        """A new project's uuid. Names, when given, must be unique per account."""
        body = await self._api("POST", "/projects/", json_body={} if name is None else {"name": name})
        project_uuid = self._parse(ProjectShape, body, "create project").project_uuid
        log.info("project_created", project_uuid=project_uuid)
        return project_uuid

    async def upload_links(self, project_uuid: str, file_names: list[str]) -> dict[str, str]:
        """A presigned PUT link per file name (file names are unique per project)."""
        if not file_names or len(set(file_names)) != len(file_names):
            raise ValueError("file_names must be a non-empty list of distinct names")
        body = await self._api(
            "POST",
            f"{self._project(project_uuid)}/get_temporary_upload_links",
            json_body={"files_list": [{"file_name": name} for name in file_names]},
        )
        entries = self._parse(UploadLinksShape, body, "upload links").files_list
        links = {entry.file_name: entry.upload_link for entry in entries}
        if len(links) != len(entries) or set(links) != set(file_names):
            raise UnexpectedResponse(None, "upload links: files_list does not match the file names sent", status=200)
        return links

    async def upload(self, url: str, data: bytes) -> None:
        """PUT the bytes to a presigned link: no x-api-key, no Content-Type (the signature covers it)."""
        await self._storage("PUT", check_link(url), data)

    async def start_edit(
        self,
        project_uuid: str,
        *,
        profile_key: int,
        photography_type: str | None,
        callback_url: str | None,
        options: Mapping[str, Any],
    ) -> None:
        """Start editing every uploaded file of the project. Never retried here: an edit is charged."""
        payload: dict[str, Any] = {"profile_key": profile_key}
        if photography_type is not None:
            payload["photography_type"] = photography_type
        if callback_url is not None:
            payload["callback_url"] = callback_url
        clashing = sorted(set(options) & {"profile_key", "photography_type", "callback_url"})
        if clashing:
            raise ValueError(f"pass {', '.join(clashing)} as arguments, not in options")
        payload.update(options)
        path = f"{self._project(project_uuid)}/edit"
        body = await self._api("POST", path, json_body=payload, empty_content_type=True)
        self._parse(AcceptedShape, body, "edit")
        log.info("edit_started", project_uuid=project_uuid, profile_key=profile_key)

    async def edit_status(self, project_uuid: str) -> str:
        """ "Pending", "In Progress", "Completed" or "Failed"."""
        body = await self._api("GET", f"{self._project(project_uuid)}/edit/status")
        return self._status(project_uuid, body, "edit status")

    async def start_export(self, project_uuid: str) -> None:
        """Render the completed edit as JPEGs. Not retried here (the caller decides)."""
        body = await self._api("POST", f"{self._project(project_uuid)}/export", empty_content_type=True)
        self._parse(AcceptedShape, body, "export")
        log.info("export_started", project_uuid=project_uuid)

    async def export_status(self, project_uuid: str) -> str:
        """ "In Progress", "Completed" or "Failed" (an export has no "Pending", but it is accepted)."""
        body = await self._api("GET", f"{self._project(project_uuid)}/export/status")
        return self._status(project_uuid, body, "export status")

    def _status(self, project_uuid: str, body: Any, what: str) -> str:
        status = self._parse(StatusShape, body, what).status
        if status not in contract.EDIT_STATUSES:
            reading.unknown_status("imagen", project_uuid, status, where=what)
        return status

    async def export_links(self, project_uuid: str) -> dict[str, str]:
        """A temporary download link per exported file name."""
        body = await self._api("GET", f"{self._project(project_uuid)}/export/get_temporary_download_links")
        entries = self._parse(DownloadLinksShape, body, "export links").files_list
        links = {entry.file_name: entry.download_link for entry in entries}
        if len(links) != len(entries):
            raise UnexpectedResponse(None, "export links: a file name appears twice", status=200)
        return links

    async def download(self, url: str) -> bytes:
        """GET a temporary download link (no x-api-key). LinkExpired: fetch fresh links first."""
        return (await self._storage("GET", check_link(url), None)).content

    # --- /v1 requests -------------------------------------------------------------------------

    def _project(self, project_uuid: str) -> str:
        if not project_uuid:
            raise ValueError("project_uuid is empty")
        return f"/projects/{quote(project_uuid, safe='')}"

    @staticmethod
    def _parse(shape: type[Shape], body: Any, what: str) -> Any:
        try:
            return shape.model_validate(unwrap(body))
        except pydantic.ValidationError as exc:
            raise UnexpectedResponse(None, f"{what} response: {first_error(exc)}", status=200) from None

    async def _api(self, method: str, path: str, *, json_body: Any = None, empty_content_type: bool = False) -> Any:
        """One /v1 call (with retries if it is a GET); its decoded JSON body."""
        headers = {API_KEY_HEADER: self._api_key, "Accept": "application/json"}
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
        if empty_content_type:
            headers["Content-Type"] = ""  # [DOC] edit/export require an empty Content-Type (as the SDK sends)
        elif content is not None:
            headers["Content-Type"] = "application/json"
        url = self._base_url + path
        return await self._attempts(method == "GET", lambda: self._api_once(method, url, path, headers, content))

    async def _api_once(self, method: str, url: str, path: str, headers: dict[str, str], content: bytes | None) -> Any:
        response = await self._send(method, url, f"{method} {path}", headers, content)
        log.debug("requested", method=method, path=path, status=response.status_code)
        try:
            body, is_json = response.json(), True
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; nesting too deep
            body, is_json = None, False
        if response.is_success:
            if not is_json:
                # A maintenance page or a proxy's answer in place of the API: try again later.
                raise ServiceUnavailable(
                    "non_json_body",
                    f"{method} {path} answered HTTP {response.status_code} without JSON",
                    status=response.status_code,
                )
            return body
        status = response.status_code
        message = self._clean(error_detail(body) or f"{method} {path} answered HTTP {status}")
        if status == 429:
            raise RateLimited(None, message, retry_after=parse_retry_after(response.headers, time.time()))
        if status >= 500 or status == 408:
            raise ServiceUnavailable("server_error" if is_json else "non_json_body", message, status=status)
        raise _CLIENT_ERRORS.get(status, UnexpectedResponse)(None, message, status=status)

    # --- storage (presigned links) ------------------------------------------------------------

    async def _storage(self, method: str, url: str, data: bytes | None) -> httpx.Response:
        """One storage request without the key (retried: a PUT of the same bytes is idempotent)."""
        return await self._attempts(True, lambda: self._storage_once(method, url, data))

    async def _storage_once(self, method: str, url: str, data: bytes | None) -> httpx.Response:
        where = without_query(url)
        # No x-api-key, and no Content-Type: httpx adds none for raw bytes without one.
        response = await self._send(method, url, f"{method} {where}", {}, data)
        log.debug("storage_requested", method=method, url=where, status=response.status_code, bytes=len(data or b""))
        if response.is_success:
            return response
        status = response.status_code
        code, text = s3_error(response.text)
        message = self._clean(f"{method} {where} answered HTTP {status}" + (f": {code}: {text}" if code else ""))
        code = self._clean(code) if code else code
        if status in _LINK_REFUSED:
            raise LinkExpired(code, message, status=status)
        if status == 429:
            raise RateLimited(code, message, retry_after=parse_retry_after(response.headers, time.time()))
        if status >= 500 or status == 408:
            raise ServiceUnavailable("server_error", message, status=status, code=code)
        raise UnexpectedResponse(code, message, status=status)

    def _clean(self, text: str) -> str:
        """A server-supplied text never echoes the key back (the daemon scrubs again: this client is
        used on its own too)."""
        return text.replace(self._api_key, "[redacted]")

    # --- one attempt, and the retries ---------------------------------------------------------

    async def _send(
        self, method: str, url: str, what: str, headers: dict[str, str], content: bytes | None
    ) -> httpx.Response:
        try:
            return await self._http.request(method, url, content=content, headers=headers)
        except httpx.InvalidURL:
            # httpx reads a redirect's Location even when it does not follow it; a garbled one raises this.
            raise ServiceUnavailable("invalid_redirect", f"{what} answered a redirect to an unusable URL") from None
        except httpx.TimeoutException:
            log.warning("timed_out", request=what)
            raise ServiceUnavailable("timeout", f"{what} timed out") from None
        except httpx.RequestError as exc:  # connect/read/write/protocol/decoding errors
            log.warning("unreachable", request=what, error=type(exc).__name__)
            raise ServiceUnavailable("connection_error", f"{what} failed: {type(exc).__name__}") from None

    async def _attempts(self, retry: bool, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run `attempt`, counting every try; if `retry`, try again after retryable failures."""
        tries = 0
        while True:
            try:
                result = await attempt()
            except ImagenError as exc:
                self.stats[_outcome(exc)] += 1
                if not retry or tries >= self._retries or not isinstance(exc, ServiceUnavailable | RateLimited):
                    raise
                delay = self._delay(tries, exc)
                tries += 1
                log.info("retrying", error=type(exc).__name__, status=exc.status, attempt=tries, delay=round(delay, 3))
                await self._sleep(delay)
            else:
                self.stats["ok"] += 1
                return result

    def _delay(self, tries: int, error: ImagenError) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_DELAY)
        backoff = self._retry_base * 2**tries
        return min(backoff * (1 + random.random()), MAX_RETRY_DELAY)  # jitter: between 1x and 2x


def _outcome(error: ImagenError) -> str:
    """The metrics label of a failed attempt: a small, fixed set of words."""
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ServiceUnavailable):
        return error.reason if error.reason in ("timeout", "connection_error", "non_json_body") else "server_error"
    return "client_error"


# Profile, match_exports and parse_retry_after live in answers.py; named here too, where callers import them.
__all__ = ["API_KEY_HEADER", "MAX_RETRY_DELAY", "ImagenClient", "Profile", "match_exports", "parse_retry_after"]
