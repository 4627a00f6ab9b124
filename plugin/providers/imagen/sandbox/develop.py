"""The sandbox's stand-in for Imagen's AI edit: a small, real photographer-style develop with Pillow.

Like the real service, it works in two steps:
- `analyse` (the edit) measures the photo and decides develop settings — white balance gains
  (grey world, nudged by the profile's look), an exposure correction towards a mid-grey mean,
  contrast, saturation, sharpening and the crop the options ask for — without touching pixels;
- `render` (the export) applies those settings and writes a JPEG.

Not emulated: straighten, perspective_correction, subject_mask, sky_replacement, window_pull and
hdr_merge are recorded in the settings (and so in the XMP) but change no pixels: guessing a
horizon or a sky from a product photo would be theatre, not a test aid.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps, ImageStat

from .validation import EditRequest

TARGET_MEAN = 118.0  # a slightly-below-middle grey: what "correctly exposed" aims at
MAX_EV = 1.0  # exposure corrections are clamped to ±1 EV
MAX_GAIN = 1.25  # white-balance gains are clamped to [1/MAX_GAIN, MAX_GAIN]
CROP_TRIM = 0.04  # a plain `crop` trims this fraction off each side [ASSUME]
JPEG_QUALITY = 92
_RATIOS = {"2X3": (2, 3), "4X5": (4, 5), "5X7": (5, 7)}


class DevelopError(Exception):
    """The file is not a decodable JPEG."""


@dataclass(frozen=True)
class Settings:
    """What the edit decided, per image; `crop` is (left, top, right, bottom) as fractions."""

    exposure_ev: float
    wb_gains: tuple[float, float, float]
    contrast_cutoff: float
    saturation: float
    sharpen_percent: int
    smooth: bool
    crop: tuple[float, float, float, float] | None
    recorded: dict[str, Any]  # the options that change no pixels here, for the XMP

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_jpeg(data: bytes) -> Image.Image:
    """The upright RGB photo, or DevelopError if `data` is not a JPEG."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise DevelopError(f"cannot decode: {type(exc).__name__}") from None
    if image.format != "JPEG":
        raise DevelopError(f"not a JPEG but {image.format}")
    return ImageOps.exif_transpose(image).convert("RGB")


def profile_look(profile_key: int) -> tuple[float, float]:
    """(warmth, saturation) of a profile: stable per key, so two profiles give two looks."""
    warmth = ((profile_key % 5) - 1) * 0.02  # mostly a little warm, like most editing styles
    saturation = 1.08 + (profile_key % 3) * 0.04
    return warmth, saturation


def _crop_box(size: tuple[int, int], request: EditRequest) -> tuple[float, float, float, float] | None:
    if not any(request.enabled(name) for name in ("crop", "portrait_crop", "headshot_crop")):
        return None
    width, height = size
    left, top, right, bottom = CROP_TRIM, CROP_TRIM, 1 - CROP_TRIM, 1 - CROP_TRIM
    ratio = _RATIOS.get(request.options.get("crop_aspect_ratio", ""))
    if ratio is not None:
        short, long = ratio
        # Keep the photo's orientation: a landscape photo gets 3:2, a portrait one 2:3.
        target = long / short if width >= height else short / long
        usable_w, usable_h = width * (right - left), height * (bottom - top)
        if usable_w / usable_h > target:
            new_w = usable_h * target
            margin = (usable_w - new_w) / 2 / width
            left, right = left + margin, right - margin
        else:
            new_h = usable_w / target
            margin = (usable_h - new_h) / 2 / height
            top, bottom = top + margin, bottom - margin
    return (round(left, 4), round(top, 4), round(right, 4), round(bottom, 4))


def analyse(data: bytes, request: EditRequest) -> Settings:
    """The develop settings for one uploaded JPEG (the "edit")."""
    photo = decode_jpeg(data)
    small = photo.copy()
    small.thumbnail((256, 256))
    means = ImageStat.Stat(small).mean
    grey = sum(means) / 3
    warmth, saturation = profile_look(request.profile_key)
    gains = []
    for channel, mean in enumerate(means):
        gain = grey / max(mean, 1.0)
        gain *= (1 + warmth) if channel == 0 else (1 - warmth) if channel == 2 else 1.0
        gains.append(round(min(MAX_GAIN, max(1 / MAX_GAIN, gain)), 4))
    luminance = ImageStat.Stat(small.convert("L")).mean[0]
    exposure = max(-MAX_EV, min(MAX_EV, math.log2(TARGET_MEAN / max(luminance, 1.0))))
    recorded = {
        name: value
        for name, value in request.options.items()
        if name not in ("crop", "portrait_crop", "headshot_crop", "crop_aspect_ratio", "smooth_skin")
    }
    if request.photography_type:
        recorded["photography_type"] = request.photography_type
    return Settings(
        exposure_ev=round(exposure, 3),
        wb_gains=(gains[0], gains[1], gains[2]),
        contrast_cutoff=1.0,
        saturation=saturation,
        sharpen_percent=70,
        smooth=request.enabled("smooth_skin"),
        crop=_crop_box(photo.size, request),
        recorded=recorded,
    )


def render(data: bytes, settings: Settings) -> bytes:
    """The exported JPEG: `settings` applied to the uploaded photo (the "export")."""
    photo = decode_jpeg(data)
    if settings.crop is not None:
        left, top, right, bottom = settings.crop
        width, height = photo.size
        photo = photo.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))
    multiplier = 2**settings.exposure_ev
    channels = [
        band.point(lambda value, gain=gain: min(255, round(value * gain * multiplier)))
        for band, gain in zip(photo.split(), settings.wb_gains)
    ]
    photo = Image.merge("RGB", channels)
    photo = ImageOps.autocontrast(photo, cutoff=settings.contrast_cutoff, preserve_tone=True)
    photo = ImageEnhance.Color(photo).enhance(settings.saturation)
    if settings.smooth:
        photo = photo.filter(ImageFilter.SMOOTH)
    photo = photo.filter(ImageFilter.UnsharpMask(radius=2, percent=settings.sharpen_percent, threshold=3))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
