"""retouch's daemon: what happens to an image, and when."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("retouch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
