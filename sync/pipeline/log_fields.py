"""The fields that name an image in every log event about it: the ids for machines, the product's title and
the file's name for a person reading the log (issue 23: "logs name only ids")."""

from __future__ import annotations

from typing import Any


def log_fields(image: Any) -> dict[str, Any]:
    """product_id, media_id, product_title, filename of an image row (None values are left out of the line)."""
    return {
        "product_id": image.product_id,
        "media_id": image.media_id,
        "product_title": getattr(image, "product_title", None),
        "filename": image.filename,
    }
