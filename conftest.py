"""Shared fixtures: a cast of tenants (healthchecks-style personas), a live daphne server and
fake vLLM replicas (their harnesses live in ``testsupport``).

* Alice owns the Acme organization and holds a full-access key;
* Bob is Alice's teammate at Acme with a read-only key, bound to Acme's "Mobile" project;
* Charlie is a stranger from Globex with his own full-access key: whatever belongs to Acme must
  be invisible to him, and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from testsupport.fixtures import fake_vllm_servers
from testsupport.live_server import DaphneProcess

pytest_plugins = ["testsupport.compliance_plugin"]


@dataclass
class Persona:
    user: object
    organization: object
    api_key: object
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.secret}"}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@dataclass
class Cast:
    alice: Persona
    bob: Persona
    charlie: Persona


def _make_cast() -> Cast:
    from tenants.models import ApiKey, Membership
    from tenants.services.api_keys import api_key_issue
    from testsupport.factories import (
        MembershipFactory,
        OrganizationFactory,
        ProjectFactory,
        UserFactory,
    )

    acme = OrganizationFactory(name="Acme", slug="acme")
    globex = OrganizationFactory(name="Globex", slug="globex")
    ProjectFactory(organization=acme, name="Default project")
    ProjectFactory(organization=globex, name="Default project")
    mobile = ProjectFactory(organization=acme, name="Mobile")
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    charlie = UserFactory(username="charlie")
    MembershipFactory(user=alice, organization=acme, role=Membership.Role.OWNER)
    MembershipFactory(user=bob, organization=acme, role=Membership.Role.MEMBER)
    MembershipFactory(user=charlie, organization=globex, role=Membership.Role.OWNER)
    alice_key = api_key_issue(organization=acme, name="alice", created_by=alice)
    bob_key = api_key_issue(
        organization=acme,
        project=mobile,
        name="bob",
        created_by=bob,
        scope=ApiKey.Scope.READ_ONLY,
    )
    charlie_key = api_key_issue(organization=globex, name="charlie", created_by=charlie)
    return Cast(
        alice=Persona(alice, acme, alice_key.api_key, alice_key.secret),
        bob=Persona(bob, acme, bob_key.api_key, bob_key.secret),
        charlie=Persona(charlie, globex, charlie_key.api_key, charlie_key.secret),
    )


@pytest.fixture
def cast(db) -> Cast:
    return _make_cast()


@pytest.fixture
def transactional_cast(transactional_db) -> Cast:
    return _make_cast()


@pytest.fixture(autouse=True)
def _isolated_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fake_vllm_factory():
    """``make(**FakeVllm options) -> started FakeVllm``; every one is stopped at teardown."""
    with fake_vllm_servers() as make:
        yield make


@pytest.fixture
def fake_vllm(fake_vllm_factory):
    """One started fake vLLM replica (accepts any model name)."""
    return fake_vllm_factory()


@pytest.fixture(scope="session")
def live_daphne(django_db_setup, django_db_blocker):
    """The base URL of a daphne shared by the session (see :class:`DaphneProcess`)."""
    daphne = DaphneProcess().start()
    yield daphne.base_url
    daphne.stop()


@pytest.fixture(scope="session", autouse=True)
def _release_test_database_at_exit(django_db_setup, django_db_blocker):
    """Close connections other threads/processes left open (async tests run ORM code in executor
    threads, servers run in subprocesses) so the test database can be dropped cleanly."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
