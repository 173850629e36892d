"""The live event log of a running background response: written by the worker as events are
produced, read by ``GET /v1/responses/{id}?stream=true[&starting_after=N]`` in any web process.

Two implementations behind one small interface:

* :class:`DatabaseEventLog` (embedded default, no Redis): ``ResponseEvent`` rows, appended in
  batches. The rows are the durable log as well, so ``response_finalize`` only adds the events
  that were not appended yet.
* :class:`RedisEventLog` (``REDIS_URL`` set): one Redis stream per response, entry id
  ``0-<sequence_number + 1>`` so that ``XREAD … 0-<N+1>`` is exactly "after N" and a re-sent
  batch is skipped rather than duplicated. Retention is bounded (``MAXLEN`` and a TTL); the
  durable copy is written to the database by ``response_finalize`` at the end.

Readers keep a cursor (the last sequence number they sent) and drop anything at or below it, so
switching between the live log and the database rows never duplicates an event.

The Redis log is a live view, and Redis may restart under it (without persistence the stream is
gone). Neither side lets that end a response:

* the writer (:class:`EventSink`) keeps a batch it could not append and tries again a little
  later; every append checks, atomically in Redis, that the stream still ends with the last event
  this writer appended, and when it does not (the stream was lost) the writer re-sends its whole
  history first, so a follower never sees a gap;
* a reader treats an unreachable Redis as "nothing new yet": the replay loop keeps checking the
  response's status and ends from the database rows once the response is finished.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction

from core.db import db_async
from responses.models import ResponseEvent, StoredResponse

logger = logging.getLogger(__name__)

# A writer that could not reach the live log tries again after this long (the events wait in
# memory; the durable copy in the database does not depend on the live log).
RETRY_SECONDS = 0.5
# A reader that could not reach the live log waits this long before the next attempt.
READ_RETRY_SECONDS = 0.25
_SOCKET_TIMEOUT_SECONDS = 5.0
# Events per Redis call when a whole history is re-sent.
_RESEND_CHUNK = 500


class EventLogUnavailable(Exception):
    """The live log cannot be reached right now (Redis down or restarting)."""


class EventLogLost(Exception):
    """The live log no longer holds the events this writer appended (Redis restarted without
    persistence, or the stream expired): the writer has to re-send its history."""


class EventLog(Protocol):
    durable: bool
    """True when an appended event is already in its final (database) home."""

    async def append(
        self, *, response_pk: int, public_id: str, events: list[dict], after: int | None = None
    ) -> None:
        """Append ``events``; ``after`` is the sequence number of the last event this writer
        appended before (None: unknown/not checked). May raise :class:`EventLogUnavailable`, or
        :class:`EventLogLost` when the log no longer ends with ``after``."""
        ...

    async def read(
        self, *, response_pk: int, public_id: str, after: int, wait: float
    ) -> list[dict]:
        """Events with ``sequence_number > after``, oldest first; waits up to ``wait`` seconds
        for the first one when there is none yet."""
        ...

    async def close(self) -> None: ...


def _db_append(response_pk: int, events: list[dict]) -> None:
    try:
        with transaction.atomic():
            ResponseEvent.objects.bulk_create(
                [
                    ResponseEvent(
                        response_id=response_pk, sequence_number=e["sequence_number"], data=e
                    )
                    for e in events
                ],
                # A retried batch (the same events again) must not fail the whole append.
                ignore_conflicts=True,
            )
    except IntegrityError:
        if StoredResponse.objects.filter(pk=response_pk).exists():
            raise
        # The response was deleted while it ran: nobody can read these events any more, and the
        # generation's cancel watcher stops it at its next look at the row. Failing here would
        # end the run without settling its usage.
        logger.info("response %s was deleted while running; events dropped", response_pk)


def _db_read(response_pk: int, after: int) -> list[dict]:
    rows = ResponseEvent.objects.filter(response_id=response_pk, sequence_number__gt=after)
    return [row.data for row in rows.order_by("sequence_number")[:1000]]


class DatabaseEventLog:
    durable = True

    async def append(
        self, *, response_pk: int, public_id: str, events: list[dict], after: int | None = None
    ) -> None:
        if events:
            await db_async(_db_append)(response_pk, events)

    async def read(
        self, *, response_pk: int, public_id: str, after: int, wait: float
    ) -> list[dict]:
        events = await db_async(_db_read)(response_pk, after)
        if not events and wait > 0:
            await asyncio.sleep(wait)
        return events

    async def close(self) -> None:
        return None


def stream_key(public_id: str) -> str:
    return f"{settings.EVENT_LOG_KEY_PREFIX}:{public_id}"


# Appends events to one response's stream, atomically: refuses (returns -1) when the stream does
# not end with the event the writer appended last (ARGV[1], -1 for none): it was lost, and
# appending now would leave a gap. Events already in the stream (a retried batch) are skipped.
# KEYS[1] the stream; ARGV[1] the writer's last sequence number; ARGV[2] MAXLEN; ARGV[3] TTL;
# then, per event, its sequence number and its JSON.
_APPEND_SCRIPT = """
local top = -1
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  top = tonumber(string.match(last[1][1], '^0%-(%d+)$')) - 1
end
if top < tonumber(ARGV[1]) then
  return -1
