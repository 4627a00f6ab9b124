"""Image bytes that are not plain 8-bit RGB photos: made here, so every test states what it feeds.

Used by tests/integration/test_bad_input_images.py and bench/bad_input.py.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageCms, ImageDraw


def photo(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 60, 40)) -> Image.Image:
    """A product-ish picture: a coloured block on light grey."""
    img = Image.new("RGB", size, (235, 235, 235))
    ImageDraw.Draw(img).rectangle((size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4), fill=colour)
    return img


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def jpeg() -> bytes:
    return encode(photo(), "JPEG", quality=90)


def cmyk_jpeg(with_profile: bool = False) -> bytes:
    img = photo().convert("CMYK")
    options = {}
    if with_profile:
        # Pillow ships no CMYK profile; an sRGB one is not valid for CMYK, which exercises the fallback.
        options["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(img, "JPEG", quality=90, **options)


def png16() -> bytes:
    """16-bit grey: values around 40,000 of 65,535 (a mid grey, ~156 in 8 bits)."""
    img = Image.new("I;16", (48, 32), 40_000)
    return encode(img, "PNG")


def palette_png_with_transparency() -> bytes:
    img = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    img.info["transparency"] = img.getpixel((0, 0))  # the background colour becomes transparent
    return encode(img, "PNG", transparency=img.getpixel((0, 0)))


def animated(fmt: str = "GIF") -> bytes:
    frames = [photo(colour=c) for c in ((200, 60, 40), (40, 60, 200), (40, 200, 60))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def single_frame_gif() -> bytes:
    return encode(photo(), "GIF")


def html() -> bytes:
    return b"<!doctype html><html><body>Access denied</body></html>"


def truncated_jpeg() -> bytes:
    data = encode(photo((400, 300)), "JPEG", quality=95)
    return data[: len(data) // 3]


def truncated_png() -> bytes:
    data = encode(photo((400, 300)), "PNG")
    return data[: len(data) * 2 // 3]


def corrupt_png() -> bytes:
    """One byte of the pixel data flipped: the IDAT chunk no longer matches its CRC."""
    data = bytearray(encode(photo((400, 300)), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10] ^= 0xFF
    return bytes(data)


def truncated_webp() -> bytes:
    data = encode(photo((400, 300)), "WEBP", quality=90)
    return data[: len(data) // 2]


def decompression_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring width x height in a few dozen bytes (10^10 pixels: 30 GB decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    row = b"\x00" + b"\x00" * 3 * 16
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b"")


# (name, bytes, the code check_source must give, or None when the original is usable)
SOURCES = [
    ("html", html, "not_image"),
    ("zero_bytes", lambda: b"", "not_image"),
    ("truncated_jpeg", truncated_jpeg, "not_image"),
    ("truncated_png", truncated_png, "not_image"),
    ("corrupt_png", corrupt_png, "not_image"),
    ("truncated_webp", truncated_webp, "not_image"),
    ("decompression_bomb", decompression_bomb, "too_large"),
    ("animated_gif", lambda: animated("GIF"), "animated"),
    ("animated_webp", lambda: animated("WEBP"), "animated"),
    ("cmyk_jpeg", cmyk_jpeg, None),
    ("png_16_bit", png16, None),
    ("palette_png_transparency", palette_png_with_transparency, None),
    ("single_frame_gif", single_frame_gif, None),
    ("jpeg", jpeg, None),
    ("png", lambda: encode(photo((400, 300)), "PNG"), None),
    ("webp", lambda: encode(photo((400, 300)), "WEBP"), None),
]
