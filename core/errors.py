"""One error vocabulary for the whole API, in OpenAI's types and codes.

Every failure under ``/v1/`` and ``/openai/`` is rendered as OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` with the status OpenAI would use, so the
official SDK raises the matching exception class (BadRequestError, AuthenticationError, …).
Raise an :class:`ApiError` (or a subclass) anywhere below a view; the gateway middleware and the
DRF exception handler both render it through :func:`error_body`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from django.conf import settings
from django.http import JsonResponse

logger = logging.getLogger(__name__)

MALFORMED_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid "
    "JSON.)"
)


class ApiError(Exception):
    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,  # noqa: A002 - mirrors the wire field name
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}


class InvalidRequest(ApiError):
    """400: the request is malformed or a parameter is invalid (``param`` names it)."""


class MalformedJson(ApiError):
    def __init__(self, message: str = MALFORMED_JSON_MESSAGE) -> None:
        super().__init__(message)


class AuthenticationFailed(ApiError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(ApiError):
    status = 403
    code = "insufficient_permissions"


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409


class Gone(ApiError):
    status = 410


class PayloadTooLarge(ApiError):
    status = 413
    code = "request_too_large"


class ServerError(ApiError):
    status = 500
    type = "server_error"
    code = "server_error"


class ServiceUnavailable(ApiError):
    """503: a dependency (the database) is unreachable right now; the client may retry."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


def retry_after_headers(ms: int) -> dict[str, str]:
    """``retry-after`` in whole seconds (at least 1) and the exact wait in ``retry-after-ms``
    (which the SDK prefers)."""
    ms = max(int(ms), 1)
    return {"retry-after": str(max(math.ceil(ms / 1000), 1)), "retry-after-ms": str(ms)}


class OutageClock:
    """How long a dependency (the database, the queue) has been failing in this process, as a
    retry hint: a fresh outage says retry in a second, one that lasts says wait longer (as long
    as it has lasted so far, up to ``ceiling``), so clients back off with the outage instead of
    hammering it at a fixed pace. An outage ends after ``quiet`` seconds without a failure."""

    def __init__(self, *, quiet: float = 10.0, ceiling: float = 30.0) -> None:
        self.quiet = quiet
        self.ceiling = ceiling
        self._started: float | None = None
        self._last: float | None = None
        self._lock = threading.Lock()

    def failed(self) -> int:
        """Record a failure now; the retry hint in milliseconds."""
        now = time.monotonic()
        with self._lock:
            if self._last is None or now - self._last > self.quiet:
                self._started = now
            self._last = now
            elapsed = now - (self._started or now)
        return int(min(max(elapsed, 1.0), self.ceiling) * 1000)


def engine_api_error(error: Any) -> ApiError:
    """An engine's error (``engines.runtime.types.EngineError``) as the API's: same status, type
    and code; a 503 or 429 says when to retry, from the engine's own hint (the next health check
    of its ejected replicas) or, when it has none, one health-check period."""
    headers: dict[str, str] = {}
    if error.status in (429, 503):
        fallback = int(settings.ENGINE_HEALTH_INTERVAL_SECONDS * 1000)
        headers = retry_after_headers(getattr(error, "retry_after_ms", None) or fallback)
    return ApiError(
        error.message,
        status=error.status,
        type=error.type,
        code=error.code,
        param=getattr(error, "param", None),
        headers=headers,
    )


database_outage = OutageClock()
queue_outage = OutageClock()


def database_unavailable_response(request_id: str) -> JsonResponse:
    return error_response(
        ServiceUnavailable(
            "The server could not reach its database. Retry your request, and contact the "
            f"platform's operators if the error persists (request ID {request_id}).",
            headers=retry_after_headers(database_outage.failed()),
        )
    )


def error_body(
    message: str,
    *,
    type: str,  # noqa: A002 (the envelope's own field name)
    param: str | None,
    code: str | None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(
        error_body(error.message, type=error.type, param=error.param, code=error.code),
        status=error.status,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response


def server_error_response(request_id: str) -> JsonResponse:
    """500 for an unhandled exception: names the request id, leaks nothing else."""
    return error_response(
        ServerError(
            "The server had an error while processing your request. Sorry about that! "
            f"You can retry your request, or contact us if the error persists. "
            f"(Please include the request ID {request_id} in your message.)"
        )
    )


def generic_error_for_status(status: int, *, method: str, path: str) -> ApiError:
    """The envelope for a bare HTTP error produced below the API layer (Django, DRF)."""
    if status == 404:
        return NotFound(f"Invalid URL ({method} {path})")
    if status == 405:
        return MethodNotAllowed(f"Method {method} is not allowed for {path}.")
    if status == 413:
        return PayloadTooLarge("The request body is too large.")
    if status == 401:
        return AuthenticationFailed("Authentication failed.")
    if status == 403:
        return PermissionDenied("You do not have permission to perform this request.")
    if status >= 500:
        return ServerError("The server had an error while processing your request.")
    return InvalidRequest("The request could not be processed.", status=status)
