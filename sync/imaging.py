"""Image bytes: recognise a format, judge a source, and convert between formats with Pillow.

Shopify refuses to replace a media with a file of another extension, so a PNG result for a
JPEG original is converted to JPEG here before it is uploaded.

What a source may be (`check_source`), decided before anything is paid for:
  - not an image, or truncated       -> fails: source_not_image
  - more than MAX_PIXELS (a decompression bomb declares huge dimensions in a tiny file)
                                     -> fails: source_too_large, without decoding it
  - animated (GIF, WebP, APNG)       -> fails: source_animated; an enhancement is one still picture,
                                        and writing it back would replace the product's animation
  - CMYK, 16-bit, palette with transparency: legitimate product photos; they are enhanced, and
    converted to 8-bit RGB where we produce the bytes (`to_rgb`), CMYK through its ICC profile.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageCms, UnidentifiedImageError

# A result larger than this many pixels is refused rather than decoded (decompression bombs).
MAX_PIXELS = 80_000_000

# How a result is encoded when it must change format for write-back. Shopify re-compresses what
# it stores and serves each shopper its own format and size (WebP or AVIF where supported), so the
# file we upload is a master: it keeps its quality, and no CPU goes on passes that only make the
# master a little smaller. JPEG: quality 92 without `optimize` (that second, lossless Huffman
# pass costs 29% more time for 3.5% fewer bytes). WebP: Pillow's quality 80 at libwebp's method 2
# instead of its default 4 (half the time for 2.4% more bytes). Measured on the bench's results.
ENCODE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 92},
    "WEBP": {"quality": 80, "method": 2},
}


class ImageDataError(Exception):
    """The bytes are not an image we can use; `code` says why, in one word."""

    def __init__(self, message: str, code: str = "not_image") -> None:
        super().__init__(message)
        self.code = code


def _open(data: bytes) -> Image.Image:
    """Pillow's lazy image, its size checked before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own limit (twice its warning size), reached on open
        raise ImageDataError("image declares more pixels than can be decoded safely", "too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageDataError(f"not a readable image ({exc.__class__.__name__})") from None
    if img.width * img.height > MAX_PIXELS:
        img.close()
        raise ImageDataError(f"image of {img.width}x{img.height} pixels is too large", "too_large")
    return img


def sniff_format(data: bytes) -> str:
    """Pillow's format name ('JPEG', 'PNG', 'WEBP' …) of the bytes; ImageDataError if not an image."""
    with _open(data) as img:
        return img.format or "UNKNOWN"


def check_source(data: bytes) -> str:
    """The format of an original we can enhance, its whole file read once; ImageDataError (with its
    code: not_image, too_large, animated) for one we must not send.

    Truncated or corrupt files fail here, not at the provider, at the least cost that still reads
    every byte of the picture: a PNG's chunks are checked against their CRCs through IEND
    (`verify`, without inflating the pixels: 0.1 ms instead of 5 ms at 640 x 640); a JPEG's whole
    entropy-coded stream is decoded, at an eighth of its size (`draft`: the cut-off data shows all
    the same); other formats are decoded in full."""
    with _open(data) as img:
        if getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
            raise ImageDataError(
                f"an animated {img.format} of {img.n_frames} frames; enhancing one frame "  # type: ignore[attr-defined]  # is_animated: it has
                "would replace the animation with a still picture",
                "animated",
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if img.format == "PNG":
                    img.verify()
                else:
                    if img.format == "JPEG":
                        img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                    img.load()
        except Exception as exc:  # noqa: BLE001 - hostile bytes can break a decoder in any way
            raise ImageDataError(f"not a readable image ({exc.__class__.__name__})") from None
        return img.format or "UNKNOWN"


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """8-bit RGB (or L) for any mode: CMYK through its embedded ICC profile to sRGB, 16-bit scaled
    (not clipped), transparency flattened onto white, the background a product photo expects."""
    if img.mode in ("RGB", "L"):
        return img
    if img.mode == "CMYK":
        profile = img.info.get("icc_profile")
        if profile:
            try:
                return ImageCms.profileToProfile(
                    img,
                    ImageCms.ImageCmsProfile(io.BytesIO(profile)),  # type: ignore[return-value]  # None only inPlace
                    ImageCms.createProfile("sRGB"),
                    outputMode="RGB",
                )
            except (ImageCms.PyCMSError, OSError, ValueError):
                pass  # an unusable profile: Pillow's plain conversion below
        return img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: Pillow's convert("L") would clip every value above 255 to white.
        return img.point(lambda value: value / 256).convert("L")
    rgba = img.convert("RGBA")  # P (with or without transparency), LA, RGBA, 1, YCbCr …
    flat = Image.new("RGB", rgba.size, background)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def convert(data: bytes, target_format: str) -> bytes:
    """The same picture in `target_format`; unchanged bytes when it already is in that format."""
    if sniff_format(data) == target_format:
        return data
    with _open(data) as img:
        try:
            img.load()
            if target_format == "JPEG" or img.mode in ("CMYK", "I;16", "I;16B", "I;16L", "I"):
                # JPEG has no alpha; PNG and WebP have no CMYK; WebP has no 16-bit.
                img = to_rgb(img)
            out = io.BytesIO()
            img.save(out, format=target_format, **ENCODE_OPTIONS.get(target_format, {}))
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageDataError(f"not convertible to {target_format} ({exc.__class__.__name__})") from None
        return out.getvalue()


def mode_of(data: bytes) -> str:
    """Pillow's mode of the bytes ('RGB', 'CMYK', 'P' …); ImageDataError if not an image."""
    with _open(data) as img:
        return img.mode


def rgb_jpeg(data: bytes) -> bytes:
    """The picture as an 8-bit RGB JPEG, re-encoded even when it already is a JPEG (a CMYK one)."""
    with _open(data) as img:
        try:
            img.load()
            out = io.BytesIO()
            to_rgb(img).save(out, format="JPEG", quality=92, optimize=True)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageDataError(f"not convertible to JPEG ({exc.__class__.__name__})") from None
        return out.getvalue()
