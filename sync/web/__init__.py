"""The review page at /ui/: a Starlette app the daemon mounts (server.py); see app.py."""

from .app import UiDeps, build_ui

__all__ = ["UiDeps", "build_ui"]
