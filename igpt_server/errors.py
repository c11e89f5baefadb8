"""One error hierarchy for the whole server.

Every failure a caller can cause is an :class:`IgptError` subclass with an HTTP status,
a stable machine-readable ``code`` and a message that says how to fix it. The API layer
turns them into the one error shape ``{"error": {"code", "message", "detail"}}``; tools
and the controller raise them and never exit the process.
"""

from __future__ import annotations

from typing import Any, ClassVar


class IgptError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a short snake_case name."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class BadRequest(IgptError):
    status = 400
    code = "bad_request"


class NotFound(IgptError):
    status = 404
    code = "not_found"


class PayloadTooLarge(IgptError):
    status = 413
    code = "payload_too_large"


class UnsupportedMedia(IgptError):
    status = 415
    code = "unsupported_media"


class InvalidInput(IgptError):
    """The request is well formed but its content cannot be used (422)."""

    status = 422
    code = "invalid_input"


class ToolUnavailable(IgptError):
    """A tool, backend or model is not installed or configured on this server (503)."""

    status = 503
    code = "tool_unavailable"


class ServiceUnavailable(IgptError):
    """A dependency (the LLM endpoint, a busy model) cannot answer now (503)."""

    status = 503
    code = "service_unavailable"


class ToolFailed(IgptError):
    """A tool raised an unexpected error while running (500)."""

    status = 500
    code = "tool_failed"


class RetryLater:
    """Mixin: the caller may retry after ``retry_after`` seconds (sent as ``Retry-After``)."""

    retry_after: float = 1.0


class Unauthorized(IgptError):
    """No API key, or one this server does not know (401)."""

    status = 401
    code = "auth_required"


class Forbidden(IgptError):
    """The request is refused whoever sends it (403): e.g. a cross-site write."""

    status = 403
    code = "forbidden"


class SessionBusy(RetryLater, IgptError):
    """Another request is changing this session and did not finish in time (409)."""

    status = 409
    code = "session_busy"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None, detail: object = None):
        super().__init__(message, code=code, detail=detail)
        self.retry_after = retry_after


class TooManyRequests(RetryLater, IgptError):
    """A per-key rate limit was reached (429)."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None, detail: object = None):
        super().__init__(message, code=code, detail=detail)
        self.retry_after = retry_after


class Busy(RetryLater, ServiceUnavailable):
    """A tool's queue is full: retry after ``retry_after`` seconds (503)."""

    code = "busy"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None, detail: object = None):
        super().__init__(message, code=code, detail=detail)
        self.retry_after = retry_after


class QuotaExceeded(IgptError):
    """The session's byte quota would be exceeded (413)."""

    status = 413
    code = "quota_exceeded"


class InsufficientStorage(IgptError):
    """The server's disk is under its free-space watermark, or its global quota is used (507)."""

    status = 507
    code = "storage_full"


class StoreUnavailable(RetryLater, ServiceUnavailable):
    """The shared session store (PostgreSQL or the S3 object store) cannot be reached (503).

    ``detail`` is ``{"part": "database" | "object_store"}``; the message names what to check.
    Nothing was half-written: a failed write leaves neither a row nor an object behind.
    """

    code = "store_unavailable"

    def __init__(self, message: str, *, part: str, retry_after: float = 5.0, code: str | None = None) -> None:
        super().__init__(message, code=code, detail={"part": part})
        self.part = part
        self.retry_after = retry_after
