"""Which models an organization may see and use."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from core.errors import NotFound
from core.versions import RowSnapshot, VersionedCache, version_get
from engines.models import VERSION, Deployment, ServedModel
from tenants.models import Organization

# (organization pk, name) → the model as found, while no model or grant changed anywhere
# (engines.models.VERSION): model_get runs on every POST /v1/responses.
_found = VersionedCache()


def model_list(*, organization: Organization) -> QuerySet[ServedModel]:
    return (
        ServedModel.objects.filter(enabled=True)
        .filter(Q(available_to_all=True) | Q(organizations=organization))
        .distinct()
        .order_by("name")
    )


def model_get(*, organization: Organization, name: str) -> ServedModel | None:
    if "\x00" in name:
        # PostgreSQL text cannot hold NUL, so no model has such a name; asking the database
        # would fail the whole request instead of answering "not found".
        return None
    # On every POST /v1/responses: served from this process's cache while no model or grant
    # changed (the version is read before the query, see core.versions). Only models found are
    # kept: a model created or granted later needs no notice.
    version = version_get(VERSION)
    snapshot = _found.get((organization.pk, name), version=version)
    if snapshot is not None:
        return snapshot.instance()
    # The name is unique, so no DISTINCT or ORDER BY is needed, and EXISTS keeps the
    # organization check from joining (and multiplying) rows.
    granted = ServedModel.organizations.through.objects.filter(
        servedmodel_id=OuterRef("pk"), organization_id=organization.pk
    )
    model = (
        ServedModel.objects.filter(enabled=True, name=name)
        .filter(Q(available_to_all=True) | Exists(granted))
        .first()
    )
    if model is not None:
        _found.put((organization.pk, name), RowSnapshot.of(model), version=version)
    return model


def deployment_get(*, organization: Organization, name: str) -> Deployment | None:
    """The organization's deployment of that name (never another organization's)."""
    if "\x00" in name:
        return None  # as in model_get: no name can hold NUL
    return (
        Deployment.objects.select_related("model")
        .filter(organization=organization, name=name)
        .first()
    )


def model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model '{name}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )
