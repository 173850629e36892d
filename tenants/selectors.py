"""Tenant-scoped reads. Anything owned by an organization is fetched through a function here (or
in the owning app's selectors) that takes the organization: another organization's object is
simply not found."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.models import ApiKey, Organization, Project


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
