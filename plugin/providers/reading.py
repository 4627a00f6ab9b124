"""Small pieces every provider's tolerant reader shares; each provider keeps its own rules.

The real services answer in more shapes than our sandboxes did (CONTRACTS.md "Production shapes"):
a body at the root or wrapped in `{"data": …}`, a status word we have never seen. A reader takes
what it can use, and a status it does not know is "not finished" — only until the job's deadline
(the pipeline's `max_job_age`), never forever. Such a value is logged once per job and value, so a
job polled a hundred times says it once.
"""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger(__name__)

# (provider, job id, value) already logged; bounded so a daemon running for months cannot grow it.
_SEEN: set[tuple[str, str, str]] = set()
_SEEN_MAX = 10_000


def unwrap_data(body: Any) -> Any:
    """The payload of an answer at the root or wrapped in {"data": …} (Imagen's production vs legacy)."""
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    return body


def unknown_status(provider: str, job_id: object, value: object, *, where: str = "job") -> None:
    """Log `unknown_status` the first time this job shows this value; the caller treats it as running."""
    key = (provider, str(job_id), f"{where}:{value}")
    if key in _SEEN:
        return
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN.add(key)
    log.warning(
        "unknown_status",
        provider=provider,
        job_id=str(job_id),
        status=str(value)[:100],
        where=where,
        meaning="treated as not finished until the job's max_job_age",
    )


def forget_seen() -> None:
    """For tests: log every unknown status again."""
    _SEEN.clear()
