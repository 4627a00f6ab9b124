"""The sandbox's stand-in for AI Gen Studio's enhancement: real, modest image processing (Pillow, OpenCV).

Goal: a product photo on an uneven background becomes a clean catalogue shot — the product
cut out, slightly livelier, centred on a square pure-white canvas with a margin: what a product photo
service delivers. It stands in for the service's AI in tests and in `retouch demo`, and says so there.

1. Mask: the product's silhouette, cut out with OpenCV's GrabCut (segment.py). An image with real
   transparency uses its alpha channel instead.
2. Result: an edge-preserving denoise (bilateral filter), autocontrast + unsharp mask (stronger for "balanced"/"creative"), composited onto
   white through the slightly softened mask, cropped to the product and centred on a square white
   canvas with a margin (wider for the marketplace preset). Nothing outside the mask survives.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from .. import contract
from . import segment

WHITE = (255, 255, 255)
MAX_RESULT_SIDE = 2048
_MARGIN = {"marketplace_clean_catalog": 0.10}  # fraction of the canvas on each side
_DEFAULT_MARGIN = 0.08
_SHARPEN = {"strict": (2, 60, 3), "balanced": (2, 90, 3), "creative": (2, 130, 2)}  # radius, percent, threshold
_CONTRAST_CUTOFF = {"strict": 0.5, "balanced": 1.0, "creative": 2.0}  # percent clipped at each end


class EnhancementError(Exception):
    """The image could not be processed."""


@dataclass(frozen=True)
class Cutout:
    """The result, and where the source photo's pixels went: for measuring the cut-out against a known
    silhouette (tests/unit/test_cutout_quality.py)."""

    image: Image.Image  # the result: RGB, square, white background
    mask: Image.Image  # the product mask used, in the source photo's frame (L)
    box: tuple[int, int, int, int]  # the part of the source photo the result shows
    size: tuple[int, int]  # that part's size on the result's canvas
    offset: tuple[int, int]  # and where it sits there

    def place(self, layer: Image.Image) -> Image.Image:
        """`layer` (L, in the source photo's frame) moved where the result shows the photo; 0 elsewhere."""
        canvas = Image.new("L", self.image.size, 0)
        canvas.paste(layer.crop(self.box).resize(self.size, Image.Resampling.BILINEAR), self.offset)
        return canvas


def enhance(data: bytes, *, preset: str = contract.DEFAULT_PRESET, preservation_level: str = "strict") -> Image.Image:
    """A catalogue version of the encoded image `data` (RGB, square, white background)."""
    return cut_out(data, preset=preset, preservation_level=preservation_level).image


def cut_out(data: bytes, *, preset: str = contract.DEFAULT_PRESET, preservation_level: str = "strict") -> Cutout:
    """`enhance`, with the mask and the placement it used."""
    try:
        source: Image.Image = Image.open(io.BytesIO(data))
        source.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise EnhancementError(f"cannot decode image: {type(exc).__name__}") from None
    source = ImageOps.exif_transpose(source)
    photo = _flatten(source)
    mask = _alpha_mask(source) or product_mask(photo)
    return _compose(photo, mask, preset=preset, preservation_level=preservation_level)


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail(image: Image.Image, side: int = contract.THUMBNAIL_MAX_SIDE) -> Image.Image:
    small = image.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    return small


# --- background and mask ------------------------------------------------------------------------


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _alpha_mask(image: Image.Image) -> Image.Image | None:
    """The alpha channel when the image really uses transparency, else None."""
    if image.mode not in ("RGBA", "LA", "PA") and not (image.mode == "P" and "transparency" in image.info):
        return None
    alpha = image.convert("RGBA").getchannel("A")
    low, high = alpha.getextrema()
    return alpha if low < 250 and high > 5 else None  # type: ignore[operator]  # an L image's extrema: two ints


def product_mask(photo: Image.Image) -> Image.Image:
    """A soft mask (L, photo size): 255 where the product is, 0 on the background (segment.py)."""
    return segment.product_mask(photo)


# --- composition --------------------------------------------------------------------------------


def _compose(photo: Image.Image, mask: Image.Image, *, preset: str, preservation_level: str) -> Cutout:
    cutoff = _CONTRAST_CUTOFF.get(preservation_level, 0.5)
    radius, percent, threshold = _SHARPEN.get(preservation_level, _SHARPEN["strict"])
    # Calm sensor noise first (edge-preserving), or the sharpening below would grain the product.
    calm = np.asarray(photo)
    for _ in range(2):
        calm = cv2.bilateralFilter(calm, 7, 40, 5)
    product = ImageOps.autocontrast(Image.fromarray(calm), cutoff=cutoff, preserve_tone=True)
    product = product.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=threshold))
    on_white = Image.composite(product, Image.new("RGB", photo.size, WHITE), mask)
    box = mask.point(lambda value: 255 if value > 24 else 0).getbbox() or (0, 0, *photo.size)
    cut = on_white.crop(box)
    margin = _MARGIN.get(preset, _DEFAULT_MARGIN)
    side = round(max(cut.size) / (1 - 2 * margin))
    scale = min(1.0, MAX_RESULT_SIDE / side)
    if scale < 1.0:
        cut = cut.resize(
            (max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.Resampling.LANCZOS
        )
        side = MAX_RESULT_SIDE
    canvas = Image.new("RGB", (side, side), WHITE)
    offset = ((side - cut.width) // 2, (side - cut.height) // 2)
    canvas.paste(cut, offset)
    return Cutout(canvas, mask, box, cut.size, offset)
