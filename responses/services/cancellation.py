"""Cross-process cancellation of a running generation.

The process that runs a generation is not necessarily the one that receives ``POST …/cancel``.
The cancel request raises a flag in the shared cache (Redis in production; in the embedded default
one web process runs every foreground generation, so its in-process cache is shared enough), and
the running generation checks the flag between deltas and while idle, at most every
``CHECK_INTERVAL_SECONDS``: a cancel takes effect within about that long.

A background response runs in a Celery worker, which shares no cache with the web processes in
the embedded default (an in-process cache): its probe also reads the row's cancel mark and status
every ``DB_CHECK_INTERVAL_SECONDS`` (one indexed query), which also works when Redis lost the flag.
"""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.core.cache import cache

from api.db import db_async

CHECK_INTERVAL_SECONDS = 0.25
DB_CHECK_INTERVAL_SECONDS = 0.5
_FLAG_TTL_SECONDS = 3600


_get_unpinned = sync_to_async(cache.get, thread_sensitive=False)


def _flag_key(response_id: str) -> str:
    return f"response-cancel:{response_id}"


def cancel_request(*, response_id: str) -> None:
    cache.set(_flag_key(response_id), 1, timeout=_FLAG_TTL_SECONDS)


async def cancel_requested(*, response_id: str) -> bool:
    # Not cache.aget: Django runs that on the one thread-sensitive executor thread that every
    # ORM call of this process shares, and with hundreds of streams polling 4×/s the flag checks
    # starved the database work queued behind them. The cache client is thread-safe.
    return bool(await _get_unpinned(_flag_key(response_id)))


class CancellationProbe:
    """Rate-limited checks of the cancel flag for one running generation."""

    def __init__(
        self,
        response_id: str | None,
        *,
        interval: float = CHECK_INTERVAL_SECONDS,
        watch_record_pk: int | None = None,
    ):
        self._response_id = response_id
        self.interval = interval
        self._next_check = time.monotonic() + interval
        self._watch_record_pk = watch_record_pk
        self._next_db_check = time.monotonic() + DB_CHECK_INTERVAL_SECONDS

    async def due_and_cancelled(self) -> bool:
        if self._response_id is None:
            return False
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.interval
        if await cancel_requested(response_id=self._response_id):
            return True
        if self._watch_record_pk is not None and now >= self._next_db_check:
            self._next_db_check = now + DB_CHECK_INTERVAL_SECONDS
            return await db_async(_record_cancelled)(self._watch_record_pk)
        return False


def _record_cancelled(record_pk: int) -> bool:
    from responses.models import StoredResponse

    row = (
        StoredResponse.objects.filter(pk=record_pk)
        .values_list("status", "cancel_requested_at")
        .first()
    )
    if row is None:
        return True  # deleted while running: nobody wants the rest
    status, cancel_requested_at = row
    return cancel_requested_at is not None or status in StoredResponse.TERMINAL
