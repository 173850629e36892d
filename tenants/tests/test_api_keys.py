"""API keys: format, storage (digest only), verification, revocation, last use."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from tenants.models import ApiKey
from tenants.services import api_keys
from tenants.services.api_keys import (
    api_key_find_active,
    api_key_issue,
    api_key_revoke,
    generate_secret,
    is_well_formed,
)

KEY_RE = re.compile(r"^sk-rp-[0-9A-Za-z]{49}$")


def test_generated_keys_have_the_format_and_a_valid_checksum():
    seen = set()
    for _ in range(10_000):
        secret = generate_secret()
        assert KEY_RE.match(secret)
        assert is_well_formed(secret)
        seen.add(secret)
    assert len(seen) == 10_000


def test_a_single_changed_character_fails_the_checksum():
    secret = generate_secret()
    index = 20
    flipped = secret[:index] + ("A" if secret[index] != "A" else "B") + secret[index + 1 :]
    assert not is_well_formed(flipped)


def test_malformed_keys_never_reach_the_database(django_assert_num_queries, db):
    with django_assert_num_queries(0):
        assert api_key_find_active(secret="sk-nope") is None
        assert api_key_find_active(secret=generate_secret()[:-1] + "!") is None


@pytest.mark.django_db
def test_only_prefix_last_four_and_digest_are_stored(cast):
    issued = api_key_issue(organization=cast.alice.organization, name="dump me")
    row = ApiKey.objects.get(pk=issued.api_key.pk)
    assert row.prefix == issued.secret[:12]
    assert row.last_four == issued.secret[-4:]
    assert len(row.digest) == 64 and issued.secret not in row.digest
    # No column of any table holds the plaintext (a "grep of the dump").
    secret_body = issued.secret[12:-4]
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            for record in cursor.fetchall():
                assert all(secret_body not in str(value) for value in record), table


@pytest.mark.django_db
def test_the_digest_depends_on_the_pepper(cast, settings):
    issued = api_key_issue(organization=cast.alice.organization, name="pepper")
    assert api_key_find_active(secret=issued.secret) is not None
    settings.API_KEY_PEPPER = "another-pepper"
    assert api_key_find_active(secret=issued.secret) is None


@pytest.mark.django_db
def test_revoked_and_expired_keys_are_not_active(cast):
    issued = api_key_issue(
        organization=cast.alice.organization,
        name="short",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert api_key_find_active(secret=issued.secret) is not None
    assert api_key_revoke(api_key=issued.api_key) is True
    assert api_key_revoke(api_key=issued.api_key) is False
    assert api_key_find_active(secret=issued.secret) is None
    expired = api_key_issue(
        organization=cast.alice.organization,
        name="old",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert api_key_find_active(secret=expired.secret) is None


@pytest.mark.django_db
def test_a_project_from_another_organization_is_refused(cast):
    foreign = cast.charlie.organization.projects.first()
    with pytest.raises(ValueError):
        api_key_issue(organization=cast.alice.organization, project=foreign, name="bad")


@pytest.mark.django_db
def test_last_use_is_recorded_without_a_write_per_request(
    client: Client, cast, django_assert_num_queries
):
    assert cast.alice.api_key.last_used_at is None
    client.get("/v1/models", **cast.alice.auth)
    cast.alice.api_key.refresh_from_db()
    first_use = cast.alice.api_key.last_used_at
    assert first_use is not None
    # Later requests in the same interval do not write: the update count stays at zero.
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(conn) as queries:
        for _ in range(5):
            client.get("/v1/models", **cast.alice.auth)
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    cast.alice.api_key.refresh_from_db()
    assert cast.alice.api_key.last_used_at == first_use


@pytest.mark.django_db
def test_restricted_permissions_are_validated(cast):
    with pytest.raises(ValueError):
        api_key_issue(
            organization=cast.alice.organization,
            name="bad",
            scope=ApiKey.Scope.RESTRICTED,
            permissions={"billing": "write"},
        )
    with pytest.raises(ValueError):
        api_key_issue(
            organization=cast.alice.organization,
            name="bad",
            scope=ApiKey.Scope.RESTRICTED,
            permissions={"responses": "admin"},
        )


@pytest.mark.parametrize(
    ("scope", "permissions", "group", "write", "allowed"),
    [
        ("all", {}, "responses", True, True),
        ("read_only", {}, "responses", False, True),
        ("read_only", {}, "responses", True, False),
        ("restricted", {"responses": "read"}, "responses", False, True),
        ("restricted", {"responses": "read"}, "responses", True, False),
        ("restricted", {"responses": "write"}, "responses", False, True),
        ("restricted", {"responses": "write"}, "models", False, False),
    ],
)
def test_scope_rules(scope, permissions, group, write, allowed):
    key = ApiKey(scope=scope, permissions=permissions)
    assert api_keys.key_allows(api_key=key, group=group, write=write) is allowed
