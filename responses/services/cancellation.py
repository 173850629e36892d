"""Cross-process cancellation of running generations, and the leases of foreground ones.

The process that runs a generation is not necessarily the one that receives ``POST …/cancel``.
The cancel request raises a flag in the shared cache (Redis in production; in the embedded
default one web process runs every foreground generation, so its in-process cache is shared
enough) and, when the generation runs in this very process, wakes it at once.

Each event loop that runs generations has one :class:`_Watcher` task, however many generations it
runs: every ``CHECK_INTERVAL_SECONDS`` it reads the flags of all of them in one ``get_many``
(one Redis round trip per process per tick, not one per stream). It also

* reads, every ``DB_CHECK_INTERVAL_SECONDS``, the rows of background generations (a Celery
  worker shares no cache with the web processes in the embedded default, and the row's cancel
  mark also survives Redis losing the flag): one indexed query for all of them;
* renews, every ``LEASE_SECONDS / 3``, the lease of every stored foreground generation of the
  process in one UPDATE, so that :func:`responses.services.background.responses_sweep` can fail
  the rows of a web process that died mid-stream instead of leaving them ``in_progress``.

A generation registers with :func:`watch` and gets a callback when it is cancelled; it never
polls anything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from core.db import db_async

logger = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 0.25
DB_CHECK_INTERVAL_SECONDS = 0.5
_FLAG_TTL_SECONDS = 3600


def _flag_key(response_id: str) -> str:
    return f"response-cancel:{response_id}"


def cancel_request(*, response_id: str) -> None:
    """Raise the flag every process's watcher reads (sync: call through ``db_async``). With the
    cache down the flag is lost: a background run still sees the row's cancel mark, and the
    cancel endpoint moves a foreground response to ``cancelled`` itself after its grace time."""
    try:
        cache.set(_flag_key(response_id), 1, timeout=_FLAG_TTL_SECONDS)
    except Exception:  # noqa: BLE001 - see the docstring
        logger.warning("cache unavailable; cancel flag of %s not raised", response_id)


def cancel_local(*, response_id: str) -> bool:
    """Wake the generation of ``response_id`` if it runs in this event loop; True if it did."""
    watcher = _watchers.get(asyncio.get_running_loop())
    if watcher is None:
        return False
    return watcher.fire(response_id)


@dataclass
class _Entry:
    on_cancel: Callable[[], None]
    record_pk: int | None
    watch_row: bool
    """Background: also read the row's cancel mark (see the module doc)."""


# The cache client is thread-safe and its pool process-wide (core.cache); not Django's
# thread-sensitive executor, which ORM calls of the request share.
_get_many = sync_to_async(cache.get_many, thread_sensitive=False)

# With Redis, the flags are read from the loop itself (an asyncio client per event loop): a
# tick then costs one MGET, not a hand-off to a thread and back as well, which made an open
# stream cost its process ~4 ms of CPU per second of doing nothing (docs/performance.md).
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)


async def _raised(keys: list[str]) -> list[bool]:
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        flags = await _get_many(keys)
        return [bool(flags.get(key)) for key in keys]
    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = _loop_clients[loop] = redis.asyncio.Redis.from_url(
            # Django's cache has no public accessor for its server list.
            backend._servers[0],  # type: ignore[attr-defined]  # noqa: SLF001
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )
    values = await client.mget([backend.make_and_validate_key(key) for key in keys])
    return [value is not None for value in values]


class _Watcher:
    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.task: asyncio.Task | None = None

    def fire(self, response_id: str) -> bool:
        entry = self.entries.pop(response_id, None)
        if entry is None:
            return False
        try:
            entry.on_cancel()
        except Exception:  # one generation's callback must not stop the watcher
            logger.exception("cancel callback of %s failed", response_id)
        return True

    async def run(self) -> None:
        now = time.monotonic()
        next_db_check = now + DB_CHECK_INTERVAL_SECONDS
        next_lease = now + _lease_seconds() / 3
        while self.entries:
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)
            try:
                await self._check_flags()
                now = time.monotonic()
                if now >= next_db_check:
                    next_db_check = now + DB_CHECK_INTERVAL_SECONDS
                    await self._check_rows()
                if now >= next_lease:
                    next_lease = now + _lease_seconds() / 3
                    await self._renew_leases()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or the database away: try again next tick
                logger.warning("cancel watcher tick failed", exc_info=True)

    async def _check_flags(self) -> None:
        ids = list(self.entries)
        if not ids:
            return
        raised = await _raised([_flag_key(response_id) for response_id in ids])
        for response_id, flag in zip(ids, raised, strict=True):
            if flag:
                self.fire(response_id)

    async def _check_rows(self) -> None:
        watched = {
            e.record_pk: rid
            for rid, e in self.entries.items()
            if e.watch_row and e.record_pk is not None
        }
        if not watched:
            return
        for record_pk in await db_async(_rows_cancelled)(list(watched)):
            self.fire(watched[record_pk])

    async def _renew_leases(self) -> None:
        pks = [e.record_pk for e in self.entries.values() if e.record_pk and not e.watch_row]
        if pks:
            await db_async(foreground_leases_renew)(pks)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def watch(
    *,
    response_id: str,
    record_pk: int | None,
    on_cancel: Callable[[], None],
    watch_row: bool = False,
):
    """Call ``on_cancel`` (once, on this loop) if the response is cancelled while the block
    runs; renew its foreground lease meanwhile."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = _Watcher()
    watcher.entries[response_id] = _Entry(
        on_cancel=on_cancel, record_pk=record_pk, watch_row=watch_row
    )
    task = watcher.task
    if task is None or task.done() or task.cancelling():  # cancelling: the last one just left
        watcher.task = loop.create_task(watcher.run(), name="cancel-watcher")
    try:
        yield
    finally:
        watcher.entries.pop(response_id, None)
        if not watcher.entries and watcher.task is not None and not watcher.task.done():
            watcher.task.cancel()  # nothing left to watch; the next generation starts another


def _lease_seconds() -> float:
    return settings.BACKGROUND_LEASE_SECONDS


def _rows_cancelled(record_pks: list[int]) -> list[int]:
    from responses.models import StoredResponse

    rows = dict(
        (pk, (status, mark))
        for pk, status, mark in StoredResponse.objects.filter(pk__in=record_pks).values_list(
            "pk", "status", "cancel_requested_at"
        )
    )
    cancelled = []
    for pk in record_pks:
        if pk not in rows:
            cancelled.append(pk)  # deleted while running: nobody wants the rest
            continue
        status, mark = rows[pk]
        if mark is not None or status in StoredResponse.TERMINAL:
            cancelled.append(pk)
    return cancelled


def foreground_leases_renew(record_pks: list[int]) -> int:
    from responses.models import StoredResponse

    return StoredResponse.objects.filter(
        pk__in=record_pks, status=StoredResponse.Status.IN_PROGRESS
    ).update(lease_expires_at=timezone.now() + timedelta(seconds=_lease_seconds()))
