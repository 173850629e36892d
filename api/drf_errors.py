"""DRF's exception handler: every DRF view (the Administration API, the models endpoints) answers
in the same OpenAI error envelope as the async views."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response as DrfResponse

from core.errors import (
    ApiError,
    AuthenticationFailed,
    InvalidRequest,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    error_body,
    generic_error_for_status,
)


def _first_validation_error(detail: Any, path: str = "") -> tuple[str | None, str]:
    """Walk DRF's nested ValidationError detail to the first message and its dotted param."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = key if not path else f"{path}.{key}"
            if key == "non_field_errors":
                sub = path
            return _first_validation_error(value, sub)
    if isinstance(detail, list) and detail:
        if all(not isinstance(item, dict | list) for item in detail):
            return (path or None), str(detail[0])
        for index, value in enumerate(detail):
            if value:
                return _first_validation_error(value, f"{path}[{index}]")
    return (path or None), str(detail)


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> DrfResponse | None:
    """DRF's EXCEPTION_HANDLER: every DRF view answers in the same envelope."""
    request = context.get("request")
    method = request.method if request is not None else "GET"
    path = request.path if request is not None else ""
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, drf_exceptions.ParseError):
        error = MalformedJson() if "JSON" in str(exc.detail) else InvalidRequest(str(exc.detail))
    elif isinstance(exc, drf_exceptions.ValidationError):
        param, message = _first_validation_error(exc.detail)
        error = InvalidRequest(message, param=param)
    elif isinstance(exc, drf_exceptions.MethodNotAllowed):
        error = MethodNotAllowed(f"Method {method} is not allowed for {path}.")
    elif isinstance(exc, drf_exceptions.NotFound):
        error = NotFound(str(exc.detail))
    elif isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        error = AuthenticationFailed(str(exc.detail))
    elif isinstance(exc, drf_exceptions.PermissionDenied):
        error = PermissionDenied(str(exc.detail))
    elif isinstance(exc, drf_exceptions.UnsupportedMediaType):
        error = InvalidRequest(str(exc.detail), status=415, code="unsupported_media_type")
    elif isinstance(exc, drf_exceptions.APIException):
        error = generic_error_for_status(exc.status_code, method=method, path=path)
        error.message = str(exc.detail)
    else:
        return None  # unhandled: the gateway middleware renders the 500 with the request id
    response = DrfResponse(
        error_body(error.message, type=error.type, param=error.param, code=error.code),
        status=error.status,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response
