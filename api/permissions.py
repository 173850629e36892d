from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.errors import PermissionDenied


def require_scope(principal, *, group: str, write: bool) -> None:
    if not principal.allows(group=group, write=write):
        level = "write" if write else "read"
        raise PermissionDenied(
            "You have insufficient permissions for this operation. "
            f"Missing scope: api.{group}.{level}. Check the permissions of your API key."
        )


class HasApiScope(BasePermission):
    """Views declare ``endpoint_group``; reads need read access, anything else write access."""

    def has_permission(self, request, view) -> bool:
        group = getattr(view, "endpoint_group", None)
        if group is None:
            return True
        require_scope(request.principal, group=group, write=request.method not in SAFE_METHODS)
        return True
