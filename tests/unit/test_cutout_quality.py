"""The sandboxes' stand-in enhancement cuts the product out like a product photo service would.

Measured on the Shopify sandbox's own generated photos, whose true silhouette is known
(`photos.product_photo_and_mask`), across seeds (so shapes, colours, lighting and clutter), sizes and
formats: the kept product overlaps the silhouette with IoU >= 0.9, and >= 98 % of the photo's background
is gone (cropped away, or pure white in the result); what is left is a thin anti-aliased edge along
the product, never a blob of the old backdrop. Run with `-s` to see the figures of every photo.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from retouch.plugin.providers.aigenstudio.sandbox import enhance, segment
from retouch.plugin.providers.productai.sandbox import imaging as productai_imaging
from retouch.plugin.shopify.sandbox.photos import _SHAPES, product_photo_and_mask

MIN_IOU = 0.9
MIN_WHITE = 0.98
# A non-white pixel of the background lies at most this far from the product's true edge: 5 pixels of the
# copy (at most 800 px, segment.REFINE_SIDE) on which the edge is settled.
EDGE_RING = 5
# Every shape at least twice (the shape is seed % 6), four sizes and aspect ratios, the three formats.
CASES = [
    (seed, fmt, size)
    for seed, fmt, size in zip(
        range(3, 3 + 2 * len(_SHAPES) * 7, 7),
        ["JPEG", "PNG", "WEBP"] * 4,
        [(640, 640), (900, 700), (480, 640), (1600, 1200)] * 3,
    )
]


def cutout_figures(data: bytes, truth: Image.Image) -> tuple[float, float, float, enhance.Cutout]:
    """IoU of the kept product with the true silhouette; share of the photo's background that is gone
    (cropped away or pure white in the result); how far from the product's edge a left-over pixel lies."""
    cutout = enhance.cut_out(data)
    kept = np.asarray(cutout.mask) >= 128
    product = np.asarray(truth) >= 128
    iou = float((kept & product).sum() / (kept | product).sum())
    shown = np.asarray(cutout.place(Image.new("L", truth.size, 255))) >= 128
    placed_product = np.asarray(cutout.place(truth)) >= 128
    left_over = shown & ~placed_product & ~(np.asarray(cutout.image) == 255).all(axis=2)
    area_scale = (cutout.size[0] / (cutout.box[2] - cutout.box[0])) ** 2  # < 1 only for results capped in size
    white = 1 - left_over.sum() / (area_scale * (~product).sum())
    from_edge = cv2.distanceTransform((~placed_product).astype(np.uint8), cv2.DIST_L2, 3)
    farthest = float(from_edge[left_over].max()) if left_over.any() else 0.0
    return iou, float(white), farthest, cutout


def test_the_cases_cover_every_shape() -> None:
    assert {_SHAPES[seed % len(_SHAPES)] for seed, _, _ in CASES} == set(_SHAPES)


@pytest.mark.parametrize("seed,fmt,size", CASES)
def test_the_product_is_cut_out_cleanly_onto_white(seed: int, fmt: str, size: tuple[int, int]) -> None:
    data, truth = product_photo_and_mask(seed, fmt, size)  # type: ignore[arg-type]
    iou, white, farthest, cutout = cutout_figures(data, truth)
    figures = (
        f"seed {seed} {_SHAPES[seed % len(_SHAPES)]} {fmt} {size[0]}x{size[1]}: IoU {iou:.3f}, "
        f"background gone {white:.2%}, left-over pixels at most {farthest:.1f} px from the product's edge"
    )
    print(figures)
    assert iou >= MIN_IOU, figures
    assert white >= MIN_WHITE, figures
    assert farthest <= EDGE_RING * max(1.0, max(size) / segment.REFINE_SIDE), figures
    # Centred on a white square: the product's box sits in the middle of the canvas.
    left, top, right, bottom = cutout.place(cutout.mask).point(lambda v: 255 if v >= 128 else 0).getbbox()
    side = cutout.image.width
    assert cutout.image.height == side
    assert abs(left - (side - right)) <= 3 and abs(top - (side - bottom)) <= 3, figures


def test_productai_generate_uses_the_same_cut_out() -> None:
    data, truth = product_photo_and_mask(11, "JPEG")
    generated = Image.open(io.BytesIO(productai_imaging.generate(data))).convert("RGB")
    assert np.array_equal(np.asarray(generated), np.asarray(enhance.enhance(data)))
