"""Imagen AI's public contract as the sandbox emulates it (CONTRACTS.md §2), in one place.

- [DOC]    the quickstart pages or the `imagen-ai-sdk` source state it;
- [ASSUME] nothing public states it: our choice, kept here so that it is one line to change
           when the real service turns out to disagree.

Nothing in this module does I/O.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# --- Endpoints [DOC] ----------------------------------------------------------------------------

BASE_URL = "https://api.imagen-ai.com/v1"
API_PREFIX = "/v1"
API_KEY_HEADER = "x-api-key"
# [DOC] the docs write `/v1/profiles/` and `/v1/projects/`, the SDK calls `/profiles`: both answer.
PROFILES_PATHS = (f"{API_PREFIX}/profiles", f"{API_PREFIX}/profiles/")
PROJECTS_PATHS = (f"{API_PREFIX}/projects", f"{API_PREFIX}/projects/")
PROJECT_PATH = f"{API_PREFIX}/projects/{{project_uuid}}"

# --- Profiles -----------------------------------------------------------------------------------

PROFILE_TYPES = ("Personal", "Talent")  # [DOC] seen in the profiles example
IMAGE_TYPES = ("RAW", "JPG")  # [DOC]
# [DOC] the two Talent profiles of the quickstart example (both RAW). [ASSUME] a JPG profile for
# product photos, since the sandbox handles JPEG projects only.
DEFAULT_PROFILES = (
    {"profile_key": 14715, "profile_name": "LOVE & LIGHT", "profile_type": "Talent", "image_type": "RAW"},
    {"profile_key": 163322, "profile_name": "ELEGANT HOME", "profile_type": "Talent", "image_type": "RAW"},
    {"profile_key": 5700, "profile_name": "CLEAN PRODUCT", "profile_type": "Personal", "image_type": "JPG"},
)
# [ASSUME] from the SDK's check_files_match_profile_type: a RAW profile cannot edit JPEG files.
PROFILE_MUST_MATCH_PROJECT_TYPE = True

# --- Files [DOC: SDK] ---------------------------------------------------------------------------

JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
RAW_EXTENSIONS = frozenset(
    {
        ".dng",
        ".nef",
        ".cr2",
        ".arw",
        ".nrw",
        ".crw",
        ".srf",
        ".sr2",
        ".orf",
        ".raw",
        ".rw2",
        ".raf",
        ".ptx",
        ".pef",
        ".rwl",
        ".srw",
        ".cr3",
        ".3fr",
        ".fff",
    }
)


def file_kind(file_name: str) -> str | None:
    """ "JPG", "RAW" or None (unsupported: PNG, WebP, …) from the file name's extension."""
    suffix = PurePosixPath(file_name).suffix.lower()
    if suffix in JPEG_EXTENSIONS:
        return "JPG"
    if suffix in RAW_EXTENSIONS:
        return "RAW"
    return None


# [ASSUME] the sandbox emulates JPEG projects only (it cannot develop RAW files): RAW file names
# are refused with a message saying so, exactly like unsupported types.
SANDBOX_ACCEPTS_RAW = False
MAX_FILE_NAME_CHARS = 255  # [ASSUME] S3 keys allow 1024 bytes; file names this long are plenty


def exported_file_name(uploaded: str, *, production: bool = False) -> str:
    """The default profile: [ASSUME] an exported JPEG keeps the uploaded JPEG's file name. The production
    profile renames it as the quickstart's example does [DOC: `922A4846.CR2` is exported `922A4846.JPG`]:
    the stem kept, the extension `.JPG`."""
    if production:
        return str(PurePosixPath(uploaded).with_suffix(".JPG"))
    return uploaded


# The `production` profile answers as the `imagen-ai-sdk` 1.2.2 source says production does [DOC]:
# payloads at the root (not wrapped in {"data": …}), GET /profiles as a bare list, errors as
# {"error": {"message": …}}; and exports renamed as above.
PROFILES = ("default", "production")


