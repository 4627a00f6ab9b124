"""What a run will cost and how long the quota makes it take, in the owner's words (pure: no I/O).

Used by `resync --dry-run` and the `resync --all` confirmation, so the owner sees images, credits,
money (when [budget] price_per_credit is set), the balance after (when the provider reports one) and
the time before anything is spent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from retouch.plugin.providers.quota import QuotaLimits


def images_per_hour(quota: QuotaLimits) -> float | None:
    """The most images the provider's quota lets through in an hour; None when it sets no limit."""
    per_window = []
    if quota.limited("image"):
        per_window.append(quota.limit("image"))
    if quota.limited("job"):
        per_window.append(quota.limit("job") * quota.max_batch)
    if not per_window:
        return None
    return min(per_window) * 3600.0 / quota.window


def duration_words(seconds: float) -> str:
    """'2 h 24 min', '45 min', 'under a minute'."""
    minutes = math.ceil(seconds / 60.0 - 1e-9)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


@dataclass(frozen=True)
class Estimate:
    images: int  # the images the run would send
    credits_per_image: float
    credit_unit: str = "credits"
    price_per_credit: float | None = None
    currency: str = ""
    balance: float | None = None  # what the provider says is left, when it says
    per_hour: float | None = None  # images an hour the quota allows; None: no quota limit
    free: bool = False  # a sandbox: nothing is charged

    @property
    def credits(self) -> float:
        return 0.0 if self.free else self.images * self.credits_per_image

    @property
    def covered(self) -> int:
        """How many of the images the balance pays for."""
        if self.free or self.balance is None or self.credits_per_image <= 0:
            return self.images
        return min(self.images, int(self.balance // self.credits_per_image))

    def words(self) -> str:
        """'60 image(s), 300 credits (30.00 EUR), balance 200 → -100: covers 40 image(s); about 2 h 24 min
        at 25 images an hour'."""
        parts = [f"{self.images} image(s), {_number(self.credits)} {self.credit_unit}"]
        if self.free:
            parts[0] += " (sandbox: free)"
        elif self.price_per_credit is not None:
            money = self.credits * self.price_per_credit
            parts[0] += f" ({money:.2f}{' ' + self.currency if self.currency else ''})"
        if self.balance is not None and not self.free:
            after = self.balance - self.credits
            line = f"balance {_number(self.balance)} -> {_number(max(after, 0.0))} {self.credit_unit} after"
            if after < 0:
                line = (
                    f"balance {_number(self.balance)} {self.credit_unit}: pays for {self.covered} of "
                    f"{self.images} image(s)"
                )
            parts.append(line)
        if self.images and self.per_hour:
            parts.append(
                f"about {duration_words(self.images / self.per_hour * 3600.0)} "
                f"at {_number(self.per_hour)} images an hour"
            )
        return "; ".join(parts)


BALANCE_FIELD = "remaining_paid_credits"  # what a provider plugin saves in a job's state when it reports a balance


def last_reported_balance(jobs: Iterable[tuple[datetime, str | None]]) -> tuple[float, datetime] | None:
    """(balance, when) from the newest job whose provider state carries the balance the provider
    reported when the job was sent; None when no job carries one. `jobs`: (created_at, provider_state)."""
    best: tuple[float, datetime] | None = None
    for created_at, state in jobs:
        try:
            value = json.loads(state or "{}").get(BALANCE_FIELD)
        except (ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            if best is None or created_at > best[1]:
                best = (float(value), created_at)
    return best


def balance_line(title: str, balance: tuple[float, datetime] | None, credit_unit: str) -> str | None:
    """`check`'s line: 'balance: 495 credits, as AI Gen Studio reported it at 2026-12-06 16:31 (when a job was
    sent)'; None when nothing was reported."""
    if balance is None:
        return None
    value, when = balance
    local = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone()
    return (
        f"balance: {_number(value)} {credit_unit}, as {title} reported it at {local:%Y-%m-%d %H:%M} "
        "(when a job was sent)"
    )
