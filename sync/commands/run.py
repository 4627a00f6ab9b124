"""`retouch run`: the daemon in the foreground."""

from __future__ import annotations

import structlog

from ..config import Settings
from ..runtime import open_context
from ..scheduler import Daemon
from .. import __version__

log = structlog.get_logger("retouch")


def describe_start(settings: Settings) -> dict:
    """What the daemon says at start: enough to know what it will do, never a secret."""
    limits = settings.aigenstudio.limits
    return {
        "version": __version__, "config": str(settings.path), "provider": settings.provider.name,
        "mode": "sandbox" if settings.provider_is_sandbox else "live", "shop": settings.shop.url,
        "db": str(settings.database_path), "backups": str(settings.backup_dir),
        "writeback": settings.writeback.mode, "new_only": settings.selection.new_only,
        "limits": {"window_s": limits.window, "jobs": limits.jobs, "images": limits.images,
                   "polls": limits.polls, "active_jobs": limits.active_jobs},
    }


async def run_daemon(settings: Settings) -> int:
    log.info("starting", **describe_start(settings))
    async with open_context(settings) as ctx:
        await Daemon(ctx).run()
    return 0
