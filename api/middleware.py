"""The API gateway: one place that gives every ``/v1/`` and ``/openai/`` answer its request id,
its OpenAI headers and, when anything goes wrong, OpenAI's error envelope.

Order of work for an API request:
1. pick the request id (a well-formed client ``X-Client-Request-Id``/``X-Request-Id``, else a new
   ``req_…``) and bind it to the logging context;
2. authenticate the key (401 in the envelope if that fails) and attach ``request.principal``;
3. run the view; exceptions become envelopes in ``process_exception`` (500s name the request id
   and leak no traceback);
4. any remaining non-JSON error page (Django's 404/405/400) is replaced by the envelope, and the
   headers (``x-request-id``, ``openai-processing-ms``, ``openai-version``,
   ``openai-organization``, ``openai-project``, and ``x-ratelimit-*`` from ``quotas``) are added.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponseBase

from api.authentication import RequestHead, authenticate_request, authenticate_request_async
from api.request import ApiRequest
from core.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    database_unavailable_response,
    engine_api_error,
    error_response,
    generic_error_for_status,
    server_error_response,
)
from core.logging import current_request_id
from core.versions import request_versions, versions_get
from engines.models import VERSION as ENGINES_VERSION
from engines.runtime.types import EngineError
from quotas.services.headers import rate_limit_headers, rate_limit_peek, rate_limit_peek_sync
from tenants.models import VERSION as TENANTS_VERSION

logger = logging.getLogger("api")

API_PREFIXES = ("/v1/", "/openai/")
# Errors of reaching the database (refused, too many clients, pool exhausted, connection lost),
# as opposed to errors of a query (IntegrityError and the like are bugs: 500).
_DATABASE_DOWN = (OperationalError, InterfaceError)
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/v1", "/openai")


def choose_request_id(request: RequestHead) -> str:
    for header in ("X-Client-Request-Id", "X-Request-Id"):
        value = request.headers.get(header, "")
        if value and _CLIENT_REQUEST_ID.match(value):
            return value
    return f"req_{uuid.uuid4().hex}"


class ApiGatewayMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request: ApiRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if not is_api_path(request.path):
            current_request_id.set("-")
            return self.get_response(request)
        started = self._begin(request)
        try:
            request.principal = authenticate_request(request)
        except ApiError as error:
            return self._finish(request, error_response(error), started)
        except _DATABASE_DOWN:
            return self._finish(request, self._database_down(request), started)
        except Exception:
            # Raised here, before the view, process_exception never sees it: without this a
            # failure of authentication itself would be Django's HTML 500 page.
            logger.exception("Authentication failed unexpectedly on %s", request.path)
            return self._finish(request, server_error_response(request.request_id), started)
        response = self.get_response(request)
        if request.rate_limit is None:  # the limiter's state when no admission reported it
            request.rate_limit = rate_limit_peek_sync(principal=request.principal)
        return self._finish(request, response, started)

    async def __acall__(self, request: ApiRequest):
        if not is_api_path(request.path):
            current_request_id.set("-")
            return await self.get_response(request)
        started = self._begin(request)
        # One round trip for the versions of everything this process caches for a request (the
        # key, the model): authentication and the model lookup then need no query while nothing
        # changed (core.versions).
        versions = request_versions.set(await versions_get(TENANTS_VERSION, ENGINES_VERSION))
        try:
            try:
                request.principal = await authenticate_request_async(request)
            except ApiError as error:
                return self._finish(request, error_response(error), started)
            except _DATABASE_DOWN:
                return self._finish(request, self._database_down(request), started)
            except Exception:
                # Raised here, before the view, process_exception never sees it: without this a
                # failure of authentication itself would be Django's HTML 500 page.
                logger.exception("Authentication failed unexpectedly on %s", request.path)
                return self._finish(request, server_error_response(request.request_id), started)
            response = await self.get_response(request)
        finally:
            request_versions.reset(versions)
        if request.rate_limit is None:  # the limiter's state when no admission reported it
            request.rate_limit = await rate_limit_peek(principal=request.principal)
        return self._finish(request, response, started)

    def _begin(self, request: ApiRequest) -> float:
        request.request_id = choose_request_id(request)
        request.principal = None  # type: ignore[assignment]  # until authentication sets it
        # Not reset when the middleware returns: Django logs the response ("Bad Request: …")
        # after the middleware chain, and that line must carry the id too. Every request sets
        # it afresh (ASGI runs each request in its own context; WSGI threads overwrite it).
        current_request_id.set(request.request_id)
        # The limiter's state for x-ratelimit-*: a view that admitted the request sets it from
        # the reservation (or the refusal); left None, _finish's caller peeks instead.
        request.rate_limit = None
        return time.monotonic()

    def process_exception(self, request: ApiRequest, exception: Exception):
        if not is_api_path(request.path):
            return None
        if isinstance(exception, ApiError):
            return error_response(exception)
        if isinstance(exception, Http404):
            return error_response(NotFound(f"Invalid URL ({request.method} {request.path})"))
        if isinstance(exception, RequestDataTooBig):
            return error_response(PayloadTooLarge("The request body is too large."))
        if isinstance(exception, DjangoPermissionDenied):
            return error_response(PermissionDenied(str(exception) or "Permission denied."))
        if isinstance(exception, _DATABASE_DOWN):
            return self._database_down(request)
        if isinstance(exception, EngineError):
            # Raised before any generation (counting the prompt's tokens, say): the engine's
            # status, and for a 503 when to retry.
            return error_response(engine_api_error(exception))
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return server_error_response(getattr(request, "request_id", "unknown"))

    def _database_down(self, request: ApiRequest) -> HttpResponseBase:
        # Connection refused, too many clients, the pool exhausted: the request did nothing the
        # client could fix, and retrying may well work (a 503 the SDK retries by itself).
        logger.exception("Database unavailable on %s %s", request.method, request.path)
        return database_unavailable_response(request.request_id)

    def _finish(
        self, request: ApiRequest, response: HttpResponseBase, started: float
    ) -> HttpResponseBase:
        if response.status_code >= 400 and not _is_json(response):
            response = error_response(
                generic_error_for_status(
                    response.status_code, method=request.method or "GET", path=request.path
                )
            )
        response["x-request-id"] = request.request_id
        response["openai-version"] = settings.OPENAI_VERSION_HEADER
        # API answers carry tenant data (responses, usage, errors naming their objects): no
        # cache, shared or private, may keep them.
        response["Cache-Control"] = "no-store"
        response["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
        principal = getattr(request, "principal", None)
        # One access line per API request, carrying the request id (daphne's own access log
        # does not know it).
        logger.info(
            "%s %s %s %sms",
            request.method,
            request.path,
            response.status_code,
            response["openai-processing-ms"],
        )
        if principal is not None:
            response["openai-organization"] = principal.organization.public_id
            if principal.project is not None:
                response["openai-project"] = principal.project.public_id
            for name, value in rate_limit_headers(request.rate_limit).items():
                response[name] = value
        return response


def _is_json(response: HttpResponseBase) -> bool:
    return response.get("Content-Type", "").startswith(("application/json", "text/event-stream"))
