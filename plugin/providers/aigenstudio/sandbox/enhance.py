"""The sandbox's stand-in for AI Gen Studio's enhancement: real, modest image processing with Pillow.

Goal: a product photo on an uneven background becomes a clean catalogue shot — the product
isolated on pure white, slightly livelier, centred on a square canvas with a margin.

1. Background model: the photo's border is assumed to be background. A small copy of the image
   gives the colours along each edge; a Coons patch (bilinear blend of the four edges) fills the
   inside, so gradients and vignettes are modelled, then it is scaled back up smoothly.
2. Mask: per-pixel colour distance to that model, thresholded (Otsu, clamped above the noise
   measured on the border), cleaned with median/closing filters, then everything not connected
   to the border through background pixels is kept (fills holes such as white labels).
   An image with real transparency uses its alpha channel instead.
3. Result: autocontrast + unsharp mask (stronger for "balanced"/"creative"), composited onto
   white through a slightly softened mask, cropped to the product and centred on a square white
   canvas with a margin (wider for the marketplace preset).

No numpy: the mask is computed on a small copy (flood fill is pure Python) and scaled up.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from .. import contract

WHITE = (255, 255, 255)
MASK_SIDE = 320  # the mask is computed at most this big, then scaled up
MAX_RESULT_SIDE = 2048
_MARGIN = {"marketplace_clean_catalog": 0.10}  # fraction of the canvas on each side
_DEFAULT_MARGIN = 0.08
_SHARPEN = {"strict": (2, 60, 3), "balanced": (2, 90, 3), "creative": (2, 130, 2)}  # radius, percent, threshold
_CONTRAST_CUTOFF = {"strict": 0.5, "balanced": 1.0, "creative": 2.0}  # percent clipped at each end


class EnhancementError(Exception):
    """The image could not be processed."""


def enhance(data: bytes, *, preset: str = contract.DEFAULT_PRESET, preservation_level: str = "strict") -> Image.Image:
    """A catalogue version of the encoded image `data` (RGB, square, white background)."""
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


def background_model(photo: Image.Image, grid: int = 24) -> Image.Image:
    """An estimate of the background at every pixel, from the colours along the photo's border."""
    small = photo.resize((grid, grid), Image.Resampling.BOX)
    px: Any = small.load()  # Pillow's pixel access (None only for an image without pixels)
    last = grid - 1
    model = Image.new("RGB", (grid, grid))
    out: Any = model.load()
    for y in range(grid):
        v = y / last
        for x in range(grid):
            u = x / last
            out[x, y] = tuple(
                round(
                    (1 - v) * px[x, 0][c] + v * px[x, last][c]
                    + (1 - u) * px[0, y][c] + u * px[last, y][c]
                    - ((1 - u) * (1 - v) * px[0, 0][c] + u * (1 - v) * px[last, 0][c]
                       + (1 - u) * v * px[0, last][c] + u * v * px[last, last][c])
                )
                for c in range(3)
            )
    return model.resize(photo.size, Image.Resampling.BICUBIC)


def _distance(photo: Image.Image, background: Image.Image) -> Image.Image:
    """Per-pixel colour distance (largest channel difference), as an L image."""
    r, g, b = ImageChops.difference(photo, background).split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b)


def _border_values(image: Image.Image, band: int) -> list[int]:
    width, height = image.size
    px: Any = image.load()
    values = []
    for x in range(width):
        for y in list(range(band)) + list(range(height - band, height)):
            values.append(px[x, y])
    for y in range(band, height - band):
        for x in list(range(band)) + list(range(width - band, width)):
            values.append(px[x, y])
    return values


def _otsu(histogram: list[int]) -> int:
    total = sum(histogram)
    weighted_total = sum(i * h for i, h in enumerate(histogram))
    best, best_score, weight, weighted = 0, -1.0, 0, 0
    for level, count in enumerate(histogram):
        weight += count
        weighted += level * count
        if weight == 0 or weight == total:
            continue
        mean_low = weighted / weight
        mean_high = (weighted_total - weighted) / (total - weight)
        score = weight * (total - weight) * (mean_low - mean_high) ** 2
        if score > best_score:
            best, best_score = level, score
    return best


def product_mask(photo: Image.Image) -> Image.Image:
    """A soft mask (L, photo size): 255 where the product is, 0 on the background."""
    work = photo.copy()
    work.thumbnail((MASK_SIDE, MASK_SIDE), Image.Resampling.BOX)
    work = work.filter(ImageFilter.GaussianBlur(1))  # calm sensor noise and JPEG blocks
    distance = _distance(work, background_model(work))
    band = max(2, min(work.size) // 40)
    border = sorted(_border_values(distance, band))
    noise = border[int(len(border) * 0.98)]
    threshold = max(noise + 10, min(_otsu(distance.histogram()), 60), 16)
    hard = distance.point(lambda value: 255 if value > threshold else 0)
    hard = hard.filter(ImageFilter.MedianFilter(5))  # specks
    hard = hard.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.MinFilter(5))  # small gaps
    hard = _fill_enclosed(hard)
    if hard.getbbox() is None:
        return Image.new("L", photo.size, 255)  # nothing found: keep the whole photo
    return _upscale_mask(hard, photo.size)


def _upscale_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale a hard mask up without staircase edges: blur over one source pixel, re-harden, soften."""
    scale = max(size[0] / mask.width, size[1] / mask.height)
    full = mask.resize(size, Image.Resampling.BILINEAR)
    if scale > 1.5:
        full = full.filter(ImageFilter.GaussianBlur(scale / 2))
    # Keep the middle of the ramp only (steep curve around 55 %): smooth contour, pulled in a
    # little so that no background fringe survives; then a one-pixel soft edge.
    full = full.point(lambda value: max(0, min(255, (value - 140) * 4 + 128)))
    return full.filter(ImageFilter.GaussianBlur(1))


def _fill_enclosed(mask: Image.Image) -> Image.Image:
    """Background = 0-pixels reachable from the border; everything else becomes product (255)."""
    filled = mask.copy()
    width, height = filled.size
    px: Any = filled.load()
    seeds = [(x, y) for x in range(width) for y in (0, height - 1)] + [(x, y) for y in range(height) for x in (0, width - 1)]
    for seed in seeds:
        if px[seed] == 0:
            ImageDraw.floodfill(filled, seed, 128)
    return filled.point(lambda value: 0 if value == 128 else 255)


# --- composition --------------------------------------------------------------------------------


def _compose(photo: Image.Image, mask: Image.Image, *, preset: str, preservation_level: str) -> Image.Image:
    cutoff = _CONTRAST_CUTOFF.get(preservation_level, 0.5)
    radius, percent, threshold = _SHARPEN.get(preservation_level, _SHARPEN["strict"])
    product = ImageOps.autocontrast(photo, cutoff=cutoff, preserve_tone=True)
    product = product.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=threshold))
    on_white = Image.composite(product, Image.new("RGB", photo.size, WHITE), mask)
    box = mask.point(lambda value: 255 if value > 24 else 0).getbbox() or (0, 0, *photo.size)
    cut = on_white.crop(box)
    margin = _MARGIN.get(preset, _DEFAULT_MARGIN)
    side = round(max(cut.size) / (1 - 2 * margin))
    scale = min(1.0, MAX_RESULT_SIDE / side)
    if scale < 1.0:
        cut = cut.resize((max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.Resampling.LANCZOS)
        side = MAX_RESULT_SIDE
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(cut, ((side - cut.width) // 2, (side - cut.height) // 2))
    return canvas
