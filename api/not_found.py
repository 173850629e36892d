"""404 for paths outside the API prefixes: JSON, never Django's HTML page — except in the tenant
console, where a person gets a console page (with the way back and the sign-out button).

The commonest mistake with the SDK is a ``base_url`` without ``/v1`` (``http://host:8000``):
the SDK then calls ``/responses`` or ``/models``. When the same path under ``/v1`` exists, the
answer says so.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

from core.errors import NotFound, error_response


def _exists_under_v1(path: str) -> bool:
    try:
        resolve("/v1" + path)
    except Resolver404:
        return False
    return True


def not_found(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse | HttpResponse:
    if request.path.startswith("/console/"):
        return render(request, "console/not_found.html", status=404)
    message = f"Invalid URL ({request.method} {request.path})"
    if _exists_under_v1(request.path):
        message += (
            f". Did you mean /v1{request.path}? The API lives under /v1: set the SDK's "
            "base_url to http(s)://<host>/v1 (for example OpenAI(base_url="
            "'http://127.0.0.1:8000/v1'))."
        )
    return error_response(NotFound(message))
