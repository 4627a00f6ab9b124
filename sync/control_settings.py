"""The owner's control tables of the config file: [backup] (and, beside it, [notify]).

Kept out of config.py so that file only registers them; each table validates itself like the rest
(unknown keys refused, one line naming the key)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from retouch.plugin.providers.settings import Section, parse_duration


def _keep(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "forever":
        return None
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither \"forever\" nor a duration like \"90d\"") from None


class BackupSettings(Section):
    """How long the originals of done images are kept (`retouch backups prune`)."""

    # Seconds; None = forever (the default). Written "forever" or a duration such as "90d".
    keep: Annotated[float | None, BeforeValidator(_keep)] = None
