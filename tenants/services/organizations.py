from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from tenants.models import Membership, Organization, Project


@transaction.atomic
def organization_create(*, name: str, slug: str | None = None, owner=None) -> Organization:
    organization = Organization.objects.create(name=name, slug=slug or slugify(name)[:64])
    Project.objects.create(organization=organization, name="Default project")
    if owner is not None:
        Membership.objects.create(
            user=owner, organization=organization, role=Membership.Role.OWNER
        )
    return organization


def project_create(*, organization: Organization, name: str) -> Project:
    return Project.objects.create(organization=organization, name=name)
