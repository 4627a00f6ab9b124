"""What a several-file `fileUpdate` did to each file, read from its answer (pure code).

Shopify's `fileUpdate` is not all-or-nothing (../shared/reference/shopify/NOTES.md, "Where the
sandbox must not be kinder than Shopify", real captures 2026-04): it applies the valid rows and
returns a userError per bad row. Where an error names its row, its `field` is
`["files", "<index>", …]` (media-file-update-validation-branches.json: `videoOriginalSource`,
`sourceAndVersion`); some codes name no index (`field: ["files"]`) and FILE_DOES_NOT_EXIST names
the missing ids in its message instead (`wrongType`). A row counts as written only when its id comes
back in the answer's `files`; a row neither returned nor named is unknown (the caller tries it
again on its own), so a store that refuses the whole call is read correctly too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import UserError

# fileUpdate refuses alt text longer than this with ALT_VALUE_LIMIT_EXCEEDED (NOTES.md, real captures 2026-04).
ALT_VALUE_LIMIT = 512


def alt_for_shopify(alt: str | None) -> str | None:
    """Alt text as it may be sent: at most ALT_VALUE_LIMIT characters. A longer text is cut, never
    sent whole: Shopify would refuse the file's whole row (ALT_VALUE_LIMIT_EXCEEDED)."""
    return alt[:ALT_VALUE_LIMIT] if alt is not None else None


RowStatus = Literal["written", "refused", "unknown"]


@dataclass(frozen=True)
class FileRow:
    """One file of a fileUpdate: `written` (its id came back in `files`), `refused` (a userError
    names it; `errors` says why) or `unknown` (neither: whether it was applied is not known)."""

    media_id: str
    status: RowStatus
    errors: tuple[UserError, ...] = field(default=())


def row_index(error: UserError, rows: int) -> int | None:
    """The row a userError names by its field path (`["files", "<i>", …]`), if any."""
    path = error.field or []
    if len(path) >= 2 and path[0] == "files" and path[1].isdigit() and int(path[1]) < rows:
        return int(path[1])
    return None


def file_rows(media_ids: Sequence[str], answered: Any, errors: Sequence[UserError]) -> list[FileRow]:
    """Each sent file's outcome, in the order sent. `answered`: the answer's `files` list (any shape;
    only entries with a string `id` count); `errors`: its userErrors."""
    returned = (
        {entry["id"] for entry in answered if isinstance(entry, dict) and isinstance(entry.get("id"), str)}
        if isinstance(answered, list)
        else set()
    )
    named: dict[int, list[UserError]] = {}
    for error in errors:
        index = row_index(error, len(media_ids))
        if index is not None:
            named.setdefault(index, []).append(error)
            continue
        # No index: a message that quotes ids (FILE_DOES_NOT_EXIST: 'File id ["gid://…"] does not exist.')
        for position, media_id in enumerate(media_ids):
            if f'"{media_id}"' in error.message:
                named.setdefault(position, []).append(error)
    rows = []
    for position, media_id in enumerate(media_ids):
        if position in named:
            rows.append(FileRow(media_id, "refused", tuple(named[position])))
        elif media_id in returned:
            rows.append(FileRow(media_id, "written"))
        else:
            rows.append(FileRow(media_id, "unknown", tuple(e for e in errors if row_index(e, len(media_ids)) is None)))
    return rows
