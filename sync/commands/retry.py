"""`retouch retry`: requeue failed images (safe while the daemon runs: it only changes rows)."""

from __future__ import annotations

import typer

from retouch.storage.store import Store

from ..config import Settings
from ..pipeline.retry import MAX_RETRIES, requeue_failed


def retry_command(settings: Settings, product_ids: list[str] | None) -> int:
    store = Store(settings.database_url)
    try:
        requeued, refused = requeue_failed(store, product_ids)
    finally:
        store.close()
    for image in requeued:
        typer.echo(f"requeued {image.product_id} {image.media_id} (from {image.state})")
    for image in refused:
        typer.echo(
            f"not retried {image.product_id} {image.media_id}: already retried {MAX_RETRIES} times "
            f"({image.error_code}); use resync --force",
            err=True,
        )
    typer.echo(f"{len(requeued)} image(s) requeued; the daemon (or resync) will process them")
    return 0
