"""Request bodies checked as Imagen documents them (CONTRACTS.md §2). Pure: no state, no HTTP.

The first problem found becomes the `detail` of a 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from . import contract


class RequestError(ValueError):
    """The request is invalid; the message says why (answered as 400)."""


@dataclass(frozen=True)
class EditRequest:
    profile_key: int
    photography_type: str | None = None
    callback_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # only the options given, by JSON name

    def enabled(self, name: str) -> bool:
        return self.options.get(name) is True


def parse_project_name(body: Any) -> str | None:
    """`{"name"}` is optional [DOC]; an empty body is a project without a name."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise RequestError("The body must be a JSON object.")
    name = body.get("name")
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip():
        raise RequestError("name must be a non-empty string.")
    return name


def check_file_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise RequestError("Each file needs a non-empty file_name.")
    if len(name) > contract.MAX_FILE_NAME_CHARS or "/" in name or "\\" in name or name in (".", ".."):
        raise RequestError(f"Invalid file_name: {name!r}.")
    kind = contract.file_kind(name)
    if kind == "RAW" and not contract.SANDBOX_ACCEPTS_RAW:
        raise RequestError(f"{name}: this sandbox emulates JPEG projects only (.jpg/.jpeg).")
    if kind is None:
        raise RequestError(
            f"{name}: unsupported file type. A JPEG project accepts .jpg/.jpeg only; convert PNG/WebP to JPEG first."
        )
    return name


def parse_files_list(body: Any) -> list[str]:
    """The file names of `{"files_list": [{"file_name", "md5"?}, …]}`, unique within the request [DOC]."""
    if not isinstance(body, dict) or not isinstance(body.get("files_list"), list) or not body["files_list"]:
        raise RequestError("files_list must be a non-empty list of {\"file_name\": …} objects.")
    names: list[str] = []
    for entry in body["files_list"]:
        if not isinstance(entry, dict):
            raise RequestError("Each files_list entry must be an object with a file_name.")
        md5 = entry.get("md5")
        if md5 is not None and not isinstance(md5, str):
            raise RequestError("md5 must be a base64 string.")
        name = check_file_name(entry.get("file_name"))
        if name in names:
            raise RequestError(f"Duplicate file name in files_list: {name}.")
        names.append(name)
    return names


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_url(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError("callback_url must be a URL string.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError("callback_url must be an absolute http(s) URL.")
    return value


def parse_edit(body: Any) -> EditRequest:
    """The edit body: profile_key, photography_type, callback_url and the edit options [DOC: SDK]."""
    if not isinstance(body, dict):
        raise RequestError("The body must be a JSON object.")
    known = {
        "profile_key",
        "photography_type",
        "callback_url",
        "sky_replacement_template_id",
        "crop_aspect_ratio",
        "hdr_output_compression",
        *contract.BOOLEAN_OPTIONS,
    }
    unknown = sorted(set(body) - known)
    if unknown and contract.REJECT_UNKNOWN_EDIT_FIELDS:
        raise RequestError(f"Unknown field(s): {', '.join(unknown)}.")
    profile_key = body.get("profile_key")
    if not _is_int(profile_key):
        raise RequestError("profile_key is required and must be an integer.")
    photography_type = body.get("photography_type")
    if photography_type is not None and photography_type not in contract.PHOTOGRAPHY_TYPES:
        raise RequestError(f"photography_type must be one of {', '.join(contract.PHOTOGRAPHY_TYPES)}.")
    callback_url = None if body.get("callback_url") is None else _check_url(body["callback_url"])

    options: dict[str, Any] = {}
    for name in contract.BOOLEAN_OPTIONS:
        if name in body and body[name] is not None:
            if not isinstance(body[name], bool):
                raise RequestError(f"{name} must be a boolean.")
            options[name] = body[name]
    choices = {
        "crop_aspect_ratio": contract.CROP_ASPECT_RATIOS,
        "hdr_output_compression": contract.HDR_OUTPUT_COMPRESSIONS,
    }
    for name, allowed in choices.items():
        if body.get(name) is not None:
            if body[name] not in allowed:
                raise RequestError(f"{name} must be one of {', '.join(allowed)}.")
            options[name] = body[name]
    if body.get("sky_replacement_template_id") is not None:
        if not _is_int(body["sky_replacement_template_id"]):
            raise RequestError("sky_replacement_template_id must be an integer.")
        options["sky_replacement_template_id"] = body["sky_replacement_template_id"]

    for group in contract.AT_MOST_ONE_OF:
        chosen = [name for name in group if options.get(name) is True]
        if len(chosen) > 1:
            raise RequestError(f"Only one of {', '.join(group)} can be enabled (got {', '.join(chosen)}).")
    for first, second in contract.MUTUALLY_EXCLUSIVE:
        if options.get(first) is True and options.get(second) is True:
            raise RequestError(f"{first} and {second} cannot be enabled together.")
    return EditRequest(profile_key, photography_type, callback_url, options)
