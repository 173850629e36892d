from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from tenants.models import STREAM_DIALECTS, Membership, Organization, Project


@transaction.atomic
def organization_create(*, name: str, slug: str | None = None, owner=None) -> Organization:
    organization = Organization.objects.create(name=name, slug=slug or slugify(name)[:64])
    Project.objects.create(organization=organization, name="Default project")
    if owner is not None:
        Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
    return organization


def project_create(*, organization: Organization, name: str) -> Project:
    return Project.objects.create(organization=organization, name=name)


def project_update(*, project: Project, name: str) -> Project:
    project.name = name
    project.save(update_fields=["name"])
    return project


def project_archive(*, project: Project) -> Project:
    """Archived projects keep their history (usage, responses) but accept no requests: their
    keys stop authenticating because keys of an archived project are revoked with it."""
    from django.utils import timezone

    from tenants.models import ApiKey

    with transaction.atomic():
        now = timezone.now()
        if project.archived_at is None:
            project.archived_at = now
            project.save(update_fields=["archived_at"])
        ApiKey.objects.filter(project=project, revoked_at__isnull=True).update(revoked_at=now)
    return project


def organization_set_dialect(*, organization: Organization, dialect: str) -> Organization:
    """The organization's default stream dialect; ``""`` falls back to the server setting."""
    if dialect and dialect not in STREAM_DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; use one of {', '.join(STREAM_DIALECTS)}")
    organization.stream_dialect = dialect
    organization.save(update_fields=["stream_dialect"])
    return organization
