"""Who is calling: an API key (``Authorization: Bearer`` or Azure's ``api-key``), never a session.

The gateway middleware calls :func:`authenticate_request` once per API request and attaches the
resulting :class:`ApiPrincipal` to ``request.principal``; DRF views see it through
:class:`ApiKeyAuthentication`, async views read it directly. Session cookies are ignored on the
API on purpose: a browser holding an admin session must not be able to drive the API (CSRF).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from rest_framework.authentication import BaseAuthentication

from core.errors import AuthenticationFailed
from tenants.principal import ApiPrincipal
from tenants.selectors import project_get
from tenants.services.api_keys import api_key_find_active, api_key_mark_used

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


def authenticate_request(request: RequestHead) -> ApiPrincipal:
    secret = _presented_secret(request)
    if secret is None:
        raise AuthenticationFailed(
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key "
            "header."
        )
    api_key = api_key_find_active(secret=secret)
    if api_key is None:
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

    api_key_mark_used(api_key=api_key)
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
