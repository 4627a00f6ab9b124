"""Every way an Imagen AI call can fail, as one small exception tree.

Each class also derives from the generic class in `providers/errors.py` that says what the
pipeline does about it (shown on the right):

    ImagenError(code, message, status)                                       ProviderError
    ├── AuthenticationFailed  401, 403 from the API                          AuthenticationFailed
    ├── InvalidRequest        400, 409, 413, 422 (message: the body's detail) Rejected
    ├── NotFound              404: unknown (or another key's) project       NotFound
    ├── RateLimited           429; .retry_after from Retry-After            RateLimited
    ├── ServiceUnavailable    5xx, 408, timeouts, connection errors,        Unavailable
    │                         non-JSON bodies; .reason says which
    ├── UnexpectedResponse    a 2xx (or 3xx, odd 4xx) we do not understand  Unavailable
    └── LinkExpired           a presigned storage link answered 403/404/410: Unavailable
                              fetch fresh links, then try again

No exception ever carries the API key or a presigned link's query string (the link's credential).
"""

from __future__ import annotations

from .. import errors


class ImagenError(errors.ProviderError):
    """An Imagen AI call failed. `status` is None when no HTTP response arrived."""


class AuthenticationFailed(ImagenError, errors.AuthenticationFailed):
    """401/403: the x-api-key is missing, unknown or revoked."""


class InvalidRequest(ImagenError, errors.Rejected):
    """400/409/413/422: the request is wrong (or out of order); repeating it cannot help."""


class NotFound(ImagenError, errors.NotFound):
    """404: no such project for this key, or no edit/export started yet."""


class RateLimited(ImagenError, errors.RateLimited):
    """429: wait `retry_after` seconds (None: not said), then try again."""


class ServiceUnavailable(ImagenError, errors.Unavailable):
    """The service did not answer usefully; the request may or may not have been processed.

    `reason` is a short machine word: "timeout", "connection_error", "server_error", "non_json_body".
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(code, message, status=status)
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reason={self.reason!r}, status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class UnexpectedResponse(ImagenError, errors.Unavailable):
    """A well-formed HTTP response whose status or JSON shape does not match the contract."""


class LinkExpired(ImagenError, errors.Unavailable):
    """A temporary upload/download link was refused (expired, or not valid): ask for fresh links."""
