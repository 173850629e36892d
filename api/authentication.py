"""Who is calling: an API key (``Authorization: Bearer`` or Azure's ``api-key``), never a session.

The gateway middleware calls :func:`authenticate_request_async` (or, under a sync server,
:func:`authenticate_request`) once per API request and attaches the resulting
:class:`ApiPrincipal` to ``request.principal``; DRF views see it through
:class:`ApiKeyAuthentication`, async views read it directly. Session cookies are ignored on the
API on purpose: a browser holding an admin session must not be able to drive the API (CSRF).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from core.db import db_async
from core.errors import AuthenticationFailed
from core.versions import version_get, version_get_async
from tenants.models import VERSION as TENANTS_VERSION
from tenants.models import ApiKey
from tenants.principal import ApiPrincipal
from tenants.selectors import project_get
from tenants.services.api_keys import (
    api_key_from_cache,
    api_key_lookup,
    api_key_mark_used,
    api_key_mark_used_due,
    digest_of,
    is_well_formed,
)

ADMIN_API_PREFIX = "/v1/organization/"


class RequestHead(Protocol):
    """What authentication reads from a request: an HttpRequest, or a WebSocket handshake."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def path(self) -> str: ...


def is_admin_api_path(path: str) -> bool:
    return path.startswith(ADMIN_API_PREFIX) or path == ADMIN_API_PREFIX.rstrip("/")


def _presented_secret(request: RequestHead) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    azure_key = request.headers.get("api-key", "").strip()
    return azure_key or None


def _incorrect_key_message(secret: str) -> str:
    # Like OpenAI: show enough of the key to recognise it, never all of it.
    shown = f"{secret[:6]}…{secret[-4:]}" if len(secret) > 12 else "********"
    return f"Incorrect API key provided: {shown}. You can find your API keys in the admin."


def _secret_or_refuse(request: RequestHead) -> str:
    secret = _presented_secret(request)
    if secret is None:
        raise AuthenticationFailed(
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key "
            "header."
        )
    return secret


def authenticate_request(request: RequestHead) -> ApiPrincipal:
    """Sync (a database thread, or a sync server): the key from this process's cache while it
    is current (tenants.services.api_keys), else from the database."""
    secret = _secret_or_refuse(request)
    api_key = api_key_lookup(secret=secret, version=version_get(TENANTS_VERSION))
    principal = _principal(request, secret, api_key)
    api_key_mark_used(api_key=principal.api_key)
    return principal


async def authenticate_request_async(request: RequestHead) -> ApiPrincipal:
    """From the event loop: a key this process holds under the current version (read at the
    start of the request) is authenticated here, with no database query and no thread; only a
    key not held yet, a project named by header, or last use to record go to a database
    thread."""
    secret = _secret_or_refuse(request)
    api_key = None
    if is_well_formed(secret):
        api_key = api_key_from_cache(
            digest=digest_of(secret), version=await version_get_async(TENANTS_VERSION)
        )
    if api_key is None or _names_a_project(request, api_key):
        return await db_async(authenticate_request)(request)
    principal = _principal(request, secret, api_key)
    if api_key_mark_used_due(api_key=api_key):
        await db_async(api_key_mark_used)(api_key=api_key)
    return principal


def _names_a_project(request: RequestHead, api_key: ApiKey) -> bool:
    """An ``OpenAI-Project`` header with an organization-wide key: a query finds the project."""
    return api_key.project is None and bool(request.headers.get("OpenAI-Project", "").strip())


def _principal(request: RequestHead, secret: str, api_key: ApiKey | None) -> ApiPrincipal:
    """Who the request is, or AuthenticationFailed."""
    if api_key is None or api_key.status_at(timezone.now()) != "active":
        raise AuthenticationFailed(_incorrect_key_message(secret))
    # Admin keys manage the organization and nothing else; ordinary keys never manage it.
    if is_admin_api_path(request.path) and not api_key.is_admin:
        raise AuthenticationFailed(
            "This endpoint requires an admin API key. Ordinary API keys cannot use the "
            "Administration API.",
            code="invalid_api_key",
        )
    if api_key.is_admin and not is_admin_api_path(request.path):
        raise AuthenticationFailed(
            "Admin API keys can only be used with the Administration API (/v1/organization/).",
            code="invalid_api_key",
        )

    organization = api_key.organization
    requested_org = request.headers.get("OpenAI-Organization", "").strip()
    if requested_org and requested_org not in (organization.public_id, organization.slug):
        raise AuthenticationFailed(
            "OpenAI-Organization header should match organization for API key",
            code="mismatched_organization",
        )

    project = api_key.project
    requested_project = request.headers.get("OpenAI-Project", "").strip()
    if requested_project:
        if project is not None:
            if requested_project != project.public_id:
                raise AuthenticationFailed(
                    "OpenAI-Project header should match project for API key",
                    code="mismatched_project",
                )
        else:
            project = project_get(organization=organization, ref=requested_project)
            if project is None:
                raise AuthenticationFailed(
                    "OpenAI-Project header should match project for API key",
                    code="mismatched_project",
                )
    return ApiPrincipal(api_key=api_key, organization=organization, project=project)


class ApiKeyAuthentication(BaseAuthentication):
    """Hands DRF the principal the gateway middleware already authenticated."""

    def authenticate(self, request):
        # DRF's wrapped HttpRequest, where the gateway middleware put the principal.
        principal = getattr(request._request, "principal", None)  # noqa: SLF001
        if principal is None:
            raise AuthenticationFailed("You didn't provide an API key.")
        return (principal, principal.api_key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
