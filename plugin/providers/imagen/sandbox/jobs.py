"""Edits and exports run asynchronously, one daemon thread per job; callbacks go out when they end.

Edit:   Pending for `edit_pending_seconds` -> In Progress (each file analysed, `progress` rising)
        until `edit_seconds` have passed -> Completed (charged) | Failed.
Export: In Progress (each file rendered) until `export_seconds` have passed -> Completed | Failed.

A file that is not a decodable JPEG fails the whole job, naming the file in `details` [ASSUME:
Imagen reports status per project, not per photo]. Callbacks [DOC]: one plain unsigned POST of
`{"project_uuid", "status", "action"}` to the edit's callback_url, best effort, no retries [ASSUME].
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import structlog

from ....sandbox_kit.faults import FaultBook, webhook_plan
from . import contract, develop, xmp
from .state import Job, Project, SandboxState

log = structlog.get_logger(__name__)

CALLBACK_TIMEOUT_SECONDS = 5.0


class CallbackSender:
    def __init__(self, faults: FaultBook, stop: threading.Event) -> None:
        self._faults = faults
        self._stop = stop
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def send(self, url: str | None, project_uuid: str, status: str, action: str) -> None:
        if url is None:
            return
        body = {"project_uuid": project_uuid, "status": status, "action": action}
        copies, hold_back = webhook_plan(self._faults)
        if hold_back:  # a "late" fault: the callback goes out later, from its own thread
            threading.Thread(target=self._deliver_late, args=(url, body, hold_back), daemon=True).start()
            return
        for _ in range(copies):
            self._deliver(url, body)

    def _deliver_late(self, url: str, body: dict, hold_back: float) -> None:
        if not self._stop.wait(hold_back):
            self._deliver(url, body)

    def _deliver(self, url: str, body: dict) -> None:
        with httpx.Client(timeout=CALLBACK_TIMEOUT_SECONDS, trust_env=False) as http:
            for _ in range(contract.CALLBACK_ATTEMPTS):
                try:
                    ok = http.post(url, json=body).is_success
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    if ok:
                        self.delivered += 1
                    else:
                        self.failed += 1
                if ok:
                    return


class JobRunner:
    def __init__(
        self,
        state: SandboxState,
        *,
        edit_pending_seconds: float,
        edit_seconds: float,
        export_seconds: float,
        stop: threading.Event,
        callbacks: CallbackSender,
        rename_exports: bool = False,
    ) -> None:
        self._state = state
        self._rename_exports = rename_exports  # the production profile: `x.jpg` is exported as `x.JPG`
        self._edit_pending_seconds = edit_pending_seconds
        self._edit_seconds = edit_seconds
        self._export_seconds = export_seconds
        self._stop = stop
        self._callbacks = callbacks

    def submit(self, project: Project, job: Job) -> None:
        work = self._edit if job.action == contract.ACTION_EDIT else self._export
        threading.Thread(
            target=self._run, args=(work, project, job), daemon=True, name=f"imagen-{job.action}:{project.uuid[:8]}"
        ).start()

    def _run(self, work: Callable[[Project, Job], bool], project: Project, job: Job) -> None:
        try:
            finished = work(project, job)
        except Exception as exc:  # never let a job thread die silently: the job fails instead
            log.warning("imagen_job_crashed", action=job.action, error=type(exc).__name__)
            self._state.fail(job, "The service failed to process the project.")
            finished = True
        if not finished:
            return  # the sandbox is closing
        request = project.edit.request if project.edit else None
        self._callbacks.send(request.callback_url if request else None, project.uuid, job.status, job.action)

    def _wait_until(self, due: float) -> bool:
        """Sleep until the monotonic time `due`; True if the sandbox is closing meanwhile."""
        return self._stop.wait(max(0.0, due - time.monotonic()))

    def _edit(self, project: Project, job: Job) -> bool:
        """Run an edit to its end; False if the sandbox closed first."""
        started = time.monotonic()
        if self._wait_until(started + self._edit_pending_seconds):
            return False
        self._state.advance(job, contract.IN_PROGRESS, 0.0)
        assert job.request is not None
        settings: dict[str, develop.Settings] = {}
        edited: dict[str, bytes] = {}
        bad: list[str] = []
        for position, name in enumerate(job.files):
            data = self._state.upload_data(project, name)
            try:
                settings[name] = develop.analyse(data, job.request)
                edited[name] = xmp.embed(data, xmp.packet(settings[name], job.request.profile_key))
            except (develop.DevelopError, ValueError):
                bad.append(name)
            self._state.advance(job, progress=100.0 * (position + 1) / len(job.files) * 0.99)
        if self._wait_until(started + self._edit_pending_seconds + self._edit_seconds):
            return False
        if job.fail:
            self._state.fail(job, "The service failed to edit the project.")
        elif bad and contract.ONE_BAD_FILE_FAILS_THE_EDIT:
            self._state.fail(job, f"Not a valid JPEG: {', '.join(bad)}.")
        else:
            self._state.complete_edit(project, job, settings, edited)
        return True

    def _export(self, project: Project, job: Job) -> bool:
        """Run an export to its end; False if the sandbox closed first."""
        started = time.monotonic()
        exported: dict[str, bytes] = {}
        for position, name in enumerate(job.files):
            data = self._state.upload_data(project, name)
            exported[contract.exported_file_name(name, production=self._rename_exports)] = develop.render(
                data, self._state.settings_of(project, name)
            )
            self._state.advance(job, progress=100.0 * (position + 1) / len(job.files) * 0.99)
        if self._wait_until(started + self._export_seconds):
            return False
        if job.fail:
            self._state.fail(job, "The service failed to export the project.")
        else:
            self._state.complete_export(project, job, exported)
        return True
