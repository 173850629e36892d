"""Which models an organization may see and use."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from engines.models import ServedModel
from tenants.models import Organization


def model_list(*, organization: Organization) -> QuerySet[ServedModel]:
    return (
        ServedModel.objects.filter(enabled=True)
        .filter(Q(available_to_all=True) | Q(organizations=organization))
        .distinct()
        .order_by("name")
    )


def model_get(*, organization: Organization, name: str) -> ServedModel | None:
    return model_list(organization=organization).filter(name=name).first()
