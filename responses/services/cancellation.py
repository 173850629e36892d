"""Cross-process cancellation of running generations, and the leases of foreground ones.

The process that runs a generation is not necessarily the one that receives ``POST …/cancel``.
The cancel request raises a flag in the shared cache (Redis in production; in the embedded
default one web process runs every foreground generation, so its in-process cache is shared
enough), announces it on a Redis channel, and, when the generation runs in this very process,
wakes it at once.

Each event loop that runs generations has one :class:`_Watcher` task, however many generations it
runs. With Redis it is subscribed to the cancel channel and wakes the generation named by a
message at once: an open stream costs nothing while nobody cancels it (it used to cost a read of
every flag four times a second). What a message cannot cover is read from the flags themselves,
all of them in one MGET: right after (re)subscribing (a cancel announced before the subscription
took effect), and every ``FLAG_SWEEP_SECONDS`` while streams are open (a cancel of a response
whose generation had not registered yet; a watcher that was idle notices a new generation within
5 s). Without Redis the flags are read every ``CHECK_INTERVAL_SECONDS``. The watcher
also

* reads, every ``DB_CHECK_INTERVAL_SECONDS``, the rows of background generations (a Celery
  worker shares no cache with the web processes in the embedded default, and the row's cancel
  mark also survives Redis losing the flag): one indexed query for all of them;
* renews, every ``LEASE_SECONDS / 3``, the lease of every stored foreground generation of the
  process in one UPDATE, so that :func:`responses.services.background.responses_sweep` can fail
  the rows of a web process that died mid-stream instead of leaving them ``in_progress``.

It stays subscribed for ``IDLE_SECONDS`` after its last generation ends, so that back-to-back
requests do not subscribe afresh each time. A generation registers with :func:`watch` and gets a
callback when it is cancelled; it never polls anything itself.
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

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

from core.cache import default_cache_is_redis, loop_redis, redis_key, sync_redis
from core.db import db_async

logger = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 0.25
FLAG_SWEEP_SECONDS = 1.0
DB_CHECK_INTERVAL_SECONDS = 0.5
IDLE_SECONDS = 30.0
_FLAG_TTL_SECONDS = 3600


def _flag_key(response_id: str) -> str:
    return f"response-cancel:{response_id}"


def _channel() -> str:
    # Channels are not scoped by Redis database: the cache's key prefix and its database
    # number keep deployments (and test runs) sharing one Redis apart.
    client = caches["default"]._cache.get_client()  # type: ignore[attr-defined]  # noqa: SLF001
    database = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{redis_key('response-cancel')}:{database}"


def cancel_request(*, response_id: str) -> None:
    """Raise the flag every process's watcher reads and announce it (sync: call through
    ``db_async``). With the cache down the flag is lost: a background run still sees the row's
    cancel mark, and the cancel endpoint moves a foreground response to ``cancelled`` itself
    after its grace time."""
    try:
        cache.set(_flag_key(response_id), 1, timeout=_FLAG_TTL_SECONDS)
        if default_cache_is_redis():
            sync_redis().publish(_channel(), response_id)
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


# Another cache than Redis or the in-process one may block: read it from a thread (not Django's
# thread-sensitive executor, which ORM calls of the request share).
_get_many = sync_to_async(cache.get_many, thread_sensitive=False)


async def _raised(keys: list[str]) -> list[bool]:
    backend = caches["default"]
    if default_cache_is_redis():
        values = await loop_redis().mget([redis_key(key) for key in keys])
        return [value is not None for value in values]
    # The in-process cache is a dict behind a lock: read it right here.
    flags = backend.get_many(keys) if isinstance(backend, LocMemCache) else await _get_many(keys)
    return [bool(flags.get(key)) for key in keys]


class _Watcher:
    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.task: asyncio.Task | None = None
        self.registered = asyncio.Event()
        """Set by :func:`watch`: an idle watcher has work again."""

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
        pubsub = None
        now = time.monotonic()
        next_subscribe = next_sweep = now
        next_db_check = now + DB_CHECK_INTERVAL_SECONDS
        next_lease = now + _lease_seconds() / 3
        idle_until: float | None = None
        try:
            while True:
                now = time.monotonic()
                if self.entries:
                    idle_until = None
                elif idle_until is None:
                    idle_until = now + IDLE_SECONDS
                elif now >= idle_until:
                    return
                if pubsub is None and now >= next_subscribe and default_cache_is_redis():
                    pubsub = await _attempt(_subscribe(), "subscribing to cancels")
                    if pubsub is None:
                        next_subscribe = now + 1.0  # flags are polled meanwhile
                    else:
                        next_sweep = now  # what was announced before the subscription
                # Each job on its own: Redis away must not stop the leases, nor the database
                # the flags.
                if self.entries and now >= next_sweep:
                    next_sweep = now + (
                        FLAG_SWEEP_SECONDS if pubsub is not None else CHECK_INTERVAL_SECONDS
                    )
                    await _attempt(self._check_flags(), "reading cancel flags")
                if now >= next_db_check:
                    next_db_check = now + DB_CHECK_INTERVAL_SECONDS
                    await _attempt(self._check_rows(), "reading background rows")
                if now >= next_lease:
                    next_lease = now + _lease_seconds() / 3
                    await _attempt(self._renew_leases(), "renewing leases")
                # Wake only for what is due: nothing while idle but the end of it, and with
                # streams open but nobody cancelling, once per sweep.
                due = [next_lease]
                if self.entries:
                    due.append(next_sweep)
                else:
                    due.append(idle_until or now)
                if any(entry.watch_row for entry in self.entries.values()):
                    due.append(next_db_check)
                wait = max(min(due) - time.monotonic(), 0.0)
                if pubsub is None:
                    await self._idle(wait)
                    continue
                # Streams open: at least once a sweep interval. Idle: a generation that
                # registers meanwhile needs nothing before its first sweep is due.
                cap = FLAG_SWEEP_SECONDS if self.entries else 5.0
                if not await _attempt(self._listen(pubsub, min(wait, cap)), "listening", False):
                    await _close(pubsub)
                    pubsub = None
        finally:
            if pubsub is not None:
                await asyncio.shield(_close(pubsub))

    async def _idle(self, seconds: float) -> None:
        """Without the channel: the next tick, or while nothing is watched, a registration."""
        if self.entries:
            await asyncio.sleep(min(seconds, CHECK_INTERVAL_SECONDS))
            return
        self.registered.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.registered.wait()

    async def _listen(self, pubsub, seconds: float) -> bool:
        """Fire what the channel announces during ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                self.fire(message["data"].decode())

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


async def _attempt(work, what: str, failed=None):
    """``work``'s result, or ``failed`` (logged) if Redis or the database was away."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.warning("cancel watcher: %s failed", what, exc_info=True)
        return failed


async def _subscribe():
    """A subscription to the cancel channel, once Redis has confirmed it."""
    pubsub = loop_redis().pubsub()
    try:
        await pubsub.subscribe(_channel())
        async with asyncio.timeout(5.0):
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "subscribe":
                    return pubsub
    except BaseException:
        await asyncio.shield(_close(pubsub))
        raise


async def _close(pubsub) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()


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
    watcher.registered.set()
    task = watcher.task
    if task is None or task.done():
        watcher.task = loop.create_task(watcher.run(), name="cancel-watcher")
    try:
        yield
    finally:
        watcher.entries.pop(response_id, None)


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
