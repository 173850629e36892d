"""The live event log of a running background response: written by the worker as events are
produced, read by ``GET /v1/responses/{id}?stream=true[&starting_after=N]`` in any web process.

Two implementations behind one small interface:

* :class:`DatabaseEventLog` (embedded default, no Redis): ``ResponseEvent`` rows, appended in
  batches. The rows are the durable log as well, so ``response_finalize`` only adds the events
  that were not appended yet.
* :class:`RedisEventLog` (``REDIS_URL`` set): one Redis stream per response, entry id
  ``0-<sequence_number + 1>`` so that ``XREAD … 0-<N+1>`` is exactly "after N" and a re-sent
  batch is refused rather than duplicated. Retention is bounded (``MAXLEN`` and a TTL); the
  durable copy is written to the database by ``response_finalize`` at the end.

Readers keep a cursor (the last sequence number they sent) and drop anything at or below it, so
switching between the live log and the database rows never duplicates an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from responses.models import ResponseEvent

logger = logging.getLogger(__name__)


class EventLog(Protocol):
    durable: bool
    """True when an appended event is already in its final (database) home."""

    async def append(self, *, response_pk: int, public_id: str, events: list[dict]) -> None: ...

    async def read(
        self, *, response_pk: int, public_id: str, after: int, wait: float
    ) -> list[dict]:
        """Events with ``sequence_number > after``, oldest first; waits up to ``wait`` seconds
        for the first one when there is none yet."""
        ...

    async def close(self) -> None: ...


def _db_append(response_pk: int, events: list[dict]) -> None:
    ResponseEvent.objects.bulk_create(
        [
            ResponseEvent(response_id=response_pk, sequence_number=e["sequence_number"], data=e)
            for e in events
        ],
        # A retried batch (the same events again) must not fail the whole append.
        ignore_conflicts=True,
    )


def _db_read(response_pk: int, after: int) -> list[dict]:
    rows = ResponseEvent.objects.filter(response_id=response_pk, sequence_number__gt=after)
    return [row.data for row in rows.order_by("sequence_number")[:1000]]


class DatabaseEventLog:
    durable = True

    async def append(self, *, response_pk: int, public_id: str, events: list[dict]) -> None:
        if events:
            await sync_to_async(_db_append)(response_pk, events)

    async def read(
        self, *, response_pk: int, public_id: str, after: int, wait: float
    ) -> list[dict]:
        events = await sync_to_async(_db_read)(response_pk, after)
        if not events and wait > 0:
            await asyncio.sleep(wait)
        return events

    async def close(self) -> None:
        return None


def stream_key(public_id: str) -> str:
    return f"{settings.EVENT_LOG_KEY_PREFIX}:{public_id}"


class RedisEventLog:
    durable = False

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        # One client per log object: the worker runs each task in its own event loop, and a
        # redis.asyncio connection belongs to the loop that opened it.
        self._redis = aioredis.Redis.from_url(url)

    async def append(self, *, response_pk: int, public_id: str, events: list[dict]) -> None:
        if not events:
            return
        key = stream_key(public_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    key,
                    {"e": json.dumps(event, ensure_ascii=False)},
                    id=f"0-{event['sequence_number'] + 1}",
                    maxlen=settings.EVENT_LOG_MAXLEN,
                    approximate=True,
                )
            pipe.expire(key, settings.EVENT_LOG_TTL_SECONDS)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            # "ID … equal or smaller than the target stream top item": already appended.
            if isinstance(result, Exception) and "equal or smaller" not in str(result):
                raise result

    async def read(
        self, *, response_pk: int, public_id: str, after: int, wait: float
    ) -> list[dict]:
        block = int(wait * 1000) if wait > 0 else None
        answer = await self._redis.xread(
            {stream_key(public_id): f"0-{after + 1}"}, count=1000, block=block
        )
        events: list[dict] = []
        for _key, entries in answer or []:
            for _entry_id, fields in entries:
                events.append(json.loads(fields[b"e"]))
        return events

    async def close(self) -> None:
        await self._redis.aclose()


def live_event_log() -> EventLog:
    """The log background responses are written to while they run."""
    if settings.REDIS_URL:
        return RedisEventLog(settings.REDIS_URL)
    return DatabaseEventLog()


def event_log_delete(*, public_ids: list[str]) -> None:
    """Drop live logs of responses that no longer need one (the database rows go with the
    response by cascade)."""
    if not settings.REDIS_URL or not public_ids:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.delete(*[stream_key(public_id) for public_id in public_ids])
    finally:
        client.close()


class EventSink:
    """Batches a generation's events into the live log: deltas are grouped (at most
    ``max_events`` or ``max_delay`` seconds), anything else is flushed at once so a follower
    sees lifecycle events without delay. Keeps the streaming hot path to one write per batch."""

    def __init__(
        self,
        log: EventLog,
        *,
        response_pk: int,
        public_id: str,
        max_events: int = 32,
        max_delay: float = 0.05,
    ) -> None:
        self.log = log
        self._pk = response_pk
        self._public_id = public_id
        self._max_events = max_events
        self._max_delay = max_delay
        self._pending: list[dict] = []
        self._first_at = 0.0
        self.appended: list[dict] = []

    def add(self, event: dict[str, Any]) -> None:
        if not self._pending:
            self._first_at = asyncio.get_running_loop().time()
        self._pending.append(event)

    def due(self) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self._max_events:
            return True
        if not self._pending[-1].get("type", "").endswith(".delta"):
            return True
        return asyncio.get_running_loop().time() - self._first_at >= self._max_delay

    async def flush(self) -> list[dict]:
        batch, self._pending = self._pending, []
        if batch:
            await self.log.append(response_pk=self._pk, public_id=self._public_id, events=batch)
            self.appended.extend(batch)
        return batch