# --- Edit options [DOC: SDK] --------------------------------------------------------------------

BOOLEAN_OPTIONS = (
    "crop",
    "straighten",
    "hdr_merge",
    "portrait_crop",
    "smooth_skin",
    "subject_mask",
    "headshot_crop",
    "perspective_correction",
    "sky_replacement",
    "window_pull",
)
CROP_ASPECT_RATIOS = ("2X3", "4X5", "5X7")
HDR_OUTPUT_COMPRESSIONS = ("LOSSY", "LOSSLESS")
PHOTOGRAPHY_TYPES = (
    "NO_TYPE",
    "OTHER",
    "PORTRAITS",
    "WEDDING",
    "REAL_ESTATE",
    "LANDSCAPE_NATURE",
    "EVENTS",
    "FAMILY_NEWBORN",
    "BOUDOIR",
    "SPORTS",
    "SCHOOL",
)
AT_MOST_ONE_OF = (("crop", "headshot_crop", "portrait_crop"),)  # [DOC: SDK]
MUTUALLY_EXCLUSIVE = (("straighten", "perspective_correction"),)  # [DOC: SDK]
# [ASSUME] unknown fields in the edit body are refused (400), so a misspelt option never
# silently does nothing.
REJECT_UNKNOWN_EDIT_FIELDS = True
# [DOC] /edit and /export "require an empty Content-Type header". [ASSUME] anything else is a 400.
REQUIRE_EMPTY_CONTENT_TYPE = True

# --- Statuses [DOC] -----------------------------------------------------------------------------

PENDING = "Pending"
IN_PROGRESS = "In Progress"
COMPLETED = "Completed"
FAILED = "Failed"
EDIT_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED)
EXPORT_STATUSES = (IN_PROGRESS, COMPLETED, FAILED)  # [DOC] export has no Pending
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED})
ACTION_EDIT = "edit"
# [ASSUME] statuses are per project: one file that is not a decodable JPEG fails the whole edit,
# its name in the status `details`.
ONE_BAD_FILE_FAILS_THE_EDIT = True
# [ASSUME] starting a new edit discards the previous export (it no longer matches the edit).
NEW_EDIT_DISCARDS_EXPORT = True
# [ASSUME] a callback is one POST attempt, no retries (the status endpoint stays the truth).
CALLBACK_ATTEMPTS = 1
ACTION_EXPORT = "export"

# --- Errors [ASSUME] ----------------------------------------------------------------------------
# The docs show no error bodies. The SDK reads `detail` from an error's JSON (FastAPI's shape)
# and treats 401 as an authentication failure; the statuses below are our choice.

ERROR_FIELD = "detail"
UNAUTHORIZED = 401  # missing, unknown or misplaced x-api-key
BAD_REQUEST = 400  # invalid body, duplicate file names, option exclusions, wrong order of steps
NOT_FOUND = 404  # unknown project, another key's project, or a status asked before any edit/export
CONFLICT = 409  # an edit/export while one is still running
MISSING_KEY_MESSAGE = "Missing x-api-key header."
INVALID_KEY_MESSAGE = "Invalid API key or unauthorized."

# --- Billing [ASSUME] ---------------------------------------------------------------------------
# Imagen bills per edited photo: every image of a project is charged once each time an edit of
# it completes (a Failed edit charges nothing); export is free. A second edit of the same
# project is a second charge: that is what the client must never cause.
CHARGE_ON = "edit_completed"

# --- Temporary (presigned) links [ASSUME] -------------------------------------------------------
# [DOC] links are temporary AWS presigned URLs; the lifetime is not published.
LINK_LIFETIME_SECONDS = 3600
# [DOC] the upload PUT carries no x-api-key and an empty/absent Content-Type. Like S3 with a
# signature that covers Content-Type (SigV2 style), a PUT with a Content-Type is refused (403
# SignatureDoesNotMatch). An x-api-key header is ignored as S3 ignores unsigned headers, but the
# sandbox counts it: the key must never travel to the storage host.
