"""Injected failures: "the next N requests to this endpoint go wrong like this". Sandbox only.

Mirrors the AI Gen Studio sandbox's fault API, per Imagen endpoint:
- `status` 5xx: answer that error instead (S3's XML on the storage endpoints);
- `mode="hang"`: wait `seconds`, then handle the request normally (a slow service);
- `mode="html"`: a proxy's 502 HTML page instead of JSON;
- `mode="drop_response"` (edit/export): the job starts, and is charged, but the answer is a 500;
- `mode="fail"` (edit/export): the request is accepted, the job then ends `Failed`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# The names used for faults and for the per-endpoint request counts in the stats.
ENDPOINTS = (
    "profiles", "create_project", "upload_links", "upload", "edit", "edit_status", "edit_links",
    "export", "export_status", "export_links", "download",
)
JOB_ENDPOINTS = ("edit", "export")  # the ones that start asynchronous work
STORAGE_ENDPOINTS = ("upload", "download")  # served "by S3": errors are XML
MODES = ("hang", "html", "drop_response", "fail")


@dataclass
class Fault:
    endpoint: str
    count: int
    status: int | None = None
    mode: str | None = None
    seconds: float = 0.0


def check(fault: Fault) -> None:
    """ValueError naming what is wrong with `fault`."""
    if fault.endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
    if fault.count < 1:
        raise ValueError("count must be at least 1")
    if (fault.status is None) == (fault.mode is None):
        raise ValueError("give either a status (5xx) or a mode")
    if fault.status is not None and not (isinstance(fault.status, int) and 500 <= fault.status <= 599):
        raise ValueError("status must be a 5xx code")
    if fault.mode is not None and fault.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if fault.mode in ("drop_response", "fail") and fault.endpoint not in JOB_ENDPOINTS:
        raise ValueError(f"{fault.mode} applies to edit and export only")
    if fault.mode == "hang" and fault.seconds <= 0:
        raise ValueError("hang needs seconds > 0")


class FaultBook:
    """Pending faults, used up one request at a time, in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        check(fault)
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint == endpoint:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(fault.count for fault in self._faults)
