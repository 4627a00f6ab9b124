"""What each page shows, read from the database (called in a worker thread). The figures of the
overview are `retouch status`'s own (commands/status.py), so the page and the terminal never differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retouch.storage.models import ImageState

from ..commands.status import collect_status
from ..decisions import last_midnight

AWAITING_REVIEW = "awaiting_review"  # the review step's state (storage/lifecycle.py)
RECENT_STATES = (AWAITING_REVIEW, ImageState.WRITTEN.value, ImageState.DONE.value)
RECENT = 12


@dataclass(frozen=True)
class Row:
    """One image as the pages show it."""

    id: int
    legacy: str
    product_id: str
    title: str
    filename: str
    state: str
    before: bool
    after: bool
    error: str


def title_of(image: Any) -> str:
    return getattr(image, "product_title", None) or f"Product {image.product_id.rsplit('/', 1)[-1]}"


def row(image: Any) -> Row:
    error = " ".join(part for part in (image.error_code, image.error_message) if part)
    return Row(
        id=image.id,
        legacy=image.product_id.rsplit("/", 1)[-1],
        product_id=image.product_id,
        title=title_of(image),
        filename=image.filename or image.media_id.rsplit("/", 1)[-1],
        state=image.state,
        before=bool(image.backup_sha256),
        after=bool(getattr(image, "result_sha256", None)),
        error=error,
    )


def overview(ctx: Any, now: float) -> dict[str, Any]:
    settings, store = ctx.settings, ctx.store
    report = collect_status(settings, now, store=store)
    window = settings.capabilities.quota.window
    return {
        "report": report,
        "counts": {state: n for state, n in report["counts"].items() if n},
        "waiting_review": report["counts"].get(AWAITING_REVIEW, 0),
        "quota_window": window,
        "budget_resets_at": last_midnight(now) + 86400,
        "unit": settings.capabilities.credit_unit,
        "recent": [row(i) for i in store.recent_in_states(RECENT_STATES, RECENT)],
        "failures": [row(i) for i in store.recent_failures(10)],
    }


def review_queue(ctx: Any, product_id: str | None) -> dict[str, Any]:
    from .. import review

    items = review.waiting_for_review(ctx.store, product_id=product_id)
    products: dict[str, dict[str, Any]] = {}
    for item in items:
        legacy = item.product_id.rsplit("/", 1)[-1]
        group = products.setdefault(
            legacy, {"legacy": legacy, "title": item.product_title or f"Product {legacy}", "items": []}
        )
        group["items"].append(item)
    return {"products": list(products.values()), "count": len(items), "unit": ctx.settings.capabilities.credit_unit}


def product(ctx: Any, product_id: str) -> dict[str, Any] | None:
    store = ctx.store
    images = store.images_of_product(product_id)
    if not images:
        return None
    shown = []
    for image in sorted(images, key=lambda i: i.position):
        job = store.job(image.job_id) if image.job_id else None
        shown.append(
            {
                "row": row(image),
                "history": history(image, job),
                "paid": image.paid_attempts,
                "provider": job.provider if job else "",
                "credits": job.credits_used if job else 0,
            }
        )
    return {
        "title": title_of(images[0]),
        "images": shown,
        "unit": ctx.settings.capabilities.credit_unit,
        "revertible": any(
            i.state in (ImageState.DONE, ImageState.FAILED) and i.output_media_id and i.backup_sha256 for i in images
        ),
    }


def history(image: Any, job: Any) -> list[tuple[Any, str]]:
    """What happened to the image, oldest first, from the times its row and its job keep."""
    events: list[tuple[Any, str]] = [(image.created_at, "found in the store")]
    if job is not None:
        events.append((job.created_at, f"sent to {job.provider}"))
        if job.finished_at:
            events.append((job.finished_at, f"{job.provider} finished ({job.credits_used} credits)"))
    if image.paid_attempts > 1:
        events.append((None, f"{image.paid_attempts} paid attempts in all"))
    if image.retries:
        events.append((None, f"retried {image.retries} time(s)"))
    if getattr(image, "approved_at", None):
        events.append((image.approved_at, "approved"))
    if image.written_at:
        events.append((image.written_at, "written to Shopify"))
    if image.reverted_at:
        events.append((image.reverted_at, "original put back (reverted)"))
    note = getattr(image, "review_note", None)
    if note:
        events.append((None, f"review note: {note}"))
    events.append(
        (
            image.updated_at,
            f"now {image.state.replace('_', ' ')}"
            + (f": {image.error_code} {image.error_message or ''}" if image.error_code else ""),
        )
    )
    return events
