"""What discovery does with one product, decided without I/O: `plan_product(...) -> [action]`.

vdirsyncer's habit (its `_get_actions`, then `.run`): the decision is a pure function of the rows
the database holds and the facts Shopify gave, and yields small action objects; discovery's
executor (pipeline/discover.py `_apply`) carries them out, and `resync --dry-run`
(sync/resync_preview.py) only counts and prints them. Both run this same function, so a dry run's
plan is the real run's plan, not a second copy of its rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from retouch.plugin.shopify.models import Product
from retouch.storage.models import ImageState

from ..decisions import Discovery, MediaFacts, classify_media, filename_of, is_excluded
from ..rules import Rule, facts_of, first_match
from ..rules import decision as rule_decision


@dataclass(frozen=True)
class DiscoverOptions:
    """What the pass knows besides the product: the run's kind and the owner's settings."""

    first_run: bool  # record a baseline (new_only) instead of queueing
    new_only: bool
    exclude_tags: Sequence[str] = ()
    rules: Sequence[Rule] = ()
    provider_name: str = ""
    requeue: tuple[ImageState, ...] = ()  # states of tracked rows this pass puts back in the queue
    complete: bool = True  # the product's media list is whole (not from a partial export)


@dataclass(frozen=True)
class NewRow:
    """Insert a row for an untracked original: baseline, queued, or skipped by a rule."""

    fields: dict[str, Any]
    rule_label: str | None = None

    @property
    def state(self) -> ImageState:
        return self.fields["state"]


@dataclass(frozen=True)
class Requeue:
    """Put a tracked row (failed, skipped, baseline, reverted…) back in the queue: the `requeue`
    transition from `was` (storage/lifecycle.py clears the job, its result and the errors), with the
    media's current source, position and alt text and the rule decided now."""

    image_id: int
    media_id: str
    was: str
    fields: dict[str, Any] = field(default_factory=dict)
    rule_label: str | None = None


@dataclass(frozen=True)
class RuleSkip:
    """A tracked row a rule skips (the `skip` transition from `was`); `fields` None when the row
    already says so (nothing to write)."""

    image_id: int
    media_id: str
    was: str
    fields: dict[str, Any] | None


@dataclass(frozen=True)
class RecordOutput:
    """Media that is ours (known, in the marker, or named like our uploads); `new`: not yet recorded."""

    media_id: str
    image_id: int | None
    new: bool


@dataclass(frozen=True)
class Excluded:
    media_id: str


@dataclass(frozen=True)
class MediaGone:
    """A queued original the merchant deleted before it was sent: skip it (from `discovered`)."""

    image_id: int
    media_id: str
    fields: dict[str, Any]


Action = Union[NewRow, Requeue, RuleSkip, RecordOutput, Excluded, MediaGone]


def plan_product(
    product: Product,
    rows: Mapping[str, Any],
    product_rows: Sequence[Any],
    known_outputs: set[str],
    options: DiscoverOptions,
) -> list[Action]:
    """The actions for one product. `rows`: the image rows of its media, by media id; `product_rows`:
    every row recorded for the product (to find queued media it no longer has); `known_outputs`:
    the media ids recorded as our output for it."""
    excluded = is_excluded(product.tags, list(options.exclude_tags))
    # [[rules]]: decided once per product, recorded with each image it queues (its intent).
    rule = first_match(options.rules, facts_of(product)) if options.rules else None
    ruled = None if rule is None else rule_decision(rule, options.provider_name)
    label = rule.label if rule is not None else None
    rule_skip = (
        {}
        if rule is None or not rule.settings.skip
        else dict(error_code="rule_skip", error_message=f"rule {rule.label} skips this product")
    )
    actions: list[Action] = []
    present: set[str] = set()
    for position, media in enumerate(product.media):
        present.add(media.id)
        facts = MediaFacts(
            media_id=media.id,
            is_image=media.content_type == "IMAGE",
            filename=filename_of(media.url or media.original_url),
            in_marker=media.id in product.marker_media_ids,
            known_output=media.id in known_outputs,
            tracked=media.id in rows,
        )
        decision = classify_media(facts, first_run=options.first_run, new_only=options.new_only, excluded=excluded)
        if decision is Discovery.OUTPUT:
            row = rows.get(media.id)
            actions.append(RecordOutput(media.id, row.id if row else None, new=media.id not in known_outputs))
        elif decision in (Discovery.BASELINE, Discovery.QUEUE):
            state = ImageState.BASELINE if decision is Discovery.BASELINE else ImageState.DISCOVERED
            new = dict(
                media_id=media.id,
                product_id=product.id,
                product_legacy_id=str(product.legacy_id),
                state=state,
                source_url=media.url,
                filename=filename_of(media.url or media.original_url),
                mime_type=media.mime_type,
                alt=media.alt,
                position=position,
                product_title=product.title,
            )
            if state is ImageState.DISCOVERED and rule is not None:
                new.update(rule=ruled, **rule_skip, **({"state": ImageState.SKIPPED} if rule_skip else {}))
            actions.append(NewRow(new, label))
        elif decision is Discovery.EXCLUDED:
            actions.append(Excluded(media.id))
        elif facts.tracked and rows[media.id].state in options.requeue and not excluded:
            row = rows[media.id]
            if rule_skip:
                changed = row.state != ImageState.SKIPPED or row.rule != ruled
                actions.append(
                    RuleSkip(row.id, media.id, str(row.state), dict(rule=ruled, **rule_skip) if changed else None)
                )
                continue
            actions.append(
                Requeue(
                    row.id,
                    media.id,
                    str(row.state),
                    dict(
                        source_url=media.url, position=position, alt=media.alt, rule=ruled, product_title=product.title
                    ),
                    label,
                )
            )
    # An original removed by the merchant before we sent it: nothing to do for it any more.
    for row in product_rows if options.complete else ():
        if row.media_id not in present and row.state == ImageState.DISCOVERED:
            actions.append(
                MediaGone(
                    row.id,
                    row.media_id,
                    dict(
                        error_code="media_deleted", error_message="the merchant deleted this media before it was sent"
                    ),
                )
            )
    return actions


def queued_by(actions: Sequence[Action]) -> tuple[list[NewRow], list[Requeue]]:
    """The new rows that enter the queue and the rows put back in it (what a run would send)."""
    new = [a for a in actions if isinstance(a, NewRow) and a.state is ImageState.DISCOVERED]
    return new, [a for a in actions if isinstance(a, Requeue)]
