"""The error a request handler raises for an answer other than 200.

Its own module because the server (:mod:`qagent.serve.http`), the request payload checks
(:mod:`qagent.serve.payloads`) and the session store (:mod:`qagent.serve.limits`) all raise it,
and none of those should import another only for its exception.
"""

from __future__ import annotations


class HttpError(Exception):
    """An answer other than 200, with a message (and a hint) for the client."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.hint = hint

    def payload(self) -> dict[str, str]:
        return {"error": self.message, **({"hint": self.hint} if self.hint else {})}
