"""Running one generation: engine deltas → numbered stream events, keep-alives, cancellation,
failure and disconnect handling, and storing the outcome.

``generate_events`` is the single loop both the JSON and the SSE paths consume (and, later, the
background worker). It is organised as a producer task that owns the engine stream and a consumer
(this generator) that waits on a small bounded queue:

* the queue wait has a timeout, so the consumer can send keep-alives while the engine is silent
  (L4) and notice a cancel flag (R4) without ever cancelling the engine's own ``await``;
* when the consumer goes away (the client disconnected, E5), ``finally`` cancels the producer,
  whose ``aclosing`` closes the engine stream and so the HTTP request to vLLM;
* the outcome (completed, incomplete, failed, cancelled) is stored under ``asyncio.shield`` so a
  second cancellation cannot lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from api.db import db_async
from engines.runtime.types import (
    Engine,
    EngineError,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
)
from quotas.services.admission import Reservation, quota_events, quota_settle_start
from responses.services import lifecycle
from responses.services.cancellation import CancellationProbe
from responses.streaming.builder import StreamBuilder

logger = logging.getLogger(__name__)

KEEPALIVE = object()
"""Yielded instead of an event when nothing happened for ``keepalive_seconds``."""

_END = object()
_QUEUE_SIZE = 64  # bounded: a slow client backs up into vLLM, not into our memory (E8)

SUMMARY_INSTRUCTIONS = (
    "Summarize the reasoning below for the user in one to three short sentences. "
    "Describe the approach, not every step."
)


class _Cancelled(Exception):
    pass


@dataclass
class Generation:
    engine: Engine
    engine_request: GenerationRequest
    builder: StreamBuilder
    record_pk: int | None
    """The StoredResponse row to finalize, or None when ``store`` is false."""
    reasoning_summary: bool = False
    keepalive_seconds: float = 15.0
    queued: bool = False
    background: bool = False
    """Run by a Celery worker: cancellation is also watched through the database row."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Every event emitted, kept only when the response is stored (for replay, L6)."""
    started: bool = False
    """Set when generate_events begins; a prepared generation that never starts (its client
    left first) is closed by :func:`generation_abandon` instead."""
    engine_error: EngineError | None = None
    """Why the generation failed, for the non-streaming answer's HTTP status."""
    reservation: Reservation | None = None
    """What quota admission reserved (issue 6); settled once in generate_events' finally."""

    @property
    def response_id(self) -> str:
        return self.builder.response_id


async def _produce(
    engine: Engine, request: GenerationRequest, queue: asyncio.Queue
) -> None:
    try:
        async with contextlib.aclosing(engine.stream(request)) as stream:
            async for delta in stream:
                await queue.put(delta)
        await queue.put(_END)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the consumer, which reports it
        await queue.put(exc)


