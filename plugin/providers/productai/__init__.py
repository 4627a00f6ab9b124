"""ProductAI (generative product photos): the client, its errors, the provider plugin (`plugin`, entry
point `productai`) and the assumptions they rest on (`contract`). The loopback sandbox,
`productai.sandbox`, is not imported from here."""

from .client import ProductAIClient, parse_webhook
from .errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    OutOfTokens,
    ProductAIError,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)
from .plugin import PLUGIN, ProductAIProvider, ProductAISettings

__all__ = [
    "PLUGIN",
    "AuthenticationFailed",
    "InvalidRequest",
    "NotFound",
    "OutOfTokens",
    "ProductAIClient",
    "ProductAIError",
    "ProductAIProvider",
    "ProductAISettings",
    "RateLimited",
    "ServiceUnavailable",
    "UnexpectedResponse",
    "parse_webhook",
]
