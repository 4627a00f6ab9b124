"""`retouch retry`: put failed images back on their way, from the step that failed."""

from __future__ import annotations

from collections.abc import Sequence

from retouch.storage import lifecycle
from retouch.storage.models import Image, ImageState
from retouch.storage.store import Store

from ..decisions import retry_from

# A failure that repeats this often is not transient: retry refuses it (resync --force still can).
MAX_RETRIES = 5


def requeue_failed(store: Store, product_ids: Sequence[str] | None = None) -> tuple[list[Image], list[Image]]:
    """Requeue failed images; returns (requeued, refused because they were retried too often)."""
    requeued, refused = [], []
    for image in store.images_in_state(ImageState.FAILED, product_ids=product_ids):
        if image.retries >= MAX_RETRIES:
            refused.append(image)
            continue
        state = retry_from(has_result=bool(image.result_url), has_backup=bool(image.backup_sha256))
        # The write starts afresh: its earlier intent and output (a media Shopify failed) are history;
        # from `discovered`, the job and its result too (each transition's clears: lifecycle.py).
        store.transition(
            image.id, lifecycle.named(ImageState.FAILED, state), expect=ImageState.FAILED, retries=image.retries + 1
        )
        moved = store.image(image.id)
        if moved is not None:  # (a row deleted meanwhile is not counted as requeued)
            requeued.append(moved)
    return requeued, refused
