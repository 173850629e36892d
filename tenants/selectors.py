"""Tenant-scoped reads. Anything owned by an organization is fetched through a function here (or
in the owning app's selectors) that takes the organization: another organization's object is
simply not found."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.models import ApiKey, Invite, Membership, Organization, Project


def organization_get_by_ref(*, ref: str) -> Organization | None:
    """An organization by public id or slug (management commands, headers)."""
    return (
        Organization.objects.filter(public_id=ref).first()
        or Organization.objects.filter(slug=ref).first()
    )


def project_get(*, organization: Organization, ref: str) -> Project | None:
    return (
        Project.objects.filter(organization=organization, archived_at__isnull=True)
        .filter(public_id=ref)
        .first()
    )


def api_key_list(*, organization: Organization | None = None) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.select_related("organization", "project").order_by("-created_at")
    if organization is not None:
        keys = keys.filter(organization=organization)
    return keys


def api_key_get_by_ref(*, ref: str) -> ApiKey | None:
    """A key by public id or by its displayed prefix (management commands)."""
    return (
        ApiKey.objects.filter(public_id=ref).first()
        or ApiKey.objects.filter(prefix=ref[:12]).first()
    )


# --- Administration API and console (always one organization) -------------------------------


def project_list(
    *, organization: Organization, include_archived: bool = False
) -> QuerySet[Project]:
    projects = Project.objects.filter(organization=organization)
    if not include_archived:
        projects = projects.filter(archived_at__isnull=True)
    return projects.order_by("created_at", "pk")


def project_get_any(*, organization: Organization, ref: str) -> Project | None:
    """A project by public id, archived ones included (reads and un-archiving)."""
    return Project.objects.filter(organization=organization, public_id=ref).first()


def api_key_get(*, organization: Organization, ref: str, kind: str | None = None) -> ApiKey | None:
    keys = ApiKey.objects.select_related("organization", "project", "created_by").filter(
        organization=organization, public_id=ref
    )
    if kind is not None:
        keys = keys.filter(kind=kind)
    return keys.first()


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at", "pk")
    )


def membership_get(*, organization: Organization, user_id: int) -> Membership | None:
    return membership_list(organization=organization).filter(user_id=user_id).first()


def invite_list(*, organization: Organization) -> QuerySet[Invite]:
    return Invite.objects.filter(organization=organization).order_by("created_at", "pk")


def invite_get(*, organization: Organization, ref: str) -> Invite | None:
    return invite_list(organization=organization).filter(public_id=ref).first()


def organizations_of_user(*, user) -> QuerySet[Organization]:
    """Organizations the user belongs to (staff see none extra here: the console is for
    members; staff use the admin)."""
    return Organization.objects.filter(memberships__user=user).order_by("name")
