"""Azure-style deployments (M1) and image-capable models: the command, the admin, syncmodels."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from engines.management.commands.syncmodels import sync_models
from engines.models import Deployment, ServedModel
from engines.selectors import deployment_get

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db) -> ServedModel:
    return ServedModel.objects.create(name="m-1", upstream_model="m-1")


@pytest.mark.compliance("M1")
def test_setdeployment_maps_lists_and_deletes(cast, model):
    acme, globex = cast.alice.organization, cast.charlie.organization
    call_command("setdeployment", "acme", "prod", "m-1", stdout=io.StringIO())
    assert deployment_get(organization=acme, name="prod").model == model
    assert deployment_get(organization=globex, name="prod") is None  # per organization
    out = io.StringIO()
    call_command("setdeployment", "acme", "--list", stdout=out)
    assert out.getvalue().strip() == "prod\tm-1"
    other = ServedModel.objects.create(name="m-2", upstream_model="m-2")
    call_command("setdeployment", "acme", "prod", "m-2", stdout=io.StringIO())  # remap
    assert deployment_get(organization=acme, name="prod").model == other
    call_command("setdeployment", "acme", "prod", "--delete", stdout=io.StringIO())
    assert not Deployment.objects.exists()
    for args in (
        ("nowhere", "x", "m-1"),
        ("acme", "x", "no-such-model"),
        ("acme", "x", "--delete"),
    ):
        with pytest.raises(CommandError):
            call_command("setdeployment", *args, stdout=io.StringIO())


def test_deployments_and_image_models_in_the_admin(cast, model):
    client = Client()
    cast.alice.user.is_staff = cast.alice.user.is_superuser = True
    cast.alice.user.save()
    client.force_login(cast.alice.user)
    added = client.post(
        "/admin/engines/deployment/add/",
        {"organization": cast.alice.organization.pk, "name": "prod", "model": model.pk},
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    assert Deployment.objects.get().name == "prod"
    assert "prod" in client.get("/admin/engines/deployment/").content.decode()
    assert (
        "accepts_images"
        in client.get(f"/admin/engines/servedmodel/{model.pk}/change/").content.decode()
    )


def test_syncmodels_sets_accepts_images(db):
    sync_models(entries=[{"name": "vl", "accepts_images": True, "replicas": []}])
    assert ServedModel.objects.get(name="vl").accepts_images is True
