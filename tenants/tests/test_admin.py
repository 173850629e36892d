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
            "scope": "all",
            "permissions": "{}",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="api-key-secret"')
    secret = html[start:].split(">", 1)[1].split("<", 1)[0]
    key = api_key_find_active(secret=secret)
    assert key is not None and key.name == "from the admin"
    assert key.created_by == cast.alice.user
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
