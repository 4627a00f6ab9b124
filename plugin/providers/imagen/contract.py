"""What the Imagen client and adapter assume about the real service, each with its source.

- [DOC]    the quickstart pages or the `imagen-ai-sdk` 1.2.2 source (comments included) state it;
- [ASSUME] nothing public states it: our choice, kept here so it is one line to change.

(The sandbox emulates the service from `sandbox/contract.py`; this module is the reading side.)
Nothing in this module does I/O.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# --- Answer shapes ------------------------------------------------------------------------------

# [DOC: SDK source] production answers carry their payload at the root; legacy/beta wrapped it in
# {"data": …} (the quickstart's examples): a reader accepts both (reading.unwrap_data).
# [DOC: SDK source] GET /profiles is a bare list in production; {"data": {"profiles": [...]}} in the
# quickstart: both are read.
# [DOC: SDK source] errors are {"error": {"message": …}} in production, {"detail": …} in older answers.

# --- Statuses -----------------------------------------------------------------------------------

EDIT_STATUSES = frozenset({"Pending", "In Progress", "Completed", "Failed"})  # [DOC]
# [ASSUME] any other word is "not finished" (logged once as unknown_status) until the job's max_job_age.

# --- Exported files -----------------------------------------------------------------------------

# [DOC: quickstart] the export renames files (`922A4846.CR2` comes back `922A4846.JPG`): results are
# matched by file name stem, case-insensitively, never by the exact name we uploaded.


def stem_key(file_name: str) -> str:
    return PurePosixPath(file_name).stem.casefold()


# --- Temporary links ----------------------------------------------------------------------------

# [DOC: quickstart, SDK source] upload and export links are presigned S3 URLs with a lifetime. [DOC: S3]
# a presigned URL past its expiry answers 403 AccessDenied "Request has expired". [ASSUME] a store or
# CDN in front of it may answer 404 or 410 for one that is stale, and 401 where it asks for auth
# instead: each of these is an expired link, renewed by asking for the export links again.
EXPIRED_LINK_STATUSES = frozenset({401, 403, 404, 410})


# --- Deadline -----------------------------------------------------------------------------------

# [ASSUME] no timings are documented; an edit and export of a project of 20 JPEGs takes minutes, and
# we allow for a busy queue: a project still unfinished after 12 hours is not coming back.
MAX_JOB_AGE_SECONDS = 12 * 3600.0
