"""Background mode (``background: true``): accept now, generate in a Celery worker.

* :func:`background_record_create` stores the row ``queued`` with what the worker needs to
  rebuild the generation, and enqueues the run only once that row is committed (a worker must
  never look for a row that is not there yet).
* :func:`background_run` (in the worker) claims the row ``queued → in_progress`` with a
  conditional update (a redelivered task, or one whose response was cancelled while queued,
  finds nothing to claim and stops), runs the ordinary :func:`generate_events` loop, writes the
  events to the live event log as they come, and renews a lease while it runs.
* :func:`background_sweep` (periodic, under beat) fails rows whose lease ran out: their worker
  died (``kill -9``, OOM, node lost) and will never finish them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.db import commit_without_flush_wait, db_async
from core.errors import ServiceUnavailable, queue_outage, retry_after_headers
from engines.runtime.registry import aclose_engines, get_engine
from engines.runtime.types import GenerationRequest
from responses.models import ResponseEvent, StoredResponse
from responses.services import lifecycle
from responses.services.encrypted_reasoning import reasoning_encrypt
from responses.services.event_log import EventSink, live_event_log, stream_key
from responses.services.generation import KEEPALIVE, Generation, generate_events
from responses.streaming import events as ev
from responses.streaming.builder import StreamBuilder
from responses.streaming.objects import ResponseEcho

logger = logging.getLogger(__name__)

Status = StoredResponse.Status

WORKER_LOST_MESSAGE = "The worker running this background response stopped before it finished."
SERVER_LOST_MESSAGE = "The server streaming this response stopped before it finished."
# The worker is not streaming to anyone: keep-alive markers only pace the batching of the log.
_WORKER_TICK_SECONDS = 0.2


def background_job(
    *,
    engine_request: GenerationRequest,
    echo: ResponseEcho,
    builder: StreamBuilder,
    include_logprobs: bool,
    reasoning_summary: bool,
    encrypt_reasoning_for: str | None = None,
    announce_encrypted_reasoning: bool = False,
) -> dict[str, Any]:
    """``encrypt_reasoning_for``: the organization the worker binds the reasoning items'
    ``encrypted_content`` to, or None; ``announce_encrypted_reasoning``: also emit
    ``response.additional_context`` (the creating request spoke the legacy dialect)."""
    return {
        "encrypt_reasoning_for": encrypt_reasoning_for,
        "announce_encrypted_reasoning": announce_encrypted_reasoning,
        "engine_request": dataclasses.asdict(engine_request),
        "echo": dataclasses.asdict(echo),
        "created_at": builder.created_at,
        "include_logprobs": include_logprobs,
        "reasoning_summary": reasoning_summary,
    }


def background_record_create(*, job: dict[str, Any], **fields: Any) -> StoredResponse:
    """The ``queued`` row (``fields``: those of ``lifecycle.response_record_create``, ``also``
    included), then the run handed to a worker once it is committed."""
    from responses.tasks import response_run_task

    with transaction.atomic(), commit_without_flush_wait():
        record = lifecycle.response_record_create(
            **fields,
            background_job=job,
            # A queued row whose task message was lost (broker restarted) is failed by the
            # sweeper after this long instead of waiting forever.
            lease_expires_at=timezone.now()
            + timedelta(seconds=settings.BACKGROUND_QUEUED_TIMEOUT_SECONDS),
        )
    # Enqueued only once the row is committed: a worker must never look for a row that is not
    # there yet. (Inside a caller's transaction, e.g. a test's, that means on its commit.)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _enqueue(record, response_run_task), robust=True)
    else:
        _enqueue(record, response_run_task)
    return record


QUEUE_UNAVAILABLE_MESSAGE = "The background queue was unavailable; the response was not started."


def _enqueue(record: StoredResponse, task) -> None:
    """Hand the run to a worker. The broker unreachable: the row is failed at once (not left
    ``queued`` until the queued timeout) and the client gets a 503 it may retry."""
    try:
        task.delay(record.pk)
    except Exception as exc:  # kombu raises several kinds for a lost broker
        logger.warning("could not enqueue background response %s: %s", record.public_id, exc)
        body = dict(
            record.body,
            status=Status.FAILED,
            error={"code": "server_error", "message": QUEUE_UNAVAILABLE_MESSAGE},
        )
        with contextlib.suppress(lifecycle.TransitionRefused):
            lifecycle.response_transition(
                response_pk=record.pk, from_status=Status.QUEUED, to_status=Status.FAILED, body=body
            )
        raise ServiceUnavailable(
            "The background queue is unavailable right now; retry the request.",
            headers=retry_after_headers(queue_outage.failed()),
        ) from exc


async def background_follow(
    *, response_pk: int, keepalive_seconds: float
) -> AsyncGenerator[dict | None, None]:
    """The events of a just-accepted background response as its worker produces them."""
    from responses.services.stored import response_replay

    record = await db_async(StoredResponse.objects.get)(pk=response_pk)
    async with contextlib.aclosing(
        response_replay(response=record, starting_after=None, keepalive_seconds=keepalive_seconds)
    ) as events:
        async for item in events:
            yield item


# --- the worker side -------------------------------------------------------------------------


def _load(response_pk: int) -> StoredResponse | None:
    return StoredResponse.objects.filter(pk=response_pk).first()


def _renew_lease(response_pk: int, body: dict[str, Any] | None) -> int:
    changes: dict[str, Any] = {
        "lease_expires_at": timezone.now() + timedelta(seconds=settings.BACKGROUND_LEASE_SECONDS)
    }
    if body is not None:
        changes["body"] = body  # progress for GET while it runs
    return StoredResponse.objects.filter(pk=response_pk, status=Status.IN_PROGRESS).update(
        **changes
    )


async def _keep_lease(generation: Generation) -> None:
    assert generation.record_pk is not None  # a background response is always stored
    while True:
        await asyncio.sleep(settings.BACKGROUND_LEASE_SECONDS / 3)
        builder = generation.builder
        body = None if builder.closed else builder.snapshot() | {"status": "in_progress"}
        await db_async(_renew_lease)(generation.record_pk, body)


def _generation_from_job(record: StoredResponse, engine) -> Generation:
    job = record.background_job
    assert job is not None  # the row was created as a background job
    builder = StreamBuilder(
        echo=ResponseEcho(**job["echo"]),
        response_id=record.public_id,
        created_at=job["created_at"],
        include_logprobs=job["include_logprobs"],
        reasoning_summary=job["reasoning_summary"],
        encrypt_reasoning=_encryptor(job.get("encrypt_reasoning_for")),
        announce_encrypted_reasoning=bool(job.get("announce_encrypted_reasoning")),
    )
    return Generation(
        engine=engine,
        engine_request=GenerationRequest(**job["engine_request"]),
        builder=builder,
        record_pk=record.pk,
        record_links=(record.organization_id, record.previous_response_id),
        reasoning_summary=job["reasoning_summary"],
        keepalive_seconds=_WORKER_TICK_SECONDS,
        queued=True,
        background=True,
    )


def _encryptor(organization_id: str | None):
    if organization_id is None:
        return None
    return lambda item_id, text, summary: reasoning_encrypt(
        organization_id=organization_id, item_id=item_id, text=text, summary=summary
    )


def _fail_unstartable(record: StoredResponse, message: str) -> None:
    body = dict(
        record.body, status=Status.FAILED, error={"code": "server_error", "message": message}
    )
    try:
        lifecycle.response_transition(
            response_pk=record.pk, from_status=Status.QUEUED, to_status=Status.FAILED, body=body
        )
    except lifecycle.TransitionRefused:
        pass


async def background_run(*, response_pk: int) -> None:
    try:
        await _run(response_pk)
    finally:
        await aclose_engines()


async def _run(response_pk: int) -> None:
    record = await db_async(_load)(response_pk)
    if record is None or record.status != Status.QUEUED or not record.background_job:
        return  # deleted, cancelled while queued, or a redelivered message: nothing to do
    try:
        engine = await get_engine(record.background_job["engine_request"]["model"])
    except LookupError:
        await db_async(_fail_unstartable)(record, "The model is no longer available.")
        return
    generation = _generation_from_job(record, engine)
    try:
        await db_async(lifecycle.response_transition)(
            response_pk=record.pk,
            from_status=Status.QUEUED,
            to_status=Status.IN_PROGRESS,
            body=generation.builder.snapshot() | {"status": "in_progress"},
        )
    except lifecycle.TransitionRefused:
        return  # cancelled (or claimed by another delivery) in the meantime
    await db_async(_renew_lease)(record.pk, None)
    log = live_event_log()
    sink = EventSink(log, response_pk=record.pk, public_id=record.public_id)
    lease = asyncio.create_task(_keep_lease(generation))
    try:
        # aclosing: if anything here fails, the generation's own finally (settling its usage,
        # storing its outcome) still runs now, not whenever the garbage collector finds it.
        async with contextlib.aclosing(generate_events(generation)) as batches:
            async for batch in batches:
                if batch is not KEEPALIVE:
                    for event in batch:
                        sink.add(event)
                if sink.due():
                    batch = await sink.flush()
                    if log.durable:
                        # Already in the database: response_finalize stores only the rest.
                        del generation.events[: len(batch)]
        # generate_events' finally stored the outcome with every event not flushed yet; a
        # live log that is not the database still needs the tail for its followers.
        if not log.durable:
            await sink.flush()
    finally:
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await lease
        await log.close()


# --- the sweeper -----------------------------------------------------------------------------


def _live_events(public_id: str) -> list[dict]:
    if not settings.REDIS_URL:
        return []
    import json

    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        # redis-py types every stream entry as possibly empty; XRANGE answers whole entries.
        entries = client.xrange(stream_key(public_id))
        return [json.loads(fields[b"e"]) for _id, fields in entries]  # type: ignore[index,union-attr]
    finally:
        client.close()


def _fail_abandoned(row: StoredResponse) -> bool:
    """One abandoned row → ``failed``, with its event log made durable and closed by an
    ``error`` and a ``response.failed`` event, so a follower ends like any failed stream."""
    message = WORKER_LOST_MESSAGE if row.background else SERVER_LOST_MESSAGE
    error = {"code": "server_error", "message": message}
    body = dict(row.body, status=Status.FAILED, error=error)
    live = _live_events(row.public_id) if row.background else []
    with transaction.atomic():
        try:
            lifecycle.response_transition(
                response_pk=row.pk, from_status=row.status, to_status=Status.FAILED, body=body
            )
        except lifecycle.TransitionRefused:
            return False  # it finished (or was cancelled) after all
        ResponseEvent.objects.bulk_create(
            [
                ResponseEvent(response_id=row.pk, sequence_number=e["sequence_number"], data=e)
                for e in live
            ],
            ignore_conflicts=True,
        )
        last = (
            ResponseEvent.objects.filter(response_id=row.pk)
            .order_by("-sequence_number")
            .values_list("sequence_number", flat=True)
            .first()
        )
        # Always closed by an error and response.failed, so a reader's stream ends like any
        # failed one; a run that never got to write anything also gets its response.created.
        opening = (
            [] if last is not None else [ev.response_created(dict(row.body, status=row.status))]
        )
        closing = [ev.error(code="server_error", message=message), ev.response_failed(body)]
        first = 0 if last is None else last + 1
        tail = [
            event | {"sequence_number": first + offset}
            for offset, event in enumerate(opening + closing)
        ]
        lifecycle.events_store(response_pk=row.pk, events=tail)
    return True


def background_sweep(*, limit: int = 500) -> int:
    """Fail responses whose lease expired: background ones whose worker died, and foreground
    ones whose web process died mid-stream (their lease is renewed by the process's cancel
    watcher). Returns how many. Safe to run concurrently with itself and with live workers
    (every change is a conditional update)."""
    stale = StoredResponse.objects.filter(
        status__in=[Status.QUEUED, Status.IN_PROGRESS],
        lease_expires_at__lt=timezone.now(),
    ).order_by("lease_expires_at")[:limit]
    failed = 0
    for row in stale:
        if _fail_abandoned(row):
            logger.warning("response %s abandoned by its process: failed", row.public_id)
            failed += 1
    return failed
