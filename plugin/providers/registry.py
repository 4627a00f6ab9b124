"""Finding provider plugins: the entry-point group `retouch.providers`.

The three built-in providers register there like any third-party package would (pyproject.toml),
so `pip install retouch-provider-foo` is all it takes to add one: its entry point names a
`ProviderPlugin` object.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

import structlog

from .base import ProviderPlugin

GROUP = "retouch.providers"

log = structlog.get_logger(__name__)


class PluginError(Exception):
    """A provider plugin that cannot be used; the message names it."""


@cache
def available() -> dict[str, ProviderPlugin]:
    """Every installed provider plugin by name (loaded once per process)."""
    plugins: dict[str, ProviderPlugin] = {}
    for entry in entry_points(group=GROUP):
        try:
            plugin = entry.load()
        except Exception as exc:  # a broken third-party package must not stop the others
            log.warning("provider_plugin_broken", entry_point=entry.name, error=f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(plugin, ProviderPlugin) or plugin.name != entry.name:
            log.warning(
                "provider_plugin_broken",
                entry_point=entry.name,
                error="the entry point must name a ProviderPlugin with the same name",
            )
            continue
        plugins[entry.name] = plugin
    return plugins


def get(name: str) -> ProviderPlugin:
    plugins = available()
    if name not in plugins:
        raise PluginError(f"unknown provider {name!r}; installed: {', '.join(sorted(plugins)) or 'none'}")
    return plugins[name]
