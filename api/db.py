"""Running ORM work outside the request's thread-sensitive executor."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def after_request(func: Callable[..., Any]):
    """``sync_to_async`` for work that must finish after the request is gone (storing the outcome
    of a disconnected stream, settling its quota, the row write a cancelled request started).

    Not the request's thread-sensitive executor: Django shuts that one down when a cancelled
    request ends, and work still queued there never runs. The shared executor's threads outlive
    requests, so the connection is checked before and closed after each call, as Django does
    around a request: a connection broken by a database restart is never reused, and idle
    threads hold no connection.
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)
