"""Bad input, image bytes: what an original may be, and what happens to each kind through the real
pipeline (sandbox store and AI Gen Studio over loopback HTTP).

  not an image, truncated, decompression bomb, animated -> failed with the reason, never sent
  CMYK, 16-bit, palette with transparency              -> enhanced; converted to 8-bit RGB where
                                                          we produce the bytes (CMYK via its ICC)
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from bad_images import (
    SOURCES,
    animated,
    cmyk_jpeg,
    decompression_bomb,
    encode,
    html,
    jpeg,
    palette_png_with_transparency,
    png16,
)
from conftest import pipeline_settings, run_async
from retouch.storage.models import ImageState
from retouch.sync import imaging
from retouch.sync.runtime import open_context, run_until_settled


@pytest.mark.parametrize(("name", "make", "code"), SOURCES, ids=[s[0] for s in SOURCES])
def test_check_source(name: str, make, code: str | None) -> None:
    if code is None:
        assert imaging.check_source(make())
    else:
        with pytest.raises(imaging.ImageDataError) as info:
            imaging.check_source(make())
        assert info.value.code == code
        assert str(info.value)  # a reason a person can read


def test_a_bomb_is_refused_from_its_header_without_decoding() -> None:
    # Below Pillow's own limit (2 x 89 M pixels) but above ours: our check, not Pillow's, refuses it.
    with pytest.raises(imaging.ImageDataError, match="12000x8000 pixels is too large"):
        imaging.check_source(decompression_bomb(12_000, 8_000))


def pixels(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("target", ["PNG", "WEBP", "RGB JPEG"])
@pytest.mark.parametrize("with_profile", [False, True])
def test_cmyk_converts_to_rgb_in_every_format(target: str, with_profile: bool) -> None:
    # PNG and WebP have no CMYK; an RGB JPEG is what an upload provider (Imagen) is sent.
    source = cmyk_jpeg(with_profile)
    out = pixels(imaging.rgb_jpeg(source) if target == "RGB JPEG" else imaging.convert(source, target))
    assert out.mode == "RGB"
    red = out.getpixel((out.width // 2, out.height // 2))
    assert red[0] > 150 and red[1] < 110 and red[2] < 110  # the block stays red, not inverted or black


def test_16_bit_scales_instead_of_clipping_to_white() -> None:
    out = pixels(imaging.convert(png16(), "JPEG"))
    assert 140 < out.getpixel((5, 5)) < 170  # 40,000 / 65,535 of white; clipping would give 255


def test_transparency_is_flattened_onto_white() -> None:
    out = pixels(imaging.convert(palette_png_with_transparency(), "JPEG"))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((out.width // 2, out.height // 2))[0] > 150


def test_a_converted_result_keeps_its_quality() -> None:
    # The master Shopify stores: encoded for speed where only its size is at stake, never at a
    # lower quality. JPEG: quality 92's quantisation tables. WebP: lossy, close to the result.
    from retouch.plugin.shopify.sandbox.photos import product_photo

    result = product_photo(7, "PNG", (320, 320))
    as_jpeg = pixels(imaging.convert(result, "JPEG"))
    assert as_jpeg.quantization == pixels(encode(pixels(result).convert("RGB"), "JPEG", quality=92)).quantization
    as_webp = imaging.convert(result, "WEBP")
    assert as_webp[12:16] == b"VP8 "  # the lossy bitstream, as for any WebP photo
    error = ImageChops.difference(pixels(as_webp).convert("RGB"), pixels(result).convert("RGB"))
    rms = max(ImageStat.Stat(error).rms)
    assert 20 * math.log10(255 / max(rms, 1e-9)) > 32  # PSNR of the worst channel, in dB: no visible loss


# --- through the pipeline ---------------------------------------------------------------------------


def swap_cdn_bytes(shop, media_gid: str, data: bytes) -> None:
    """The CDN serving other bytes than Shopify processed (a broken cache, a replaced object): the
    only way a READY media's original can be no image or a bomb, since Shopify refuses those."""
    media = shop._media(media_gid.rsplit("/", 1)[-1])
    with shop._store.lock:
        media.ready = dataclasses.replace(media.ready, data=data)
        media.versions = {version: media.ready for version in media.versions}


def test_each_kind_of_original_ends_as_it_should_and_the_rest_go_on(shop, provider, tmp_path: Path) -> None:
    originals = {
        "plain.jpg": jpeg(),
        "cmyk.jpg": cmyk_jpeg(),
        "deep.png": png16(),
        "palette.png": palette_png_with_transparency(),
        "moving.gif": animated("GIF"),
        "html.jpg": jpeg(),
        "bomb.jpg": jpeg(),
    }
    for filename, data in originals.items():
        shop.add_product(filename, images=[{"filename": filename, "data": data}])
    settings = pipeline_settings(shop, provider, tmp_path)

    async def scenario(extra=None):
        async with open_context(settings) as ctx:
            from retouch.sync.pipeline import discover

            await discover(ctx)
            rows = {row.filename: row for row in ctx.store.images_in_state(*ImageState)}
            if extra:
                extra(rows)
            await run_until_settled(ctx)
            return {row.filename: row for row in ctx.store.images_in_state(*ImageState)}

    def break_cdn(rows):
        swap_cdn_bytes(shop, rows["html.jpg"].media_id, html())
        swap_cdn_bytes(shop, rows["bomb.jpg"].media_id, decompression_bomb())

    rows = run_async(scenario(break_cdn))
    ends = {name: (row.state, row.error_code) for name, row in rows.items()}
    assert ends == {
        "plain.jpg": ("done", None),
        "cmyk.jpg": ("done", None),
        "deep.png": ("done", None),
        "palette.png": ("done", None),
        "moving.gif": ("failed", "source_animated"),
        "html.jpg": ("failed", "source_not_image"),
        "bomb.jpg": ("failed", "source_too_large"),
    }
    for name in ("moving.gif", "html.jpg", "bomb.jpg"):
        assert rows[name].job_id is None, f"{name} was sent to the provider"
        assert rows[name].error_message.startswith("the original is ")
    written = pixels(shop.media_bytes(rows["cmyk.jpg"].media_id.rsplit("/", 1)[-1]))
    assert (written.format, written.mode) == ("JPEG", "RGB")
    assert pixels(shop.media_bytes(rows["moving.gif"].media_id.rsplit("/", 1)[-1])).n_frames == 3  # untouched

    # The next cycle runs: a photo added afterwards is enhanced like any other.
    shop.add_product("later", images=[{"filename": "later.jpg", "data": jpeg()}])
    assert run_async(scenario())["later.jpg"].state == "done"


def test_a_decoder_breaking_in_an_unexpected_way_is_not_an_image(monkeypatch) -> None:
    """Hostile bytes can break a decoder with any exception (struct.error, IndexError …): the
    original is refused with a reason, never an exception that would crash the submit step."""

    def broken_load(self):
        raise IndexError("tile extends beyond the image")

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken_load)
    with pytest.raises(imaging.ImageDataError, match="IndexError"):
        imaging.check_source(jpeg())
