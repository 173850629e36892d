"""Fixtures for the organization admin API: admin keys of Acme and Globex, and SDK clients
holding them."""

from __future__ import annotations

import openai
import pytest

from tenants.models import ApiKey
from tenants.services.api_keys import api_key_issue
from testsupport.sdk_clients import admin_client


@pytest.fixture
def acme_admin(cast):
    """Acme's admin key, issued by Alice (Acme's owner)."""
    issued = api_key_issue(
        organization=cast.alice.organization,
        name="acme admin",
        kind=ApiKey.Kind.ADMIN,
        created_by=cast.alice.user,
    )
    return issued


@pytest.fixture
def admin(acme_admin) -> openai.OpenAI:
    return admin_client(acme_admin.secret)


@pytest.fixture
def globex_admin(cast) -> openai.OpenAI:
    issued = api_key_issue(
        organization=cast.charlie.organization, name="globex admin", kind=ApiKey.Kind.ADMIN
    )
    return admin_client(issued.secret)
