"""The owner's control tables of the config file: [backup] (and, beside it, [notify]).

Kept out of config.py so that file only registers them; each table validates itself like the rest
(unknown keys refused, one line naming the key)."""

from __future__ import annotations

import math
from datetime import time as dtime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator

from retouch.plugin.providers.settings import DAY, HOUR, Count, Duration, Section, format_duration, parse_duration

# [backup] keep: shorter than an hour means nothing (a file written in the last hour is never pruned,
# storage/backups.py), and a century is "forever" already.
KEEP_RANGE = (HOUR, 36500 * DAY)


def _keep(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "forever":
        return None
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither \"forever\" nor a duration like \"90d\"") from None
    # Bounded like every number of the file (plugin/providers/settings.py): nan or inf would reach the
    # database query as "done before nan" (nothing, silently) or print as "nand".
    low, high = KEEP_RANGE
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError(
            f"must be \"forever\" or between {format_duration(low)} and {format_duration(high)} (got {seconds!r})"
        )
    return seconds


class BackupSettings(Section):
    """How long the originals of done images are kept (`retouch backups prune`)."""

    # Seconds; None = forever (the default). Written "forever" or a duration such as "90d".
    keep: Annotated[float | None, BeforeValidator(_keep)] = None


def _clock_time(value: Any) -> dtime:
    if isinstance(value, dtime):
        return value
    if isinstance(value, str):
        try:
            return dtime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a time of day like \"08:00\"")


class NotifySettings(Section):
    """Messages to the owner through Apprise (sync/notify/): which URLs, which events, how grouped."""

    # Apprise URLs (slack://…, mailto://…, tgram://…, ntfy://…, json://host/path); secrets: never shown.
    urls: list[SecretStr] = []
    events: list[Literal["failed", "paused", "unreachable", "daily"]] = ["failed", "paused", "unreachable", "daily"]
    # Shopify or the provider not answering for this long is an "unreachable" event.
    unreachable_after: Duration = 900.0
    # The daily summary (done, failed, credits spent in the last 24 hours), local time.
    daily_at: Annotated[dtime, BeforeValidator(_clock_time)] = dtime(9, 0)
    # Events of one kind are collected this long after the first, then sent as one message.
    group_for: Duration = 60.0
    max_lines: Count = Field(10, ge=1, le=200)
    timeout: Duration = 20.0

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            return value
        import apprise

        from .notify.send import quiet_apprise

        quiet_apprise()
        for number, url in enumerate(value, 1):
            # Never echo the URL: it holds the service's token.
            if not apprise.Apprise().add(url.get_secret_value()):
                raise ValueError(
                    f"URL #{number} is not one Apprise can use (check its scheme and form; "
                    "see https://github.com/caronc/apprise/wiki)"
                )
        return value

    def secrets(self) -> list[str]:
        from .notify.decide import url_secrets

        return [part for url in self.urls for part in url_secrets(url.get_secret_value())]
