"""GET /v1/models and /v1/models/{id}: OpenAI's shape, scoped to the caller's organization."""

from __future__ import annotations

import pytest
from django.test import Client

from engines.models import ServedModel
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(cast):
    public = ServedModel.objects.create(name="smollm2", upstream_model="smollm2")
    acme_only = ServedModel.objects.create(
        name="acme-private", upstream_model="x", available_to_all=False
    )
    acme_only.organizations.add(cast.alice.organization)
    ServedModel.objects.create(name="disabled", upstream_model="y", enabled=False)
    return {"public": public, "acme_only": acme_only}


def test_it_lists_models_in_openai_shape(client: Client, cast, catalog):
    body = client.get("/v1/models", **cast.alice.auth).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["acme-private", "smollm2"]
    first = body["data"][0]
    assert set(first) == {"id", "object", "created", "owned_by"}
    assert first["object"] == "model"
    assert isinstance(first["created"], int)


def test_it_hides_other_organizations_models_from_the_list(client: Client, cast, catalog):
    body = client.get("/v1/models", **cast.charlie.auth).json()
    assert [m["id"] for m in body["data"]] == ["smollm2"]


def test_it_retrieves_a_model(client: Client, cast, catalog):
    body = client.get("/v1/models/smollm2", **cast.charlie.auth).json()
    assert body["id"] == "smollm2"


def test_another_organizations_model_is_not_found(client: Client, cast, catalog):
    response = client.get("/v1/models/acme-private", **cast.charlie.auth)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"


def test_unknown_and_disabled_models_are_not_found(client: Client, cast, catalog):
    for name in ("nope", "disabled"):
        assert client.get(f"/v1/models/{name}", **cast.alice.auth).status_code == 404


def test_a_read_only_key_may_list_models(client: Client, cast, catalog):
    assert client.get("/v1/models", **cast.bob.auth).status_code == 200


def test_a_restricted_key_without_models_access_is_refused(client: Client, cast, catalog):
    issued = api_key_issue(
        organization=cast.alice.organization,
        name="responses only",
        scope=ApiKey.Scope.RESTRICTED,
        permissions={"responses": "write", "models": "none"},
    )
    response = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_permissions"


def test_the_list_costs_a_fixed_number_of_queries(
    client: Client, cast, catalog, django_assert_max_num_queries
):
    for n in range(10):
        ServedModel.objects.create(name=f"m{n}", upstream_model="z")
    with django_assert_max_num_queries(4):
        client.get("/v1/models", **cast.alice.auth)
