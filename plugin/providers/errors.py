"""How any provider call can fail, in the words the pipeline acts on.

Each provider's client keeps its own exception tree (with its codes and details); every class in
it also derives from one of these, so the pipeline handles all providers with one `except` list:

    ProviderError(code, message, status)
    ├── RateLimited           429: wait .retry_after (None: the provider did not say), then again
    ├── OutOfCredits          no credits/tokens: pause submissions, resume by itself later
    ├── AuthenticationFailed  the key is wrong or revoked: pause, the owner must act
    ├── Rejected              this request can never succeed (400, 409 …): fail its images
    ├── NotFound              the provider no longer knows the job
    └── Unavailable           5xx, timeout, connection error, non-JSON or wrongly shaped body:
                              may or may not have been processed; try again later

No exception ever carries an API key.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed. `status` is None when no HTTP response arrived."""

    def __init__(self, code: str | None, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class RateLimited(ProviderError):
    def __init__(
        self, code: str | None, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message, status=status)
        self.retry_after = retry_after


class OutOfCredits(ProviderError):
    pass


class AuthenticationFailed(ProviderError):
    pass


class Rejected(ProviderError):
    pass


class NotFound(ProviderError):
    pass


class Unavailable(ProviderError):
    pass
