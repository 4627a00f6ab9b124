"""Every way a ProductAI call can fail, as one small exception tree.

    ProductAIError(code, message, status)          also a ProviderError (../errors.py)
    ├── OutOfTokens          OUT_OF_TOKENS anywhere in an error body, whatever the status    OutOfCredits
    ├── AuthenticationFailed 401, 403           the key is wrong or revoked                  AuthenticationFailed
    ├── InvalidRequest       400, 422, other 4xx: this request can never succeed             Rejected
    ├── NotFound             404                unknown job id (or another key's job)        NotFound
    ├── RateLimited          429                .retry_after: seconds, None if not given     RateLimited
    ├── ServiceUnavailable   5xx, 408, timeouts, connection errors, non-JSON bodies;         Unavailable
    │                        .reason says which
    └── UnexpectedResponse   valid HTTP, but a status or JSON shape we do not understand     Unavailable

The client never retries: ProductAI has no idempotency key and spends tokens as soon as a job is
accepted, so after a ServiceUnavailable on generate/upscale the job may or may not exist (and be
paid for). The pipeline decides. No exception ever carries the API key.
"""

from __future__ import annotations

from ..errors import AuthenticationFailed as ProviderAuthenticationFailed
from ..errors import NotFound as ProviderNotFound
from ..errors import OutOfCredits, ProviderError, Rejected, Unavailable
from ..errors import RateLimited as ProviderRateLimited

OUT_OF_TOKENS = "OUT_OF_TOKENS"


class ProductAIError(ProviderError):
    """A ProductAI call failed. `status` is None when no HTTP response arrived."""


class OutOfTokens(ProductAIError, OutOfCredits):
    """The account has too few tokens for this job; nothing was started or charged."""


class AuthenticationFailed(ProductAIError, ProviderAuthenticationFailed):
    """401/403: the x-api-key is missing, wrong or revoked."""


class InvalidRequest(ProductAIError, Rejected):
    """400/422 (and other 4xx): bad parameters — unknown model, bad image_url, empty prompt …"""


class NotFound(ProductAIError, ProviderNotFound):
    """404: no such job for this key."""


class RateLimited(ProductAIError, ProviderRateLimited):
    """429: over the 15 requests/minute budget. Wait `retry_after` seconds, or back off on your own if None."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r}, "
            f"retry_after={self.retry_after!r})"
        )


class ServiceUnavailable(ProductAIError, Unavailable):
    """No usable answer: `reason` is "timeout", "connection_error", "server_error" or "non_json_body".

    A generate/upscale that ends here may still have started (and charged) its job.
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(code, message, status=status)
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reason={self.reason!r}, status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class UnexpectedResponse(ProductAIError, Unavailable):
    """A well-formed HTTP answer whose status or JSON shape does not match the contract."""
