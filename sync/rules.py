"""[[rules]]: per-product choices, first match wins.

A rule matches a product when every condition it gives holds (`collections`, `tags`,
`product_types`, `vendors`, `status`; each a list, any of whose values may match, case-insensitive;
collections by handle or title). It then either skips the product's images (`skip = true`) or sets
what is sent: the provider's own options (AI Gen Studio `preset`, `preservation_level`; ProductAI
`model`, `prompt`; Imagen `profile_key` and the edit options). No rule matching: the provider's
table as it is. Deciding is pure (`first_match`, `options_for`); the pipeline records the decision
with the image (`Image.rule`), so a reload mid-flight never changes what an image was queued with.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

# The provider table keys a rule may set: what is sent, never pacing or limits.
RULE_OPTIONS: dict[str, frozenset[str]] = {
    "aigenstudio": frozenset({"preset", "preservation_level", "instructions"}),
    "productai": frozenset({"model", "prompt", "upscale"}),
    "imagen": frozenset(
        {
            "profile_key",
            "photography_type",
            "crop",
            "portrait_crop",
            "headshot_crop",
            "straighten",
            "perspective_correction",
            "subject_mask",
            "smooth_skin",
            "hdr_merge",
            "sky_replacement",
            "sky_replacement_template_id",
            "window_pull",
            "crop_aspect_ratio",
            "hdr_output_compression",
        }
    ),
}
CONDITIONS = ("collections", "tags", "product_types", "vendors", "status")
STATUSES = ("active", "draft", "archived", "unlisted")


class RuleSettings(BaseModel):
    """One [[rules]] table; keys beyond the conditions are the provider options it sets."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    collections: list[str] = []
    tags: list[str] = []
    product_types: list[str] = []
    vendors: list[str] = []
    status: list[str] = []
    skip: bool = False

    @field_validator("status")
    @classmethod
    def _status(cls, value: list[str]) -> list[str]:
        for one in value:
            if one.strip().lower() not in STATUSES:
                raise ValueError(f"{one!r} is not a product status ({', '.join(STATUSES)})")
        return value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class Rule:
    number: int  # 1-based, in the file's order
    settings: RuleSettings

    @property
    def label(self) -> str:
        """How messages name it: '#2' or '#2 (summer)'."""
        return f"#{self.number}" + (f" ({self.settings.name})" if self.settings.name else "")


@dataclass(frozen=True)
class ProductFacts:
    """What a rule can look at, from the product query (no extra call per image)."""

    tags: tuple[str, ...] = ()
    product_type: str = ""
    vendor: str = ""
    status: str = ""
    collections: tuple[str, ...] = ()  # handles and titles


def _norm(values: Iterable[str]) -> set[str]:
    return {v.strip().lower() for v in values if v is not None}


def matches(rule: RuleSettings, facts: ProductFacts) -> bool:
    """Every condition given holds; a rule with none matches every product."""
    checks = (
        (rule.collections, facts.collections),
        (rule.tags, facts.tags),
        (rule.product_types, (facts.product_type,)),
        (rule.vendors, (facts.vendor,)),
        (rule.status, (facts.status,)),
    )
    return all(not wanted or _norm(wanted) & _norm(have) for wanted, have in checks)


def first_match(rules: Sequence[Rule], facts: ProductFacts) -> Rule | None:
    return next((rule for rule in rules if matches(rule.settings, facts)), None)


def decision(rule: Rule | None, provider: str) -> str | None:
    """What is recorded on the image (its intent): the rule's label and what it set, as JSON."""
    if rule is None:
        return None
    return json.dumps(
        {"rule": rule.label, "skip": rule.settings.skip, "options": rule.settings.options, "provider": provider},
        sort_keys=True,
    )


def facts_of(product: Any) -> ProductFacts:
    """A Shopify `Product`'s facts for matching."""
    return ProductFacts(
        tags=tuple(product.tags),
        product_type=product.product_type,
        vendor=product.vendor,
        status=product.status,
        collections=tuple(getattr(product, "collections", ())),
    )


def label_of(recorded_rule: str | None) -> str | None:
    """'#2 (summer)' from a recorded decision, for status, the dry run and the log."""
    decided = recorded(recorded_rule)
    return decided["rule"] if decided else None


def recorded(value: str | None) -> dict[str, Any] | None:
    return json.loads(value) if value else None


def validate_rules(raw: Any, provider: str, table: dict[str, Any], model: type[BaseModel]) -> list[Rule]:
    """The [[rules]] of the file, each checked against the provider's own table; a problem is one
    line naming the rule and key: `[[rules]] #2 preset: …`."""
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ValueError("[[rules]]: write each rule as a [[rules]] table")
    allowed = RULE_OPTIONS.get(provider, frozenset())
    rules = []
    for number, entry in enumerate(raw, 1):
        where = f"[[rules]] #{number}"
        try:
            settings = RuleSettings.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ValueError(f"{where} {key}: {first['msg'].removeprefix('Value error, ')}") from None
        for key in settings.options:
            if key not in allowed:
                hint = f"one of {', '.join(sorted(allowed))}" if allowed else "none for this provider"
                raise ValueError(
                    f"{where} {key}: not a condition nor an option a rule can set for {provider} "
                    f"(conditions: {', '.join(CONDITIONS)}, skip; options: {hint})"
                )
        if settings.skip and settings.options:
            raise ValueError(
                f"{where} skip: a rule that skips sets no options; remove {', '.join(sorted(settings.options))}"
            )
        try:
            model.model_validate({**table, **settings.options})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ValueError(f"{where} {key}: {first['msg'].removeprefix('Value error, ')}") from None
        rules.append(Rule(number, settings))
    return rules


def options_for(provider: Any, table: BaseModel, rule_options: dict[str, Any]) -> dict[str, Any]:
    """The request options a job of images under a rule sends: the provider's own `request_options`
    with its table overlaid by the rule's options (validated when the file was read)."""
    if not rule_options:
        return provider.request_options()
    view = copy.copy(provider)
    view.settings = type(table).model_validate({**table.model_dump(exclude_unset=True), **rule_options})
    return view.request_options()
