"""A loopback emulator of Imagen AI's `/v1` API (and its presigned storage) for tests, the demo and trying the tool."""

from .app import DEFAULT_API_KEY, ImagenSandbox

__all__ = ["DEFAULT_API_KEY", "ImagenSandbox"]
