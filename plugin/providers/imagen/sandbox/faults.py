"""Injected failures: "the next N requests to this endpoint go wrong like this". Sandbox only.

Mirrors the AI Gen Studio sandbox's fault API, per Imagen endpoint:
- `status` 5xx: answer that error instead (S3's XML on the storage endpoints);
- `mode="hang"`: wait `seconds`, then handle the request normally (a slow service);
- `mode="html"`: a proxy's 502 HTML page instead of JSON;
- `mode="drop_response"` (edit/export): the job starts, and is charged, but the answer is a 500;
- `mode="fail"` (edit/export): the request is accepted, the job then ends `Failed`;
- `status` 429 (with or without `retry_after`), `mode` reset/truncated/non_json/wrong_shape on any
  endpoint, and `duplicate`/`late` on the "webhook" pseudo-endpoint (the edit/export callbacks):
  the shared language of sandbox_kit/faults.py.
"""

from __future__ import annotations

from ....sandbox_kit.faults import WEBHOOK, WEBHOOK_MODES, FaultBook, answer_modes

# The names used for faults and for the per-endpoint request counts in the stats.
ENDPOINTS = (
    "profiles",
    "create_project",
    "upload_links",
    "upload",
    "edit",
    "edit_status",
    "edit_links",
    "export",
    "export_status",
    "export_links",
    "download",
)
JOB_ENDPOINTS = ("edit", "export")  # the ones that start asynchronous work
STORAGE_ENDPOINTS = ("upload", "download")  # served "by S3": errors are XML


# "Not JSON" and "the wrong JSON" are faults of the JSON API: storage answers a PUT with an empty
# 200 and a GET with the object's bytes, so a 200 with another body there would be S3 lying.
JSON_ENDPOINTS = tuple(endpoint for endpoint in ENDPOINTS if endpoint not in STORAGE_ENDPOINTS)


def fault_book() -> FaultBook:
    modes = {
        **answer_modes(ENDPOINTS),
        "non_json": JSON_ENDPOINTS,
        "wrong_shape": JSON_ENDPOINTS,
        "drop_response": JOB_ENDPOINTS,
        "fail": JOB_ENDPOINTS,
        **{mode: (WEBHOOK,) for mode in WEBHOOK_MODES},
    }
    return FaultBook((*ENDPOINTS, WEBHOOK), modes)
