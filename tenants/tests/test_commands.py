"""The tenant management commands, driven with call_command."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants.models import ApiKey, Organization
from tenants.services.api_keys import api_key_find_active

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_createorg_creates_an_organization_with_a_default_project():
    data = json.loads(run("createorg", "Initech", "--slug", "initech", "--json"))
    organization = Organization.objects.get(public_id=data["id"])
    assert organization.slug == "initech"
    assert organization.projects.get().public_id == data["default_project"]


def test_createorg_refuses_a_duplicate_slug():
    run("createorg", "Initech", "--slug", "initech")
    with pytest.raises(CommandError):
        run("createorg", "Initech again", "--slug", "initech")


def test_createapikey_prints_a_working_secret_once():
    run("createorg", "Initech", "--slug", "initech")
    data = json.loads(run("createapikey", "--org", "initech", "--name", "ci", "--json"))
    assert data["secret"].startswith("sk-rp-")
    assert api_key_find_active(secret=data["secret"]).public_id == data["id"]
    listing = run("listapikeys", "--org", "initech", "--json")
    assert data["secret"] not in listing
    assert json.loads(listing)[0]["redacted_value"].endswith(data["secret"][-4:])


def test_createapikey_with_restricted_scope_and_expiry():
    run("createorg", "Initech", "--slug", "initech")
    data = json.loads(
        run(
            "createapikey",
            "--org",
            "initech",
            "--scope",
            "restricted",
            "--permission",
            "responses=write",
            "--expires-in-days",
            "7",
            "--json",
        )
    )
    assert data["permissions"] == {"responses": "write"}
    assert data["expires_at"] is not None


def test_createapikey_errors_clearly():
    with pytest.raises(CommandError, match="No organization"):
        run("createapikey", "--org", "nope")
    run("createorg", "Initech", "--slug", "initech")
    with pytest.raises(CommandError, match="Unknown endpoint group"):
        run("createapikey", "--org", "initech", "--scope", "restricted", "--permission", "x=read")


def test_revokeapikey_by_id_and_prefix():
    run("createorg", "Initech", "--slug", "initech")
    first = json.loads(run("createapikey", "--org", "initech", "--json"))
    second = json.loads(run("createapikey", "--org", "initech", "--json"))
    assert "Revoked" in run("revokeapikey", first["id"])
    assert "already revoked" in run("revokeapikey", first["id"])
    assert "Revoked" in run("revokeapikey", second["secret"][:12])
    assert api_key_find_active(secret=first["secret"]) is None
    assert api_key_find_active(secret=second["secret"]) is None
    with pytest.raises(CommandError):
        run("revokeapikey", "key_doesnotexist")


def test_listapikeys_table_never_shows_secrets():
    run("createorg", "Initech", "--slug", "initech")
    data = json.loads(run("createapikey", "--org", "initech", "--json"))
    table = run("listapikeys")
    assert data["id"] in table
    assert data["secret"] not in table
    assert "active" in table


def test_bootstrap_is_idempotent():
    first = run("bootstrap")
    secret = next(word for word in first.split() if word.startswith("sk-rp-"))
    assert api_key_find_active(secret=secret) is not None
    second = run("bootstrap")
    assert "already issued" in second
    assert secret not in second
    assert Organization.objects.filter(slug="demo").count() == 1
    assert ApiKey.objects.filter(organization__slug="demo").count() == 1
    third = run("bootstrap", "--new-key")
    assert "sk-rp-" in third
    assert ApiKey.objects.filter(organization__slug="demo").count() == 2


@pytest.mark.compliance("L3")
def test_setdialect_sets_and_clears_the_organization_default(cast):
    call_command("setdialect", "acme", "open-responses", stdout=StringIO())
    cast.alice.organization.refresh_from_db()
    assert cast.alice.organization.stream_dialect == "open-responses"
    call_command("setdialect", "acme", "default", stdout=StringIO())
    cast.alice.organization.refresh_from_db()
    assert cast.alice.organization.stream_dialect == ""
    with pytest.raises(CommandError):
        call_command("setdialect", "nowhere", "legacy", stdout=StringIO())