end
local added = 0
for i = 4, #ARGV, 2 do
  local sequence = tonumber(ARGV[i])
  if sequence > top then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. (sequence + 1), 'e', ARGV[i + 1])
    top = sequence
    added = added + 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return added
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class RedisEventLog:
    durable = False

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        # One client per log object: the worker runs each task in its own event loop, and a
        # redis.asyncio connection belongs to the loop that opened it.
        # Bounded socket waits: an unreachable Redis must not stall a generation or a reader for
        # the operating system's connect timeout (a blocking XREAD waits far less than this).
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=_SOCKET_TIMEOUT_SECONDS,
            socket_timeout=_SOCKET_TIMEOUT_SECONDS,
        )
        self._append_script = self._redis.register_script(_APPEND_SCRIPT)
        self._read_failures = 0

    async def append(
        self, *, response_pk: int, public_id: str, events: list[dict], after: int | None = None
    ) -> None:
        if not events:
            return
        args: list[Any] = [
            -1 if after is None else after,
            settings.EVENT_LOG_MAXLEN,
            settings.EVENT_LOG_TTL_SECONDS,
        ]
        for event in events:
            args += [event["sequence_number"], json.dumps(event, ensure_ascii=False)]
        try:
            added = await self._append_script(keys=[stream_key(public_id)], args=args)
        except _redis_errors() as exc:
            raise EventLogUnavailable(str(exc)) from exc
        if added == -1:
            raise EventLogLost(public_id)

    async def read(
        self, *, response_pk: int, public_id: str, after: int, wait: float
    ) -> list[dict]:
        block = int(wait * 1000) if wait > 0 else None
        try:
            # RESP2 answers a list of [stream, entries] pairs; redis-py's type covers RESP3 too.
            answer: Any = await self._redis.xread(
                {stream_key(public_id): f"0-{after + 1}"}, count=1000, block=block
            )
        except _redis_errors() as exc:
            # Nothing new as far as this reader can tell: the caller keeps watching the status
            # and, once the response is finished, reads the rest from the database.
            self._read_failures += 1
            if self._read_failures == 1:
                logger.warning("live event log of %s unavailable: %s", public_id, exc)
            await asyncio.sleep(max(wait, READ_RETRY_SECONDS))
            return []
        self._read_failures = 0
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
    sees lifecycle events without delay. Keeps the streaming hot path to one write per batch.

    A live log that cannot be reached does not stop the generation: the batch stays pending and
    is tried again after ``RETRY_SECONDS``; a live log that lost what was appended (Redis
    restarted) gets the whole history again before anything new, so followers see no gap."""

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
        self._retry_at = 0.0
        self.appended: list[dict] = []

    def add(self, event: dict[str, Any] | list[dict[str, Any]]) -> None:
        """One event, or a list of events (a batch from the generation loop)."""
        events = event if isinstance(event, list) else [event]
        if not events:
            return
        if not self._pending:
            self._first_at = asyncio.get_running_loop().time()
        self._pending.extend(events)

    def due(self) -> bool:
        if not self._pending:
            return False
        now = asyncio.get_running_loop().time()
        if now < self._retry_at:
            return False
        if len(self._pending) >= self._max_events:
            return True
        if not self._pending[-1].get("type", "").endswith(".delta"):
            return True
        return now - self._first_at >= self._max_delay

    async def flush(self) -> list[dict]:
        """Append what is pending; returns the events appended now (empty when the live log is
        unavailable: they stay pending)."""
        batch, self._pending = self._pending, []
        if not batch:
            return []
        after = self.appended[-1]["sequence_number"] if self.appended else None
        try:
            try:
                await self.log.append(
                    response_pk=self._pk, public_id=self._public_id, events=batch, after=after
                )
            except EventLogLost:
                logger.warning(
                    "live event log of %s was lost; re-sending %d events",
                    self._public_id,
                    len(self.appended),
                )
                history = self.appended + batch
                for start in range(0, len(history), _RESEND_CHUNK):
                    chunk = history[start : start + _RESEND_CHUNK]
                    await self.log.append(
                        response_pk=self._pk,
                        public_id=self._public_id,
                        events=chunk,
                        after=history[start - 1]["sequence_number"] if start else None,
                    )
        except EventLogUnavailable as exc:
            if not self._retry_at:
                logger.warning("live event log of %s unavailable: %s", self._public_id, exc)
            self._retry_at = asyncio.get_running_loop().time() + RETRY_SECONDS
            self._pending = batch + self._pending
            return []
        self._retry_at = 0.0
        self.appended.extend(batch)
        return batch
