"""What a resync would send, decided without I/O from what the reads found (`resync --dry-run`).

Two kinds of plan, by what the real run would read:
- product by product (named products, or a store under `[shop] bulk_threshold`, which the real run
  pages too): every product's plan is exact (pipeline/discover_plan.py, the function discovery
  itself runs), so the plan lists each image.
- a large store (the real run reads a bulk export): a preview must not start one (a bulk operation is
  a real, shop-wide operation: one at a time per app, and it holds the store's export slot). The
  owner decides on the numbers — how many images, what they cost, how long — not on a list of
  300,000 lines, so the plan counts: the rows the database already holds by state, plus the
  products changed since the last complete pass read page by page (the same read the incremental
  discovery makes, usually short). With no complete pass yet, the database knows nothing: one page
  of products gives the images a product has, times Shopify's product count. Such a count is
  marked "about"/"at most" in the owner's words (`Preview.what`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from retouch.storage.models import ImageState

from .pipeline.discover_plan import Action, MediaGone, NewRow, Requeue, queued_by


@dataclass(frozen=True)
class ToSend:
    """One image the run would send: already waiting, put back in the queue, or new."""

    image_id: int | None
    product_id: str
    media_id: str
    source_url: str | None
    rule: str | None  # the recorded rule decision (JSON), as on the row
    how: str  # "waiting" | "requeued" | "queued"


@dataclass
class Preview:
    """The plan as the owner reads it."""

    exact: list[ToSend] = field(default_factory=list)  # the images known one by one
    counted: int = 0  # more images, counted, not listed (a large store)
    bound: str = ""  # "" (exact), "at most" or "about": how `counted` was had
    baseline: int = 0  # images a first pass would record as the baseline (never sent)
    products_in_store: int | None = None
    products_read: int = 0
    bulk: bool = False  # the real run reads a bulk export
    counts: Counter[str] = field(default_factory=Counter)  # per action kind, for the summary line

    @property
    def images(self) -> int:
        return len(self.exact) + self.counted

    def what(self, sent: int) -> str:
        """'12 image(s)', 'about 300000 image(s)' (the words before 'would be sent')."""
        return f"{self.bound + ' ' if self.bound and self.counted and sent else ''}{sent} image(s)"

    def read_line(self) -> str | None:
        """How the plan was had, for a plan that did not read every product."""
        if not self.bulk:
            return None
        return (
            f"plan: {self.products_in_store} product(s) in the store; the run reads them by bulk export, "
            f"this plan read {self.products_read} of them page by page and counted the rest in the database "
            "(no bulk export, nothing written)"
        )


def to_send(waiting: Sequence[Any], planned: Iterable[tuple[str, Sequence[Action]]]) -> list[ToSend]:
    """What a run would send, in the order the queue sends it: rows already waiting and rows put back
    (oldest row first, as `images_in_state` orders them), then the new rows in the order they are read.
    `waiting`: the rows in `discovered` now; `planned`: (product id, its actions)."""
    gone: set[int] = set()
    requeued: list[ToSend] = []
    new: list[ToSend] = []
    for product_id, actions in planned:
        gone.update(a.image_id for a in actions if isinstance(a, MediaGone))
        fresh, back = queued_by(actions)
        requeued += [
            ToSend(a.image_id, product_id, a.media_id, a.fields.get("source_url"), a.fields.get("rule"), "requeued")
            for a in back
        ]
        new += [
            ToSend(None, product_id, a.fields["media_id"], a.fields.get("source_url"), a.fields.get("rule"), "queued")
            for a in fresh
            if not _skipped(a)
        ]
    kept = [
        ToSend(row.id, row.product_id, row.media_id, row.source_url, row.rule, "waiting")
        for row in waiting
        if row.id not in gone
    ]
    return sorted(kept + requeued, key=lambda item: item.image_id or 0) + new


def _skipped(action: NewRow) -> bool:
    return action.fields.get("state") is ImageState.SKIPPED


def tally(planned: Iterable[Sequence[Action]]) -> Counter[str]:
    """Actions by kind ('queued', 'requeued', 'baseline', …) for the summary line."""
    counts: Counter[str] = Counter()
    for actions in planned:
        for action in actions:
            if isinstance(action, NewRow):
                counts[
                    {ImageState.BASELINE: "baseline", ImageState.SKIPPED: "skipped_by_rule"}.get(action.state, "queued")
                ] += 1
            elif isinstance(action, Requeue):
                counts["requeued"] += 1
            else:
                counts[type(action).__name__.lower()] += 1
    return counts


def unread_to_send(by_state: Mapping[str, int], read_by_state: Mapping[str, int], requeue: Iterable[ImageState]) -> int:
    """Of the rows of products the plan did not read, those a run would send: the ones waiting and
    the ones in a state a resync puts back. An upper bound: an excluded tag or a rule's skip on those
    products is only known by reading them."""
    states = {str(ImageState.DISCOVERED), *(str(s) for s in requeue)}
    return sum(max(0, by_state.get(s, 0) - read_by_state.get(s, 0)) for s in states)


def per_product_estimate(sample_images: int, sample_products: int, products: int) -> int:
    """Images of `products` products, from a sample's images per product (rounded)."""
    if sample_products <= 0:
        return 0
    return round(sample_images / sample_products * products)
