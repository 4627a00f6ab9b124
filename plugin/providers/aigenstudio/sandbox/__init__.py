"""A loopback emulator of AI Gen Studio's `/api/v1` for tests, the demo and trying the tool."""

from .app import AigenSandbox

__all__ = ["AigenSandbox"]
