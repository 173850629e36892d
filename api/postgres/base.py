"""PostgreSQL as Django ships it, with a cheaper check of pooled connections.

Django's pool (``OPTIONS["pool"]``) checks every connection it lends with psycopg's
``ConnectionPool.check_connection`` when ``CONN_HEALTH_CHECKS`` is on: a round trip to the
server per checkout, and async code checks a connection out per ORM call (``core.db.db_async``),
eight or so times per streamed response. :func:`check_pooled_connection` asks the kernel first:
an idle connection has nothing to read, while one the server closed (a restart,
``pg_terminate_backend``, a pooler recycling it) has its error message or end of file waiting on
the socket; only then is the full round trip made, and a broken connection is replaced as
before. A connection lost without a trace (a network path gone silent) is caught by neither.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg_pool import ConnectionPool


def check_pooled_connection(conn: Connection) -> None:
    if conn.closed or conn.broken:
        raise ConnectionError("the pooled connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        # Django passes psycopg's check when CONN_HEALTH_CHECKS is on and takes no other.
        # psycopg_pool has no setter for the check once the pool exists.
        if pool is not None and pool._check is ConnectionPool.check_connection:  # noqa: SLF001
            pool._check = check_pooled_connection  # noqa: SLF001
        return pool
