"""Every way an AI Gen Studio call can fail, as one small exception tree.

    AigenError(status, code, message, request_id)
    ├── AuthenticationFailed      401, 403          the key is wrong, revoked or sent the wrong way
    ├── InvalidPayload            400, 413, 422     our request is wrong; retrying cannot help
    ├── InsufficientCredits       402               a live account lacks API credits
    ├── NotFound                  404               unknown (or another account's) enhancement id
    ├── IdempotencyConflict       409               the key was already used with another body
    ├── RateLimited               429               .retry_after, .rate_limit        (retryable)
    ├── ServiceUnavailable        5xx, 408, timeouts, connection errors, non-JSON    (retryable)
    │                             bodies; .reason says which
    └── UnexpectedResponse        valid HTTP, but a shape or status we do not understand

Each class also derives from the generic class the pipeline acts on (providers/errors.py):
AuthenticationFailed, Rejected (400/409), OutOfCredits (402), NotFound, RateLimited, Unavailable.

`retryable` is True for the two classes that may be retried — always with the SAME
Idempotency-Key (CONTRACTS.md §1, Errors). The client itself never retries; the pipeline does.
No exception ever carries the API key.
"""

from __future__ import annotations

from .. import errors as generic
from .models import RateLimit


class AigenError(generic.ProviderError):
    """An AI Gen Studio call failed. `status` is None when no HTTP response arrived."""

    retryable: bool = False

    def __init__(self, status: int | None, code: str | None, message: str, request_id: str | None = None) -> None:
        generic.ProviderError.__init__(self, code, message, status=status)
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r}, request_id={self.request_id!r})"


class AuthenticationFailed(AigenError, generic.AuthenticationFailed):
    """401/403: invalid, unknown or wrongly sent API key."""


class InvalidPayload(AigenError, generic.Rejected):
    """400: the request was rejected as invalid; nothing was reserved."""


class InsufficientCredits(AigenError, generic.OutOfCredits):
    """402: the live account has too few purchased or available credits."""


class NotFound(AigenError, generic.NotFound):
    """404: no such enhancement for this account."""


class IdempotencyConflict(AigenError, generic.Rejected):
    """409: this Idempotency-Key was used before with a different body."""


class RateLimited(AigenError, generic.RateLimited):
    """429: a usage limit was reached. Wait `retry_after` seconds (when given) and retry with the same key."""

    retryable = True

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        request_id: str | None = None,
        *,
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.retry_after = retry_after
        self.rate_limit = rate_limit


class ServiceUnavailable(AigenError, generic.Unavailable):
    """The service did not answer usefully (5xx, timeout, connection error, non-JSON body).

    The request may or may not have been processed: retry with the same Idempotency-Key.
    `reason` is a short machine word: "timeout", "connection_error", "server_error", "non_json_body"…
    """

    retryable = True

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.reason = reason


class UnexpectedResponse(AigenError, generic.Unavailable):
    """A well-formed HTTP response whose status or JSON shape does not match the contract."""
