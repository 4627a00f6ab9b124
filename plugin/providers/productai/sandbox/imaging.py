"""The sandbox's stand-ins for ProductAI's models: real Pillow work, so results differ visibly.

- generate: whatever the model and prompt, the product photo (the first image) becomes a clean
  e-commerce shot on white, by AI Gen Studio's sandbox enhancement (imported, not copied). A
  second reference image is fetched and checked like the first but not drawn.
- upscale: a 2× LANCZOS enlargement, capped at MAX_UPSCALED_SIDE.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from retouch.plugin.providers.aigenstudio.sandbox import enhance

from . import contract


def generate(product: bytes) -> bytes:
    """A PNG of the product isolated on a square white canvas."""
    return enhance.to_png(enhance.enhance(product))


def upscale(data: bytes) -> bytes:
    """A PNG twice as wide and tall (or as large as the cap allows)."""
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise enhance.EnhancementError(f"cannot decode image: {type(exc).__name__}") from None
    image = ImageOps.exif_transpose(image)
    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    factor = min(contract.UPSCALE_FACTOR, contract.MAX_UPSCALED_SIDE / max(image.size))
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return enhance.to_png(image.resize(size, Image.Resampling.LANCZOS))
