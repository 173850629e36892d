"""Shared fixtures: a cast of tenants (healthchecks-style personas) and a live daphne server.

* Alice owns the Acme organization and holds a full-access key;
* Bob is Alice's teammate at Acme with a read-only key, bound to Acme's "Mobile" project;
* Charlie is a stranger from Globex with his own full-access key: whatever belongs to Acme must
  be invisible to him, and the other way round.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent

pytest_plugins = ["engines.testing.fixtures", "tests.compliance_plugin"]


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
    from tenants.tests.factories import (
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url_for_tests() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


class DaphneProcess:
    """A real daphne process serving config.asgi against the test database; ``env`` overrides
    settings for this process only. Tests that use it must commit their data
    (``transactional_db`` / ``transactional_cast``): the server has its own connections."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = REPO_ROOT / ".data" / f"test-daphne-{self.port}.log"

    def start(self) -> DaphneProcess:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "config.asgi:application",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"daphne did not become ready; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no finally, no shutdown hook — a process lost mid-response."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


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
