"""ProductAI's error answers: an exception carrying the HTTP status and the exact JSON body.

The documented error body is `{"name":"ApiError","message":…,"details":…}`; every error the
sandbox makes uses it, except the second OUT_OF_TOKENS shape (`{"code":"OUT_OF_TOKENS",…}`),
which is why the body is built here and not assumed by the app.
"""

from __future__ import annotations

from typing import Any

from . import contract


class ApiError(Exception):
    """An error response: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("details") or body.get("message"))
        self.status = status
        self.body = body


def api_error(status: int, message: str, details: str) -> ApiError:
    return ApiError(status, {"name": "ApiError", "message": message, "details": details})


def bad_request(details: str) -> ApiError:
    return api_error(400, contract.BAD_REQUEST, details)


def unauthorized(details: str) -> ApiError:
    return api_error(401, contract.UNAUTHORIZED, details)


def not_found(details: str) -> ApiError:
    return api_error(404, contract.NOT_FOUND, details)


def rate_limited() -> ApiError:
    return api_error(
        429,
        contract.RATE_LIMITED,
        f"Rate limit exceeded: {contract.REQUESTS_PER_WINDOW} requests per minute.",
    )


def server_error(status: int = 500) -> ApiError:
    return api_error(status, contract.INTERNAL_SERVER_ERROR, "Internal Server Error")


def out_of_tokens(shape: str) -> ApiError:
    """OUT_OF_TOKENS in one of its two published shapes."""
    if shape == contract.OUT_OF_TOKENS_CODE:
        return ApiError(
            contract.OUT_OF_TOKENS_CODE_STATUS, {"code": contract.OUT_OF_TOKENS, "message": "Not enough credits"}
        )
    return api_error(contract.OUT_OF_TOKENS_API_ERROR_STATUS, contract.OUT_OF_TOKENS, "Not enough credits")
