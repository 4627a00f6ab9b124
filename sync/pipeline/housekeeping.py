"""Housekeeping: forget what can no longer matter, so the small tables stay small.

- Quota events older than two windows: the pacer only ever reads the last window.
- Webhook event ids older than twice the accepted skew: a replay that old is refused by its
  timestamp before its id is looked at.
"""

from __future__ import annotations

from .context import Context


async def housekeeping(ctx: Context) -> None:
    now = ctx.clock()
    ctx.store.prune_quota_events(before=now - 2 * ctx.limits.window)
    ctx.store.forget_events(before=now - 2 * ctx.settings.server.webhook_skew)
