"""How async code runs ORM work: :func:`db_async`.

Django runs a view's ``sync_to_async`` calls on a thread of the request's own (its per-request
``ThreadSensitiveContext``), and database connections belong to threads. For a streamed response
the request lasts as long as the stream, so every open stream held an OS thread *and* a database
connection, and every request paid a fresh connect (docs/performance.md: ~95 streams per
PostgreSQL at ``max_connections=100``, 6–8 ms per request).

Instead, every ORM call from async code runs on one process-wide executor of
``DATABASE_THREADS`` threads, and the connection is checked before and given back after each
call (to the psycopg pool in production, ``DATABASE_POOL``): an open stream holds no connection,
a request borrows one for the length of a query, and a connection broken by a database restart is
never reused. The same executor also serves work that must finish after its request is gone
(storing a disconnected stream's outcome, settling its quota): Django shuts the request's own
executor down when a cancelled request ends, and work still queued there would never run.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _database_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.DATABASE_THREADS, thread_name_prefix="db"
                )
    return _executor


def db_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``sync_to_async`` for ORM work, on the shared database executor (see the module doc)."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False, executor=_database_executor())


@contextlib.contextmanager
def commit_without_flush_wait(using: str = "default") -> Iterator[None]:
    """Inside ``transaction.atomic``: this transaction's commit does not wait for its WAL flush
    (PostgreSQL's ``synchronous_commit = off``, for this transaction only; a no-op elsewhere).

    For the rows written before a response's first event (its ``in_progress`` row, its ledger
    reservation): a flush costs 3–5 ms on this class of disk, and they are the only thing between
    the request and ``response.created``. What it risks is narrow: a crash *of PostgreSQL itself*
    within ~0.6 s (3 × ``wal_writer_delay``) of the commit loses those rows, never a
    committed-and-flushed one, and never corrupts anything. Final states are committed normally.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
    yield
