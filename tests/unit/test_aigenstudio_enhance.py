"""The sandbox's image enhancement: a product on an uneven backdrop becomes a centred product on white."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

from retouch.plugin.providers.aigenstudio.sandbox import enhance

WHITE = (255, 255, 255)
BOTTLE = (30, 70, 160)
PRODUCT_BOX = (340, 200, 560, 590)  # where the bottle body is drawn


def product_photo(seed: int = 1) -> Image.Image:
    """A 900x700 'photo': warm gradient backdrop with noise and a shadow, a blue bottle with a pale label off-centre."""
    width, height = 900, 700
    ramp = Image.linear_gradient("L").rotate(90).resize((width, height))
    backdrop = Image.merge(
        "RGB",
        [ramp.point(lambda v: 150 + v // 3), ramp.point(lambda v: 140 + v // 3), ramp.point(lambda v: 120 + v // 4)],
    )
    shadow = Image.new("L", (width, height), 0)
    ImageDraw.Draw(shadow).ellipse((300, 560, 620, 620), fill=90)
    photo = Image.composite(
        Image.new("RGB", (width, height), (60, 55, 50)), backdrop, shadow.filter(ImageFilter.GaussianBlur(15))
    )
    draw = ImageDraw.Draw(photo)
    draw.rounded_rectangle(PRODUCT_BOX, radius=40, fill=BOTTLE)
    draw.rectangle((410, 140, 490, 210), fill=(20, 20, 20))  # cap
    draw.rectangle((370, 330, 530, 450), fill=backdrop.getpixel((450, 390)))  # a label of the backdrop's colour
    random.seed(seed)
    noise = Image.effect_noise((width, height), 12).convert("RGB")
    return Image.blend(photo, noise, 0.06)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def non_white_box(image: Image.Image, tolerance: int = 12) -> tuple[int, int, int, int]:
    distance = ImageChops.difference(image.convert("RGB"), Image.new("RGB", image.size, WHITE)).convert("L")
    box = distance.point(lambda v: 255 if v > tolerance else 0).getbbox()
    assert box is not None, "the result is blank"
    return box


def test_result_is_a_centred_product_on_a_white_square() -> None:
    photo = product_photo()
    result = enhance.enhance(jpeg(photo))
    assert result.mode == "RGB" and result.width == result.height
    assert result.size != photo.size

    # A white frame all around: the margin is pure white, not the beige backdrop.
    band = result.width // 20
    for box in (
        (0, 0, result.width, band),
        (0, result.height - band, result.width, result.height),
        (0, 0, band, result.height),
        (result.width - band, 0, result.width, result.height),
    ):
        assert result.crop(box).getextrema() == ((255, 255),) * 3

    # The product is there, in its colour, and centred (the photo had it off-centre vertically).
    left, top, right, bottom = non_white_box(result)
    assert abs(left - (result.width - right)) <= 3 and abs(top - (result.height - bottom)) <= 3
    centre = result.crop(
        (result.width // 2 - 5, int(result.height * 0.75), result.width // 2 + 5, int(result.height * 0.75) + 10)
    )
    red, green, blue = ImageStat.Stat(centre).mean
    assert blue > 120 and red < 80  # bottle blue

    # The backdrop is gone: no beige anywhere outside the product's box.
    outside = Image.new("L", result.size, 255)
    ImageDraw.Draw(outside).rectangle((left, top, right, bottom), fill=0)
    assert ImageStat.Stat(result.convert("L"), mask=outside).extrema[0] == (255, 255)


def test_mask_finds_the_product_and_keeps_its_pale_label() -> None:
    photo = product_photo()
    mask = enhance.product_mask(photo).point(lambda v: 255 if v >= 128 else 0)
    truth = Image.new("L", photo.size, 0)
    ImageDraw.Draw(truth).rounded_rectangle(PRODUCT_BOX, radius=40, fill=255)
    ImageDraw.Draw(truth).rectangle((410, 140, 490, 210), fill=255)
    both = ImageStat.Stat(ImageChops.logical_and(mask.convert("1"), truth.convert("1")).convert("L")).sum[0]
    either = ImageStat.Stat(ImageChops.logical_or(mask.convert("1"), truth.convert("1")).convert("L")).sum[0]
    assert both / either > 0.93  # intersection over union
    label = mask.crop((380, 340, 520, 440))
    assert label.getextrema() == (255, 255)  # the label is inside the product, not background


def test_transparent_png_uses_its_alpha() -> None:
    image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((50, 40, 170, 160), fill=(200, 30, 30, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    result = enhance.enhance(buffer.getvalue())
    left, top, right, bottom = non_white_box(result)
    assert abs((right - left) - (bottom - top)) <= 4  # the circle, not the 300x200 canvas
    assert result.getpixel((result.width // 2, result.height // 2))[0] > 150


def test_presets_and_levels_change_the_result() -> None:
    data = jpeg(product_photo())
    strict = enhance.enhance(data, preset="single_product_white_background", preservation_level="strict")
    marketplace = enhance.enhance(data, preset="marketplace_clean_catalog", preservation_level="strict")
    creative = enhance.enhance(data, preset="single_product_white_background", preservation_level="creative")
    assert marketplace.width > strict.width  # wider margin, same product
    assert ImageChops.difference(strict, creative).getbbox() is not None


def test_thumbnail_and_png() -> None:
    result = enhance.enhance(jpeg(product_photo()))
    thumb = enhance.thumbnail(result)
    assert max(thumb.size) == 256
    decoded = Image.open(io.BytesIO(enhance.to_png(result)))
    assert decoded.format == "PNG" and decoded.size == result.size


def test_garbage_is_an_enhancement_error() -> None:
    with pytest.raises(enhance.EnhancementError):
        enhance.enhance(b"not an image at all")
