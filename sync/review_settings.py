"""The [review] table: does the owner look at each result before it goes to the store?

Kept out of config.py so that file only registers it (like control_settings.py). Whether an image
needs the owner's approval is decided when its result arrives and recorded on the image (its kept
result, `result_sha256`, without `approved_at`), so a reload that changes `mode` only affects
results that arrive later (sync/pipeline/review_step.py)."""

from __future__ import annotations

from typing import Any, Literal

from retouch.plugin.providers.settings import DAY, DurationBetween, Section

# A waiting result's approval delay: at least a minute, at most a year. A named alias, as control_settings.py's
# `Duration`: the type checker reads it as Any (DurationBetween builds pydantic's Annotated type at run time).
AutoApproveAfter: Any = DurationBetween(60.0, 365 * DAY)


class ReviewSettings(Section):
    """Review before publish (sync/review.py): results wait for the owner's approve, reject or redo."""

    # "off": every result is written as it arrives (as before); "all": every result waits for the owner.
    mode: Literal["off", "all"] = "off"
    # A result waiting this long is approved as if the owner had; unset: never (it waits for the owner).
    auto_approve_after: AutoApproveAfter | None = None

    @property
    def on(self) -> bool:
        return self.mode != "off"
