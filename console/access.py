"""Who may see and do what in the console.

Every page is for one organization, named in the URL by slug; it is looked up among the
organizations the signed-in user belongs to, so another organization's pages (and everything
in them) are a 404, exactly like an unknown one. Owners and admins manage; members read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404

from tenants.models import Membership, Organization
from tenants.services.members import can_manage


@dataclass(frozen=True)
class Tenant:
    organization: Organization
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role

    @property
    def manages(self) -> bool:
        return can_manage(self.role)

    @property
    def is_owner(self) -> bool:
        return self.role == Membership.Role.OWNER

    @property
    def edits_limits(self) -> bool:
        return self.manages and self.organization.console_edits_limits


def tenant_of(request, slug: str) -> Tenant:
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=request.user, organization__slug=slug)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return Tenant(organization=membership.organization, membership=membership)


def tenant_view(*, manage: bool = False, owner: bool = False):
    """Decorate ``view(request, tenant, **kwargs)``: signed in, a member of the URL's
    organization, and (``manage``) an owner or admin, or (``owner``) an owner."""

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, slug: str, **kwargs):
            tenant = tenant_of(request, slug)
            if manage and not tenant.manages:
                raise PermissionDenied("Only owners and admins can do this.")
            if owner and not tenant.is_owner:
                raise PermissionDenied("Only owners can do this.")
            request.tenant = tenant
            return view(request, tenant, **kwargs)

        return wrapper

    return decorate
