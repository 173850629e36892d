"""Azure OpenAI's route forms: the same API under ``/openai/…``, so the official SDK's
``AzureOpenAI`` client works unchanged.

* ``/openai/v1/…`` — Azure's v1 API: ``api-version`` optional (``preview``, ``latest``, ``v1``);
* ``/openai/…?api-version=YYYY-MM-DD[-preview]`` — the dated form, ``api-version`` required;
* ``/openai/deployments/{deployment}/…?api-version=…`` — the deployment form, ``api-version``
  required; the deployment names the model (per organization, ``engines.Deployment``).

``api-key`` authenticates like ``Authorization: Bearer`` (the gateway reads both). A missing or
unknown ``api-version`` is a 400 whose ``code`` is Azure's (``BadRequest``) inside OpenAI's
envelope, so the SDK still raises ``BadRequestError``. Answers also carry Azure's correlation
headers (``apim-request-id``, and ``x-ms-client-request-id`` echoed).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpResponseBase

from api.request import ApiRequest
from core.errors import ApiError

API_VERSION = "api-version"
V1_VERSIONS = frozenset({"preview", "latest", "v1"})
# Responses arrived in Azure's dated API with 2025-03-01-preview: earlier versions have no
# /responses, so they are unknown here as they are there.
FIRST_RESPONSES_VERSION = "2025-03-01"
_DATED_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")


class ApiVersionError(ApiError):
    status = 400
    type = "invalid_request_error"
    code = "BadRequest"


def api_version_check(value: str | None, *, required: bool) -> None:
    if value is None:
        if required:
            raise ApiVersionError(
                f"Missing required query parameter '{API_VERSION}'. Use a dated version such as "
                f"'2025-04-01-preview', or the v1 routes (/openai/v1/…) that need none.",
                param=API_VERSION,
            )
        return
    if value in V1_VERSIONS:
        return
    match = _DATED_VERSION.match(value)
    if match is None or match.group(1) < FIRST_RESPONSES_VERSION:
        raise ApiVersionError(
            f"API version not supported: {value!r}. Supported: 'preview', 'latest', or a dated "
            f"version from {FIRST_RESPONSES_VERSION}-preview on.",
            param=API_VERSION,
        )


def _azure_headers(request: ApiRequest, response: HttpResponseBase) -> HttpResponseBase:
    response["apim-request-id"] = request.request_id
    client_id = request.headers.get("x-ms-client-request-id")
    if client_id:
        response["x-ms-client-request-id"] = client_id[:128]
    return response


def azure_route(view: Callable, *, dated: bool) -> Callable:
    """``view`` behind an Azure form: checks ``api-version`` (required when ``dated``), keeps
    the ``deployment`` URL part on ``request.azure_deployment`` for the view, and adds Azure's
    headers. Works for async views (the Responses endpoints) and sync ones (DRF's)."""

    def before(request: ApiRequest, deployment: str | None) -> None:
        request.azure_deployment = deployment
        api_version_check(request.GET.get(API_VERSION), required=dated)

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapped(
            request: ApiRequest, *args, deployment: str | None = None, **kwargs
        ):
            before(request, deployment)
            return _azure_headers(request, await view(request, *args, **kwargs))

        return async_wrapped

    @functools.wraps(view)
    def wrapped(request: ApiRequest, *args, deployment: str | None = None, **kwargs):
        before(request, deployment)
        return _azure_headers(request, view(request, *args, **kwargs))

    return wrapped
