"""Generated "product photos" for the sandbox store: a product on a grey, cluttered, unevenly lit
background — the kind of merchant snapshot an enhancement service is meant to clean up.

`product_photo(seed, fmt)` is deterministic for a seed, varied across seeds (product shape, colours,
lighting, clutter), and fast (a few milliseconds at 640 × 640): drawing is done at quarter size
where blur is needed and scaled up, and noise comes from Pillow's C implementation.
"""

from __future__ import annotations

import io
import random
from functools import cache, lru_cache
from typing import Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter

PhotoFormat = Literal["JPEG", "PNG", "WEBP"]

# Muted, plausible product colours (RGB): ceramics, glass, plastics, paper, metal.
_PRODUCT_COLOURS = [
    (196, 64, 52),
    (52, 92, 160),
    (40, 128, 96),
    (222, 176, 56),
    (120, 72, 148),
    (230, 226, 214),
    (48, 48, 52),
    (200, 120, 64),
    (90, 150, 170),
    (170, 40, 90),
]
_SHAPES = ("bottle", "mug", "box", "vase", "jar", "ball")
_NOISE_TILE = 512


def _vary(colour: tuple[int, int, int], rng: random.Random, spread: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-spread, spread))) for c in colour)  # type: ignore[return-value]


def _background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Grey backdrop with a lopsided light fall-off and a few blurred objects lying around."""
    small = (max(1, size[0] // 4), max(1, size[1] // 4))
    base = rng.randint(120, 185)
    tint = _vary((base, base, base), rng, 10)
    backdrop = Image.new("RGB", small, tint)
    # Uneven light: a radial gradient whose centre is pushed off to one side.
    light = Image.radial_gradient("L").resize((small[0] * 2, small[1] * 2))
    cx, cy = rng.randint(0, small[0]), rng.randint(0, small[1] // 2)
    light = light.crop((small[0] - cx, small[1] - cy, 2 * small[0] - cx, 2 * small[1] - cy))
    dark = Image.new("RGB", small, _vary((base // 3,) * 3, rng, 8))
    backdrop = Image.composite(dark, backdrop, light.point(lambda v: int(v * 0.75)))
    # A table edge / horizon line.
    draw = ImageDraw.Draw(backdrop)
    horizon = int(small[1] * rng.uniform(0.55, 0.7))
    draw.rectangle((0, horizon, small[0], small[1]), fill=_vary((base - 25,) * 3, rng, 12))
    # Clutter: cables, boxes, cups — soft shapes in dull colours, mostly near the edges.
    for _ in range(rng.randint(3, 7)):
        x = rng.choice([rng.randint(-10, small[0] // 4), rng.randint(3 * small[0] // 4, small[0] + 10)])
        y = rng.randint(small[1] // 6, small[1])
        w, h = rng.randint(8, 40), rng.randint(6, 30)
        colour: tuple[int, ...] = _vary(rng.choice(_PRODUCT_COLOURS), rng, 30)
        colour = tuple((c + base) // 2 for c in colour)
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        else:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
    for _ in range(rng.randint(1, 3)):  # a cable or two
        points = [(rng.randint(0, small[0]), rng.randint(horizon, small[1])) for _ in range(4)]
        draw.line(points, fill=_vary((60, 60, 60), rng, 20), width=2)
    backdrop = backdrop.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.5)))
    return backdrop.resize(size, Image.Resampling.BILINEAR)


def _product_mask(
    shape: str, size: tuple[int, int], rng: random.Random
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A white-on-black mask of the product silhouette and its bounding box."""
    w, h = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    cx = w // 2 + rng.randint(-w // 12, w // 12)
    bottom = int(h * rng.uniform(0.78, 0.86))
    if shape == "bottle":
        bw, bh = int(w * 0.2), int(h * 0.45)
        top = bottom - bh
        draw.rounded_rectangle((cx - bw // 2, top, cx + bw // 2, bottom), radius=bw // 4, fill=255)
        nw = bw // 3
        draw.rectangle((cx - nw // 2, top - bh // 4, cx + nw // 2, top + 4), fill=255)
        draw.rectangle((cx - nw // 2 - 3, top - bh // 4 - bh // 10, cx + nw // 2 + 3, top - bh // 4 + 2), fill=255)
        box = (cx - bw // 2, top - bh // 4 - bh // 10, cx + bw // 2, bottom)
    elif shape == "mug":
        mw, mh = int(w * 0.28), int(h * 0.28)
        top = bottom - mh
        draw.rounded_rectangle((cx - mw // 2, top, cx + mw // 2, bottom), radius=mw // 10, fill=255)
        hw = mw // 3
        draw.ellipse((cx + mw // 2 - hw // 3, top + mh // 5, cx + mw // 2 + hw, bottom - mh // 5), fill=255)
        draw.ellipse((cx + mw // 2, top + mh // 3, cx + mw // 2 + hw // 2, bottom - mh // 3), fill=0)
        box = (cx - mw // 2, top, cx + mw // 2 + hw, bottom)
    elif shape == "box":
        bw, bh = int(w * rng.uniform(0.3, 0.42)), int(h * rng.uniform(0.25, 0.4))
        top = bottom - bh
        depth = bw // 5
        draw.polygon(
            [
                (cx - bw // 2, top),
                (cx - bw // 2 + depth, top - depth),
                (cx + bw // 2 + depth, top - depth),
                (cx + bw // 2 + depth, bottom - depth),
                (cx + bw // 2, bottom),
                (cx - bw // 2, bottom),
            ],
            fill=255,
        )
        box = (cx - bw // 2, top - depth, cx + bw // 2 + depth, bottom)
    elif shape == "vase":
        vw, vh = int(w * 0.24), int(h * 0.5)
        top = bottom - vh
        draw.ellipse((cx - vw // 2, top + vh // 3, cx + vw // 2, bottom), fill=255)
        draw.rectangle((cx - vw // 6, top, cx + vw // 6, top + vh // 2), fill=255)
        draw.ellipse((cx - vw // 4, top - vh // 20, cx + vw // 4, top + vh // 14), fill=255)
        box = (cx - vw // 2, top - vh // 20, cx + vw // 2, bottom)
    elif shape == "jar":
        jw, jh = int(w * 0.26), int(h * 0.3)
        top = bottom - jh
        draw.rounded_rectangle((cx - jw // 2, top, cx + jw // 2, bottom), radius=jw // 6, fill=255)
        draw.rectangle((cx - jw // 2 + 4, top - jh // 6, cx + jw // 2 - 4, top + 2), fill=255)
        box = (cx - jw // 2, top - jh // 6, cx + jw // 2, bottom)
    else:  # ball
        r = int(min(w, h) * rng.uniform(0.14, 0.2))
        draw.ellipse((cx - r, bottom - 2 * r, cx + r, bottom), fill=255)
        box = (cx - r, bottom - 2 * r, cx + r, bottom)
    return mask, box


@cache
def _noise_tile() -> Image.Image:
    """Gaussian noise around 128, made once: generating it is the slowest step of a photo."""
    return Image.effect_noise((_NOISE_TILE, _NOISE_TILE), 10).convert("RGB")


def _noise(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A noise layer of `size`: a random window of the cached tile, tiled for large photos."""
    tile = _noise_tile()
    ox, oy = rng.randrange(_NOISE_TILE), rng.randrange(_NOISE_TILE)
    layer = Image.new("RGB", size)
    for x in range(-ox, size[0], _NOISE_TILE):
        for y in range(-oy, size[1], _NOISE_TILE):
            layer.paste(tile, (x, y))
    return layer


def _render(seed: int, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """The photo for `seed` and its product mask (L, 255 on the product, 0 on the backdrop)."""
    rng = random.Random(seed)
    w, h = size
    photo = _background(size, rng)
    shape = _SHAPES[seed % len(_SHAPES)] if seed >= 0 else rng.choice(_SHAPES)
    mask, (x0, y0, x1, y1) = _product_mask(shape, size, rng)

    # Contact shadow: a blurred ellipse under the product, offset away from the light.
    shadow = Image.new("L", (w // 4, h // 4), 0)
    ImageDraw.Draw(shadow).ellipse((x0 // 4 - 2, y1 // 4 - 4, x1 // 4 + 6, y1 // 4 + 3), fill=rng.randint(110, 170))
    shadow = shadow.filter(ImageFilter.GaussianBlur(3)).resize(size, Image.Resampling.BILINEAR)
    photo = Image.composite(Image.new("RGB", size, (25, 25, 28)), photo, shadow)

    # The product: a base colour shaded left-to-right (a soft cylinder look) plus a highlight.
    colour = _vary(rng.choice(_PRODUCT_COLOURS), rng, 18)
    shade = Image.linear_gradient("L").rotate(90).resize((max(1, x1 - x0), max(1, y1 - y0)))
    shade = shade.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else shade
    body = Image.new("RGB", size, colour)
    darker = Image.new("RGB", size, tuple(int(c * 0.45) for c in colour))
    falloff = Image.new("L", size, 0)
    falloff.paste(shade.point(lambda v: int(v * 0.8)), (x0, y0))
    body = Image.composite(darker, body, falloff)
    highlight = Image.new("L", size, 0)
    hx = x0 + (x1 - x0) // 4
    ImageDraw.Draw(highlight).rounded_rectangle(
        (hx, y0 + (y1 - y0) // 8, hx + max(2, (x1 - x0) // 10), y1 - (y1 - y0) // 6), radius=4, fill=120
    )
    highlight = highlight.filter(ImageFilter.BoxBlur(3))
    body = Image.composite(Image.new("RGB", size, (250, 250, 250)), body, highlight)
    # A label on some products, so "before/after" comparisons have detail to look at.
    if shape in ("bottle", "jar", "box") and rng.random() < 0.8:
        label = ImageDraw.Draw(body)
        ly = y0 + (y1 - y0) * 2 // 5
        label.rectangle((x0 + 6, ly, x1 - 6, ly + (y1 - y0) // 5), fill=_vary((238, 232, 220), rng, 10))
        label.line((x0 + 14, ly + 10, x1 - 14, ly + 10), fill=colour, width=3)
    photo = Image.composite(body, photo, mask.filter(ImageFilter.SMOOTH))

    # Sensor noise and a slight colour cast: what a phone photo in a back room looks like.
    photo = ImageChops.add(photo, _noise(size, rng), offset=-128)
    cast = Image.new("RGB", size, _vary((128, 128, 128), rng, 12))
    return ImageChops.blend(photo, cast, 0.08), mask


def product_photo(seed: int, fmt: PhotoFormat = "JPEG", size: tuple[int, int] = (640, 640)) -> bytes:
    """Encoded bytes of the generated photo for `seed` in `fmt` ("JPEG", "PNG" or "WEBP")."""
    return _encode(_render(seed, size)[0], fmt)


def product_photo_and_mask(
    seed: int, fmt: PhotoFormat = "JPEG", size: tuple[int, int] = (640, 640)
) -> tuple[bytes, Image.Image]:
    """`product_photo(seed, fmt, size)` and the product's true silhouette (L, 255 on the product): the
    ground truth the sandboxes' stand-in enhancement is measured against (tests/unit/test_cutout_quality.py)."""
    image, mask = _render(seed, size)
    return _encode(image, fmt), mask


def _encode(image: Image.Image, fmt: PhotoFormat) -> bytes:
    fmt_upper = fmt.upper()
    out = io.BytesIO()
    if fmt_upper == "JPEG":
        image.save(out, "JPEG", quality=85)
    elif fmt_upper == "PNG":
        image.save(out, "PNG", compress_level=1)
    elif fmt_upper == "WEBP":
        image.save(out, "WEBP", quality=80, method=0)
    else:
        raise ValueError(f"unsupported photo format {fmt!r}; use JPEG, PNG or WEBP")
    return out.getvalue()


# How many drawn photos `cached_photo` keeps: enough for a client downloading a page of media
# (and reading its checksums) without redrawing; a 640 x 640 PNG is about 650 kB.
PHOTO_CACHE_SIZE = 48


@lru_cache(maxsize=PHOTO_CACHE_SIZE)
def cached_photo(seed: int, fmt: PhotoFormat, size: tuple[int, int] = (640, 640)) -> bytes:
    """`product_photo(seed, fmt, size)`, kept in a small LRU: seeded media are recipes whose bytes
    are drawn on request (CDN download, checksum) rather than when the catalog is seeded."""
    return product_photo(seed, fmt, size)


def format_for_filename(filename: str) -> PhotoFormat:
    """The photo format a filename's extension asks for (JPEG for anything unknown)."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"png": "PNG", "webp": "WEBP"}.get(ext, "JPEG")  # type: ignore[return-value]
