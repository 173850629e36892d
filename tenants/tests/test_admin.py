"""The staff-only admin: key issuing shows the secret once, revoke action, CSRF on."""

from __future__ import annotations

import pytest
from django.test import Client

from tenants.models import ApiKey
from tenants.services.api_keys import api_key_find_active

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(cast) -> Client:
    client = Client()
    cast.alice.user.is_staff = True
    cast.alice.user.is_superuser = True
    cast.alice.user.save()
    client.force_login(cast.alice.user)
    return client


def test_the_admin_is_staff_only(client: Client, cast):
    client.force_login(cast.charlie.user)  # a member, not staff
    response = client.get("/admin/tenants/apikey/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_issuing_a_key_shows_the_secret_once(staff_client: Client, cast):
    response = staff_client.post(
        "/admin/tenants/apikey/add/",
        {
            "organization": cast.alice.organization.pk,
            "project": "",
            "name": "from the admin",
            "kind": "project",
            "scope": "all",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 302  # POST-redirect-GET
    shown = staff_client.get(response["Location"])
    html = shown.content.decode()
    start = html.index('id="api-key-secret"')
    secret = html[start:].split(">", 1)[1].split("<", 1)[0]
    key = api_key_find_active(secret=secret)
    assert key is not None and key.name == "from the admin"
    assert key.created_by == cast.alice.user
    # Reloading the page shows the secret no more, and issues no second key.
    again = staff_client.get(response["Location"]).content.decode()
    assert secret not in again and "already shown" in again
    assert ApiKey.objects.filter(name="from the admin").count() == 1
    # The change page and the list show only the redacted form.
    change = staff_client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert secret not in change
    listing = staff_client.get("/admin/tenants/apikey/").content.decode()
    assert secret not in listing
    assert key.redacted_value in listing


def test_the_revoke_action(staff_client: Client, cast):
    response = staff_client.post(
        "/admin/tenants/apikey/",
        {"action": "revoke_selected", "_selected_action": [cast.charlie.api_key.pk]},
    )
    assert response.status_code == 302
    assert api_key_find_active(secret=cast.charlie.secret) is None
    assert ApiKey.objects.get(pk=cast.alice.api_key.pk).revoked_at is None


def test_admin_posts_need_a_csrf_token(cast):
    client = Client(enforce_csrf_checks=True)
    cast.alice.user.is_staff = True
    cast.alice.user.is_superuser = True
    cast.alice.user.save()
    client.force_login(cast.alice.user)
    response = client.post(
        "/admin/tenants/apikey/",
        {"action": "revoke_selected", "_selected_action": [cast.charlie.api_key.pk]},
    )
    assert response.status_code == 403
    assert api_key_find_active(secret=cast.charlie.secret) is not None


@pytest.mark.parametrize(
    "url",
    [
        "/admin/tenants/organization/",
        "/admin/tenants/project/",
        "/admin/tenants/membership/",
        "/admin/tenants/apikey/",
        "/admin/engines/servedmodel/",
        "/admin/tenants/apikey/add/",
    ],
)
def test_admin_pages_render(staff_client: Client, url):
    assert staff_client.get(url).status_code == 200


def test_creating_an_organization_in_the_admin_makes_a_default_project(staff_client: Client):
    form = staff_client.get("/admin/tenants/organization/add/").content.decode()
    assert 'name="public_id"' not in form and "org_" not in form
    response = staff_client.post(
        "/admin/tenants/organization/add/",
        {
            "name": "Initech",
            "slug": "initech",
            "allowed_service_tiers": ["auto", "default"],
            "tool_output_timeout_seconds": 600,
            "response_retention_days": 30,
            "max_stored_bytes": 1024,
            "max_chain_length": 10,
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
            "projects-TOTAL_FORMS": 0,
            "projects-INITIAL_FORMS": 0,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from tenants.models import Organization

    initech = Organization.objects.get(slug="initech")
    assert initech.allowed_service_tiers == ["auto", "default"]
    assert [p.name for p in initech.projects.all()] == ["Default project"]


def test_admin_issues_admin_keys_and_restricted_permissions_without_json(staff_client, cast):
    response = staff_client.post(
        "/admin/tenants/apikey/add/",
        {
            "organization": cast.alice.organization.pk,
            "project": "",
            "name": "restricted",
            "kind": "project",
            "scope": "restricted",
            "permission_models": "read",
            "permission_responses": "write",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 302
    assert ApiKey.objects.get(name="restricted").permissions == {
        "models": "read",
        "responses": "write",
    }
    staff_client.post(
        "/admin/tenants/apikey/add/",
        {
            "organization": cast.alice.organization.pk,
            "project": "",
            "name": "ops admin",
            "kind": "admin",
            "scope": "all",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert ApiKey.objects.get(name="ops admin").is_admin


def test_the_key_form_has_a_permission_field_per_endpoint_group():
    from tenants.admin import ApiKeyCreateForm
    from tenants.services.api_keys import ENDPOINT_GROUPS

    fields = {name for name in ApiKeyCreateForm.base_fields if name.startswith("permission_")}
    assert fields == {f"permission_{group}" for group in ENDPOINT_GROUPS}
    assert "<endpoint group>" not in str(ApiKey._meta.get_field("permissions").help_text)
