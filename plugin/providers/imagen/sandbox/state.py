"""The sandbox's memory and rules: keys, profiles, projects, uploads, edit/export jobs, charges.

No HTTP here: the app turns requests into calls on `SandboxState` and `ApiError`s into
`{"detail": …}` answers. Every public method takes the one lock, because the app (uvicorn's
thread) and the job threads both change this state.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import contract
from .develop import Settings
from .links import EDITS, EXPORTS, UPLOADS
from .validation import EditRequest


class ApiError(Exception):
    """An error answer: HTTP status and the `detail` message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Upload:
    file_name: str
    data: bytes | None = None  # None until the PUT arrives


@dataclass
class Job:
    """One edit or export of a project; the job thread moves it along."""

    action: str  # contract.ACTION_EDIT | contract.ACTION_EXPORT
    status: str
    files: tuple[str, ...]  # the uploaded files this job works on, in upload-link order
    request: EditRequest | None = None  # edits only
    progress: float = 0.0
    details: str | None = None
    fail: bool = False  # an injected failure: end Failed whatever the files

    @property
    def running(self) -> bool:
        return self.status not in contract.TERMINAL_STATUSES

    def status_json(self) -> dict[str, Any]:
        """[DOC: SDK StatusDetails] status, progress (0-100), details."""
        return {"status": self.status, "progress": round(self.progress, 1), "details": self.details}


@dataclass
class Project:
    uuid: str
    key: str = field(repr=False)
    name: str | None
    files: dict[str, Upload] = field(default_factory=dict)
    edit: Job | None = None
    export: Job | None = None
    settings: dict[str, Settings] = field(default_factory=dict)  # of the last completed edit
    edited: dict[str, bytes] = field(default_factory=dict)  # JPEG + XMP, by file name
    exported: dict[str, bytes] = field(default_factory=dict)  # rendered JPEGs, by exported name

    def summary_json(self) -> dict[str, Any]:
        return {
            "project_uuid": self.uuid,
            "name": self.name,
            "files": [{"file_name": name, "uploaded": upload.data is not None} for name, upload in self.files.items()],
            "edit": None if self.edit is None else {**self.edit.status_json(), "options": self._edit_options()},
            "export": None if self.export is None else self.export.status_json(),
        }

    def _edit_options(self) -> dict[str, Any] | None:
        request = self.edit.request if self.edit else None
        if request is None:
            return None
        return {
            "profile_key": request.profile_key,
            "photography_type": request.photography_type,
            "callback_url": request.callback_url,
            **request.options,
        }


