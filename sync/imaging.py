"""Image bytes: recognise a format and convert between formats with Pillow.

Shopify refuses to replace a media with a file of another extension, so a PNG result for a
JPEG original is converted to JPEG here before it is uploaded.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

# A result larger than this many pixels is refused rather than decoded (decompression bombs).
MAX_PIXELS = 80_000_000


class ImageDataError(Exception):
    """The bytes are not an image we can use."""


def sniff_format(data: bytes) -> str:
    """Pillow's format name ('JPEG', 'PNG', 'WEBP' …) of the bytes; ImageDataError if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageDataError(f"image of {img.width}x{img.height} pixels is too large")
            return img.format or "UNKNOWN"
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageDataError(f"not a readable image ({exc.__class__.__name__})") from None


def convert(data: bytes, target_format: str) -> bytes:
    """The same picture in `target_format`; unchanged bytes when it already is in that format."""
    if sniff_format(data) == target_format:
        return data
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if target_format == "JPEG" and img.mode not in ("RGB", "L"):
            # JPEG has no alpha: flatten onto white, the background a product photo expects.
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            img = flat
        out = io.BytesIO()
        options = {"quality": 92, "optimize": True} if target_format == "JPEG" else {}
        img.save(out, format=target_format, **options)
        return out.getvalue()
