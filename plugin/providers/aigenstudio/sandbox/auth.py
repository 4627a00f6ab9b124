"""Which requests carry an acceptable API key: `Authorization: Bearer <key>` and nothing else [DOC].

Rejected, all with 401: keys in query strings, `x-api-key` or any other header carrying a key,
cookies or session tokens, user JWTs, malformed keys. (Whether the key is known is the state's
question, not this module's.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .. import contract
from .state import ApiError

_QUERY_KEY_NAMES = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth", "authorization"})
_KEY_MARKERS = (contract.TEST_KEY_PREFIX, contract.LIVE_KEY_PREFIX)
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, contract.INVALID_API_KEY, message)


def bearer_key(headers: Mapping[str, str], query: Iterable[tuple[str, str]]) -> str:
    """The API key from the Authorization header, or ApiError(401) naming what was wrong."""
    for name, value in query:
        if name.lower() in _QUERY_KEY_NAMES or value.startswith(_KEY_MARKERS):
            raise _unauthorized("API keys in query strings are not accepted. Use the Authorization: Bearer header.")
    for name, value in headers.items():
        if name.lower() in ("x-api-key", "api-key", "apikey") or (
            name.lower() != "authorization" and value.strip().startswith(_KEY_MARKERS)
        ):
            raise _unauthorized("Only Authorization: Bearer API keys are supported, not custom API key headers.")
    if "cookie" in {name.lower() for name in headers}:
        raise _unauthorized("Cookies and session tokens are not accepted. Use an API key in the Authorization header.")
    authorization = headers.get("authorization")
    if not authorization:
        raise _unauthorized("Missing API key. Send Authorization: Bearer <key>.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Only Authorization: Bearer API keys are supported.")
    if _JWT.match(token):
        raise _unauthorized("User JWTs are not accepted. Use an AI Gen Studio API key.")
    if not contract.API_KEY_PATTERN.match(token):
        raise _unauthorized("The API key is invalid.")
    return token
