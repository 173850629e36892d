from __future__ import annotations

from rest_framework.permissions import BasePermission

from core.errors import AuthenticationFailed


class IsAdminKey(BasePermission):
    """The gateway already refuses ordinary keys under /v1/organization/; this keeps a view
    mounted elsewhere by mistake from being reachable with one."""

    def has_permission(self, request, view) -> bool:
        principal = getattr(request, "principal", None)
        if principal is None or not principal.api_key.is_admin:
            raise AuthenticationFailed("This endpoint requires an admin API key.")
        return True
