"""How Imagen AI's answers are read (CONTRACTS.md §2): the response shapes, checked with pydantic, and
the pure readers the client uses (error bodies, S3's XML errors, Retry-After, export file names).
Nothing here does I/O; the client (client.py) maps what these find onto errors.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import pydantic

from .. import reading
from . import contract


@dataclass(frozen=True)
class Profile:
    profile_key: int
    profile_name: str
    profile_type: str  # "Personal" | "Talent"
    image_type: str  # "RAW" | "JPG"


# --- response shapes (inside the optional {"data": …} wrapper) -----------------------------------

Text = Annotated[str, pydantic.StringConstraints(strict=True, min_length=1)]


class Shape(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")


class ProfileShape(Shape):
    profile_key: pydantic.StrictInt
    profile_name: pydantic.StrictStr
    profile_type: pydantic.StrictStr
    image_type: pydantic.StrictStr


class ProfilesShape(Shape):
    profiles: list[ProfileShape]


class ProjectShape(Shape):
    project_uuid: Text


class UploadLinkShape(Shape):
    file_name: Text
    upload_link: Text


class UploadLinksShape(Shape):
    files_list: list[UploadLinkShape]


class DownloadLinkShape(Shape):
    file_name: Text
    download_link: Text


class DownloadLinksShape(Shape):
    files_list: list[DownloadLinkShape]


class StatusShape(Shape):
    status: Annotated[str, pydantic.StringConstraints(strict=True, min_length=1, max_length=100)]  # see contract


class AcceptedShape(Shape):
    """The answer to edit/export: {"project_uuid", "status", "action"}; nothing in it is needed."""


def unwrap(body: Any) -> Any:
    """[DOC] answers may or may not be wrapped in {"data": …}: accept both."""
    return reading.unwrap_data(body)


def match_exports(links: Mapping[str, str], wanted: list[str]) -> dict[str, str]:
    """The exported link of each wanted file name, matched by stem, case-insensitively [DOC: the export
    renames `x.CR2` to `x.JPG`]; an exact name wins over a stem match; a stem that is not unique in the
    export matches nothing (better no result than another product's)."""
    by_stem: dict[str, list[str]] = {}
    for name in links:
        by_stem.setdefault(contract.stem_key(name), []).append(name)
    found = {}
    for name in wanted:
        if name in links:
            found[name] = links[name]
        else:
            candidates = by_stem.get(contract.stem_key(name), [])
            if len(candidates) == 1:
                found[name] = links[candidates[0]]
    return found


def without_query(url: str) -> str:
    """A presigned link as it may be logged: its query string is the credential."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def check_link(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a presigned link must be an absolute http(s) URL, got {without_query(url)!r}")
    return url


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date; None if absent or garbled."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        pass
    else:
        # "inf" or "nan" is garbled too (like the other providers' readers): an infinite wait would
        # hold every request of the daemon for good.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def error_detail(body: Any) -> str | None:
    """The message of an error body: {"error": {"message"}} (production [DOC: SDK source]), {"detail": "…"}
    (older, FastAPI), or a 422's list of {"msg"}."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return error["message"]
    if isinstance(error, str) and error:
        return error
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):
        messages = [str(item.get("msg")) for item in detail if isinstance(item, dict) and item.get("msg")]
        return "; ".join(messages) or None
    return None


def s3_error(text: str) -> tuple[str | None, str | None]:
    """(Code, Message) of S3's XML error body, when there is one."""
    code = re.search(r"<Code>([^<]{1,100})</Code>", text)
    message = re.search(r"<Message>([^<]{1,300})</Message>", text)
    return (code.group(1) if code else None), (message.group(1) if message else None)
