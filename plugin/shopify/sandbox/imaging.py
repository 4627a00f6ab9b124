"""What Shopify's image processing decides about a source's bytes: accepted (format, size) or a
`MediaError`. Limits are Shopify's documented ones for product images: 20 MB, 25 megapixels,
aspect ratio between 1:100 and 100:1; JPEG, PNG, WebP and GIF.

Error messages are not in the captures; they are short descriptions in Shopify's style, while the
codes are the real `MediaErrorCode` values.
"""

from __future__ import annotations

import io
import mimetypes
import posixpath
import warnings
from urllib.parse import unquote, urlsplit

from PIL import Image, UnidentifiedImageError

from .model import FORMATS, ImageAsset, MediaFailure

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 25_000_000
MAX_ASPECT_RATIO = 100.0

DOWNLOAD_FAILURE = "IMAGE_DOWNLOAD_FAILURE"
MESSAGES = {
    "IMAGE_DOWNLOAD_FAILURE": "Image could not be downloaded from the source URL.",
    "IMAGE_PROCESSING_FAILURE": "Image could not be processed.",
    "MEDIA_TIMEOUT_ERROR": "Media processing timed out.",
    "UNSUPPORTED_IMAGE_FILE_TYPE": "Image file type is not supported.",
    "INVALID_IMAGE_FILE_SIZE": "Image file size exceeds the 20 MB limit.",
    "INVALID_IMAGE_RESOLUTION": "Image resolution exceeds the 25 megapixel limit.",
    "INVALID_IMAGE_ASPECT_RATIO": "Image aspect ratio must be between 1:100 and 100:1.",
    "UNKNOWN": "Media processing failed.",
}


def failure(code: str, details: str | None = None) -> MediaFailure:
    return MediaFailure(code=code, message=MESSAGES.get(code, MESSAGES["UNKNOWN"]), details=details)


def inspect_image(data: bytes) -> ImageAsset | MediaFailure:
    """Accept `data` as a product image, or say why not."""
    if len(data) > MAX_IMAGE_BYTES:
        return failure("INVALID_IMAGE_FILE_SIZE", f"{len(data)} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            fmt = image.format or ""
            if fmt not in FORMATS:
                return failure("UNSUPPORTED_IMAGE_FILE_TYPE", fmt or None)
            if width * height > MAX_IMAGE_PIXELS:
                return failure("INVALID_IMAGE_RESOLUTION", f"{width}x{height}")
            if max(width, height) / max(1, min(width, height)) > MAX_ASPECT_RATIO:
                return failure("INVALID_IMAGE_ASPECT_RATIO", f"{width}x{height}")
            image.load()  # decode fully: truncated or corrupt files fail here
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return failure("UNSUPPORTED_IMAGE_FILE_TYPE")
    except (OSError, ValueError, SyntaxError) as exc:
        return failure("IMAGE_PROCESSING_FAILURE", type(exc).__name__)
    mime_type, extension = FORMATS[fmt]
    return ImageAsset(data=data, mime_type=mime_type, extension=extension, width=width, height=height)


def filename_from_url(url: str) -> str:
    """The last path segment of a URL, decoded ("" when there is none)."""
    return posixpath.basename(unquote(urlsplit(url).path))


def extension_of(filename: str) -> str:
    """Lower-case extension without the dot ("" when there is none)."""
    base = posixpath.basename(filename)
    return base.rsplit(".", 1)[1].lower() if "." in base.strip(".") else ""


def mime_for_filename(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
