"""retouch's daemon: what happens to an image, and when."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("retouch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"


def _install_redaction() -> None:
    """Every free text written to the database passes the log's redactor (storage/store.py says why)."""
    from retouch.storage.store import install_text_scrubber

    from .logs import REDACTOR

    install_text_scrubber(REDACTOR.scrub_stored)


_install_redaction()
