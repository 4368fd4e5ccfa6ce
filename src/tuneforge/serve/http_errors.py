"""Errors the HTTP API answers with, in OpenAI's error-body shape.

OpenAI clients (the official SDKs, LangChain, ...) read ``{"error": {"message", "type", "param",
"code"}}`` and map the status to an exception class (400 BadRequestError, 401 AuthenticationError,
404 NotFoundError, 413, 429 RateLimitError). Every refusal the server makes on purpose is one of
these, so a client error is never a 5xx and a client sees why its request was refused.
"""

from __future__ import annotations

from typing import Any

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
}


class APIError(Exception):
    """A request the server refuses: HTTP status, message for the client, the offending parameter."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body OpenAI's API returns for an error with this status."""
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param, "code": code}}
