"""The request an API view receives, typed.

Django builds the request (``ASGIRequest``, or ``WSGIRequest`` under a sync server); the gateway
(:class:`api.middleware.ApiGatewayMiddleware`) authenticates it and sets the attributes below
before any view runs. These classes are for annotations only: nothing instantiates them, and
nothing here changes what reaches a view.

Both HTTP stacks reach the caller the same way, as ``request.principal``: plain async views on
the Django request, DRF views on DRF's ``Request``, which hands unknown attributes to the Django
request it wraps (docs/architecture.md, "Two HTTP stacks").
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

from quotas.services.headers import HeaderState
from tenants.principal import ApiPrincipal


class ApiRequest(HttpRequest):
    """An authenticated ``/v1/`` or ``/openai/`` request, as a plain async view receives it."""

    principal: ApiPrincipal
    """Who is calling: the key, its organization and its project."""
    method: str  # always set on a request Django routes
    request_id: str
    """The ``x-request-id`` of the answer (the client's own when well formed)."""
    rate_limit: HeaderState | None
    """The limiter's state the answer's ``x-ratelimit-*`` headers report, when an admission
    decided it (the view sets it from the reservation, or from a refusal); None: the gateway
    peeks at the limiter instead."""

    # Set by the Responses views for the streams they answer (responses.views._stream_wire).
    stream_dialect: str
    stream_done: bool
    rate_limit_events: bool
    # Set by Azure's route forms (api.azure): the deployment named in the URL, if any.
    azure_deployment: str | None


class ApiDrfRequest(Request):
    """The same request as a DRF view receives it. ``request.principal`` is the gateway's
    principal (``request.user`` is the same object, through ``ApiKeyAuthentication``)."""

    principal: ApiPrincipal
    request_id: str
