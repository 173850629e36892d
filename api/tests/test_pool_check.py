"""The pool's check of a connection it lends (api/postgres): no round trip for an idle healthy
connection, the full check (and a replacement) for one the server closed."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from api.postgres.base import check_pooled_connection
from testsupport.live_server import database_url_for_tests

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_pool_uses_it():
    if connection.vendor != "postgresql" or connection.pool is None:
        pytest.skip("PostgreSQL with the pool only")
    assert connection.pool._check is check_pooled_connection


def test_a_healthy_idle_connection_passes_without_a_query(monkeypatch):
    queries = []
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(queries.append))
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        check_pooled_connection(conn)
    assert queries == []  # the kernel had nothing waiting: no round trip


def test_a_connection_the_server_terminated_fails_the_check():
    url = database_url_for_tests()
    with (
        psycopg.connect(url, autocommit=True) as victim,
        psycopg.connect(url, autocommit=True) as admin,
    ):
        pid = victim.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        # Wait until the backend is gone (its message and end of file are on the socket).
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()[0]:
            admin.execute("SELECT pg_sleep(0.01)")
        with pytest.raises(psycopg.OperationalError):
            check_pooled_connection(victim)
