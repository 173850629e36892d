"""Members, roles and invitations of an organization, and what each role may do.

Roles: owners and admins manage the organization (projects, keys, members, invitations);
members read usage and responses. Only an owner can make or unmake another owner, and the last
owner cannot leave or be demoted (an organization must always have someone who can manage it).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from tenants.models import Invite, Membership, Organization

MANAGER_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN)
# OpenAI's Administration API calls the read-only role "reader"; ours is "member".
ROLE_ALIASES = {"reader": Membership.Role.MEMBER}


class MembershipError(ValueError):
    """A change that would break a rule above; the message is safe to show."""


def role_from_wire(value: str) -> str:
    role = ROLE_ALIASES.get(value, value)
    if role not in Membership.Role.values:
        raise MembershipError(
            f"Unknown role {value!r}; use one of owner, admin, member (or reader)."
        )
    return role


def can_manage(role: str | None) -> bool:
    return role in MANAGER_ROLES


def membership_role_set(
    *, membership: Membership, role: str, acting_role: str | None
) -> Membership:
    role = role_from_wire(role)
    if Membership.Role.OWNER in (role, membership.role) and acting_role not in (
        None,
        Membership.Role.OWNER,
    ):
        raise MembershipError("Only an owner can grant or remove the owner role.")
    with transaction.atomic():
        if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
            _refuse_last_owner(membership)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def membership_remove(*, membership: Membership, acting_role: str | None) -> None:
    if membership.role == Membership.Role.OWNER and acting_role not in (
        None,
        Membership.Role.OWNER,
    ):
        raise MembershipError("Only an owner can remove an owner.")
    with transaction.atomic():
        if membership.role == Membership.Role.OWNER:
            _refuse_last_owner(membership)
        membership.delete()


def _refuse_last_owner(membership: Membership) -> None:
    owners = (
        Membership.objects.select_for_update()
        .filter(organization_id=membership.organization_id, role=Membership.Role.OWNER)
        .exclude(pk=membership.pk)
    )
    if not list(owners):
        raise MembershipError("An organization must keep at least one owner.")


def invite_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    created_by=None,
    acting_role: str | None = None,
) -> Invite:
    role = role_from_wire(role)
    if role == Membership.Role.OWNER and acting_role not in (None, Membership.Role.OWNER):
        raise MembershipError("Only an owner can invite an owner.")
    email = email.strip().lower()
    now = timezone.now()
    if Invite.objects.filter(
        organization=organization, email=email, accepted_at__isnull=True, expires_at__gt=now
    ).exists():
        raise MembershipError(f"{email} already has a pending invitation.")
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise MembershipError(f"{email} is already a member of this organization.")
    return Invite.objects.create(
        organization=organization, email=email, role=role, created_by=created_by
    )


def invite_accept(*, invite: Invite, user) -> Membership:
    """Accept a pending invitation as ``user`` (signed in; any e-mail address: the secret link
    is what proves the invitation reached them)."""
    with transaction.atomic():
        invite = Invite.objects.select_for_update().get(pk=invite.pk)
        if invite.status != Invite.Status.PENDING:
            raise MembershipError(f"This invitation is {invite.status}.")
        membership, _created = Membership.objects.get_or_create(
            user=user, organization=invite.organization, defaults={"role": invite.role}
        )
        invite.accepted_at = timezone.now()
        invite.save(update_fields=["accepted_at"])
    return membership


def invite_delete(*, invite: Invite) -> None:
    invite.delete()