async def _deltas(
    generation: Generation, request: GenerationRequest, probe: CancellationProbe
) -> AsyncIterator[object]:
    """Deltas of one engine call, interleaved with KEEPALIVE; raises _Cancelled or the
    producer's exception."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=_QUEUE_SIZE)
    producer = asyncio.create_task(_produce(generation.engine, request, queue))
    loop = asyncio.get_running_loop()
    last_activity = loop.time()
    try:
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows the task's cancellation when
                # the get completes in the same loop turn, and a disconnected stream then runs on.
                async with asyncio.timeout(probe.interval):
                    item = await queue.get()
            except TimeoutError:
                if await probe.due_and_cancelled():
                    raise _Cancelled() from None
                if loop.time() - last_activity >= generation.keepalive_seconds:
                    last_activity = loop.time()
                    yield KEEPALIVE
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            last_activity = loop.time()
            yield item
            if await probe.due_and_cancelled():
                raise _Cancelled()
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer


async def generate_events(generation: Generation) -> AsyncIterator[object]:
    """Events (dicts) and KEEPALIVE markers for one response, start to terminal event."""
    generation.started = True
    builder = generation.builder
    probe = CancellationProbe(
        generation.response_id if generation.record_pk else None,
        watch_record_pk=generation.record_pk if generation.background else None,
    )
    outcome: str | None = None  # None = the stream reached a terminal event by itself
    reasoning_text: list[str] = []

    def record(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if generation.record_pk is not None:
            generation.events.extend(events)
        return events

    try:
        for event in record(builder.start(queued=generation.queued)):
            yield event
        # H5 (quotas): remaining requests/tokens after admission, only for clients that opted
        # in; stamped by the builder but not recorded (a replay must stay OpenAI's stream).
        for event in quota_events(generation.reservation, builder):
            yield event
        try:
            # aclosing: when this generator is closed at a yield (client gone), the inner one
            # must be closed now, not whenever the garbage collector finds it — its finally is
            # what cancels the producer and so the upstream request.
            async with contextlib.aclosing(
                _deltas(generation, generation.engine_request, probe)
            ) as deltas:
                async for delta in deltas:
                    if delta is KEEPALIVE:
                        yield KEEPALIVE
                        continue
                    if isinstance(delta, ReasoningDelta):
                        reasoning_text.append(delta.text)
                    for event in record(builder.feed(delta)):
                        yield event
            if generation.reasoning_summary and reasoning_text:
                async with contextlib.aclosing(
                    _summarize(generation, "".join(reasoning_text), probe, record)
                ) as summary:
                    async for item in summary:
                        yield item
            for event in record(builder.finish()):
                yield event
        except EngineError as error:
            generation.engine_error = error
            logger.warning("engine failed for %s: %s", generation.response_id, error.message)
            for event in record(builder.fail(error.code, error.message)):
                yield event
    except _Cancelled:
        outcome = "cancelled"
    except (asyncio.CancelledError, GeneratorExit):
        outcome = "disconnect"
        raise
    except Exception:
        logger.exception("generation %s failed", generation.response_id)
        if not builder.closed:
            for event in record(builder.fail("server_error", "The server had an error.")):
                yield event
    finally:
        if outcome is not None and not builder.closed:
            builder.interrupt(outcome)
        # Quotas (issue 6): settle the reservation and write the ledger row (store=false too),
        # exactly once. Started as a task before anything else is awaited, so a second
        # cancellation during _store_outcome cannot skip it.
        settling = quota_settle_start(
            reservation=generation.reservation, builder=builder, by_response_id=generation.background
        )
        if generation.record_pk is not None:
            await asyncio.shield(_store_outcome(generation))
        if settling is not None:
            await asyncio.shield(settling)
            if outcome is None and builder.closed:
                for event in quota_events(generation.reservation, builder, settled=True):
                    yield event  # H5 after settlement (opted-in clients only)


async def _summarize(
    generation: Generation, reasoning: str, probe: CancellationProbe, record
) -> AsyncIterator[object]:
    """H3: a reasoning summary is generated text (a second, short engine call), never a copy of
    the raw reasoning."""
    builder = generation.builder
    request = GenerationRequest(
        request_id=f"{generation.engine_request.request_id}-summary",
        model=generation.engine_request.model,
        organization_id=generation.engine_request.organization_id,
        messages=[
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {"role": "user", "content": reasoning},
        ],
        max_tokens=160,
        temperature=0.2,
        service_tier=generation.engine_request.service_tier,
    )
    for event in record(builder.open_summary_part()):
        yield event
    async with contextlib.aclosing(_deltas(generation, request, probe)) as deltas:
        async for delta in deltas:
            if delta is KEEPALIVE:
                yield KEEPALIVE
            elif isinstance(delta, TextDelta) and delta.text:
                for event in record(builder.feed_summary(delta.text)):
                    yield event
    for event in record(builder.close_summary_part() + builder.close_reasoning()):
        yield event


async def _store_outcome(generation: Generation) -> None:
    try:
        await db_async(lifecycle.response_finalize)(
            response_pk=generation.record_pk,
            from_status=lifecycle.Status.IN_PROGRESS,
            body=generation.builder.snapshot(),
            events=generation.events,
        )
    except lifecycle.TransitionRefused:
        # Someone else (a cancel that found this process unresponsive, a sweeper) already gave
        # the response its final state; theirs stands.
        logger.info("response %s was finalized elsewhere", generation.response_id)
    except Exception:
        logger.exception("could not store the outcome of %s", generation.response_id)


async def generation_abandon(generation: Generation) -> None:
    """Close a prepared generation that will never run: its client left after admission but
    before the first event. The stored row ends ``incomplete`` (never stuck ``in_progress``) and
    the quota reservation is released. Idempotent; a no-op once the generation has started."""
    if generation.started:
        return
    generation.started = True
    settling = quota_settle_start(reservation=generation.reservation, builder=generation.builder)
    if settling is not None:
        with contextlib.suppress(Exception):
            await asyncio.shield(settling)
    if generation.record_pk is None:
        return
    body = generation.builder.snapshot() | {"status": lifecycle.Status.INCOMPLETE}
    with contextlib.suppress(lifecycle.TransitionRefused):
        await db_async(lifecycle.response_transition)(
            response_pk=generation.record_pk,
            from_status=lifecycle.Status.IN_PROGRESS,
            to_status=lifecycle.Status.INCOMPLETE,
            body=body,
        )
