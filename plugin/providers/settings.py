"""Building blocks for settings tables, shared by sync/config.py and the provider plugins' own tables.

A provider's table is a pydantic model deriving from `Section` (unknown keys are refused, so a typo
gets "unknown key; did you mean …"); durations are written like "30s", "5m" or "1h".

Every number is bounded: a duration is finite and within the range its key makes sense in
(`DurationBetween`), a count within `Field(ge=…, le=…)` and never a boolean (`Count`). A value
out of range is refused when the file is read (so `retouch check` refuses it too), not when the
daemon first uses it: an `inf` tick or a 10^20-second wait would crash `run` in a restart loop.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h30m', '250ms' or a plain number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m' or '1h'")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float (TOML allows 400 digits)
            seconds = math.inf if value > 0 else -math.inf
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration; write it like '30s', '5m' or '1h'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("expected a duration like '30s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as the owner would write them: 0.1 -> '100ms', 3600 -> '1h', 2592000 -> '30d'."""
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNIT_SECONDS[unit] and (seconds / _UNIT_SECONDS[unit]).is_integer():
            return f"{seconds / _UNIT_SECONDS[unit]:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


def DurationBetween(low: float, high: float) -> Any:  # noqa: N802  (a type, used like one)
    """A duration from `low` to `high` seconds; anything else (inf, nan, 10^20 s, 1 µs) is refused
    with both bounds named, so the owner knows what to write."""

    def within(seconds: float) -> float:
        if not (math.isfinite(seconds) and low <= seconds <= high):
            raise ValueError(
                f"must be between {format_duration(low)} and {format_duration(high)} (got {_shown(seconds)})"
            )
        return seconds

    return Annotated[float, BeforeValidator(parse_duration), AfterValidator(within)]


def _shown(seconds: float) -> str:
    return repr(seconds) if not math.isfinite(seconds) else format_duration(seconds)


# A duration whose key states no narrower range: at least a millisecond, at most a year (beyond
# that, datetime and the event loop overflow).
Duration = DurationBetween(0.001, 365 * DAY)


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # TOML's true is not the number 1
        raise ValueError("expected a whole number, not true/false")
    return value


# A whole number; give its range with Field(ge=…, le=…) on the field.
Count = Annotated[int, BeforeValidator(_no_bool)]


class Section(BaseModel):
    """A table of the config file: unknown keys are errors, values are frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