class SandboxState:
    def __init__(self, api_keys: tuple[str, ...], profiles: tuple[dict[str, Any], ...]) -> None:
        self.lock = threading.RLock()
        self._keys: set[str] = set()
        self._profiles: dict[int, dict[str, Any]] = {}
        self._projects: dict[str, Project] = {}
        self._requests: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._charges: list[dict[str, str]] = []
        for key in api_keys:
            self.add_key(key)
        for profile in profiles:
            self.add_profile(**profile)

    # --- keys and profiles -------------------------------------------------------------------------

    def add_key(self, key: str) -> None:
        if not isinstance(key, str) or not key.strip() or key != key.strip():
            raise ValueError("an API key is a non-empty string without surrounding spaces")
        with self.lock:
            self._keys.add(key)

    def is_key(self, key: str) -> bool:
        with self.lock:
            return key in self._keys

    def add_profile(
        self, profile_key: int, profile_name: str, profile_type: str = "Personal", image_type: str = "JPG"
    ) -> None:
        if not isinstance(profile_key, int) or isinstance(profile_key, bool):
            raise TypeError("profile_key must be an integer")
        if profile_type not in contract.PROFILE_TYPES or image_type not in contract.IMAGE_TYPES:
            raise ValueError(
                f"profile_type must be one of {contract.PROFILE_TYPES}, image_type one of {contract.IMAGE_TYPES}"
            )
        profile = {
            "profile_key": profile_key,
            "profile_name": str(profile_name),
            "profile_type": profile_type,
            "image_type": image_type,
        }
        with self.lock:
            self._profiles[profile_key] = profile

    def profiles(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(profile) for profile in self._profiles.values()]

    # --- counting ----------------------------------------------------------------------------------

    def count_request(self, endpoint: str) -> None:
        with self.lock:
            self._requests[endpoint] += 1

    def count(self, what: str) -> None:
        with self.lock:
            self._counts[what] += 1

    # --- projects and uploads ----------------------------------------------------------------------

    def create_project(self, key: str, name: str | None) -> Project:
        with self.lock:
            # [DOC: SDK] "Project names must be unique across your account".
            if name is not None and any(p.key == key and p.name == name for p in self._projects.values()):
                raise ApiError(contract.BAD_REQUEST, f"A project named {name!r} already exists.")
            project = Project(str(uuid.uuid4()), key, name)
            self._projects[project.uuid] = project
            self._counts["projects"] += 1
            return project

    def project(self, key: str, project_uuid: str) -> Project:
        """The caller's project, or 404 (another key's project is as unknown as a made-up one)."""
        with self.lock:
            project = self._projects.get(project_uuid)
            if project is None or project.key != key:
                raise ApiError(contract.NOT_FOUND, "Project not found.")
            return project

    def add_upload_names(self, project: Project, names: list[str]) -> None:
        with self.lock:
            taken = [name for name in names if name in project.files]
            if taken:
                # [DOC] file names are unique per project.
                raise ApiError(contract.BAD_REQUEST, f"File name(s) already in this project: {', '.join(taken)}.")
            for name in names:
                project.files[name] = Upload(name)

    def store_upload(self, project_uuid: str, file_name: str, data: bytes) -> bool:
        """Keep the bytes (a re-PUT replaces them, as on S3); False if the link names no such file."""
        with self.lock:
            project = self._projects.get(project_uuid)
            if project is None or file_name not in project.files:
                return False
            project.files[file_name].data = data
            self._counts["images_uploaded"] += 1
            if not data.startswith(b"\xff\xd8\xff"):
                self._counts["non_jpeg_uploads"] += 1  # stored anyway (S3 does not look); the edit fails
            return True

    # --- edit and export ---------------------------------------------------------------------------

    def start_edit(self, project: Project, request: EditRequest, *, fail: bool = False) -> Job:
        with self.lock:
            self._refuse_while_running(project)
            profile = self._profiles.get(request.profile_key)
            if profile is None:
                raise ApiError(contract.BAD_REQUEST, f"Unknown profile_key {request.profile_key}.")
            if contract.PROFILE_MUST_MATCH_PROJECT_TYPE and profile["image_type"] != "JPG":
                raise ApiError(
                    contract.BAD_REQUEST,
                    f"Profile {request.profile_key} is a {profile['image_type']} profile; this project holds JPEG files.",
                )
            uploaded = tuple(name for name, upload in project.files.items() if upload.data is not None)
            if not uploaded:
                raise ApiError(contract.BAD_REQUEST, "The project has no uploaded files to edit.")
            project.edit = Job(contract.ACTION_EDIT, contract.PENDING, uploaded, request, fail=fail)
            if contract.NEW_EDIT_DISCARDS_EXPORT:
                project.export, project.exported = None, {}
            self._counts["edits_started"] += 1
            return project.edit

    def start_export(self, project: Project, *, fail: bool = False) -> Job:
        with self.lock:
            self._refuse_while_running(project)
            if project.edit is None or project.edit.status != contract.COMPLETED:
                raise ApiError(contract.BAD_REQUEST, "The project has no completed edit to export.")
            project.export = Job(contract.ACTION_EXPORT, contract.IN_PROGRESS, project.edit.files, fail=fail)
            self._counts["exports_started"] += 1
            return project.export

    def _refuse_while_running(self, project: Project) -> None:
        for job in (project.edit, project.export):
            if job is not None and job.running:
                raise ApiError(contract.CONFLICT, f"An {job.action} is already running for this project.")

    def job_status(self, project: Project, action: str) -> dict[str, Any]:
        with self.lock:
            job = project.edit if action == contract.ACTION_EDIT else project.export
            if job is None:
                raise ApiError(contract.NOT_FOUND, f"No {action} was started for this project.")
            return job.status_json()

    def result_files(self, project: Project, action: str) -> list[tuple[str, str]]:
        """(bucket, file name) of a completed edit's or export's results, in upload order."""
        with self.lock:
            job = project.edit if action == contract.ACTION_EDIT else project.export
            if job is None or job.status != contract.COMPLETED:
                raise ApiError(contract.BAD_REQUEST, f"The project's {action} is not completed.")
            if action == contract.ACTION_EDIT:
                return [(EDITS, name) for name in project.edited]
            return [(EXPORTS, name) for name in project.exported]

    def read_object(self, bucket: str, project_uuid: str, file_name: str) -> bytes | None:
        with self.lock:
            project = self._projects.get(project_uuid)
            if project is None:
                return None
            if bucket == UPLOADS:
                upload = project.files.get(file_name)
                return None if upload is None else upload.data
            return (project.edited if bucket == EDITS else project.exported).get(file_name)

    def upload_data(self, project: Project, file_name: str) -> bytes:
        with self.lock:
            data = project.files[file_name].data
            assert data is not None
            return data

    # --- called from the job threads ---------------------------------------------------------------

    def advance(self, job: Job, status: str | None = None, progress: float | None = None) -> None:
        with self.lock:
            if status is not None:
                job.status = status
            if progress is not None:
                job.progress = progress

    def fail(self, job: Job, details: str) -> None:
        with self.lock:
            job.status, job.details = contract.FAILED, details
            self._counts[f"{job.action}s_failed"] += 1

    def complete_edit(
        self, project: Project, job: Job, settings: dict[str, Settings], edited: dict[str, bytes]
    ) -> None:
        """Keep the results and charge each edited image once [ASSUME: billed per completed edit]."""
        with self.lock:
            project.settings, project.edited = settings, edited
            job.status, job.progress = contract.COMPLETED, 100.0
            for name in edited:
                self._charges.append({"key": project.key, "project_uuid": project.uuid, "file_name": name})

    def complete_export(self, project: Project, job: Job, exported: dict[str, bytes]) -> None:
        with self.lock:
            project.exported = exported
            job.status, job.progress = contract.COMPLETED, 100.0

    def settings_of(self, project: Project, file_name: str) -> Settings:
        with self.lock:
            return project.settings[file_name]

    # --- inspection --------------------------------------------------------------------------------

    def project_json(self, project_uuid: str) -> dict[str, Any] | None:
        with self.lock:
            project = self._projects.get(project_uuid)
            return None if project is None else project.summary_json()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            per_image = Counter(f"{c['project_uuid']}/{c['file_name']}" for c in self._charges)
            return {
                "requests": dict(self._requests),
                "projects": self._counts["projects"],
                "images_uploaded": self._counts["images_uploaded"],
                "non_jpeg_uploads": self._counts["non_jpeg_uploads"],
                "uploads_with_api_key": self._counts["uploads_with_api_key"],
                "uploads_refused_content_type": self._counts["uploads_refused_content_type"],
                "auth_failures": self._counts["auth_failures"],
                "expired_link_fetches": self._counts["expired_link_fetches"],
                "edits_started": self._counts["edits_started"],
                "edits_failed": self._counts["edits_failed"],
                "exports_started": self._counts["exports_started"],
                "exports_failed": self._counts["exports_failed"],
                "charges": len(self._charges),
                "charges_per_image": dict(per_image),  # "<project_uuid>/<file_name>" -> times charged
                "charges_per_file_name": dict(Counter(c["file_name"] for c in self._charges)),
                "charges_per_key": dict(Counter(c["key"] for c in self._charges)),
            }
