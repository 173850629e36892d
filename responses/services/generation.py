"""Running one generation: engine deltas → numbered stream events, keep-alives, cancellation,
failure and disconnect handling, and storing the outcome.

``generate_events`` is the single loop both the JSON and the SSE paths consume (and, later, the
background worker). It is organised as a producer task that owns the engine stream and a consumer
(this generator) that waits on a small bounded queue:

* the queue wait has a timeout, so the consumer can send keep-alives while the engine is silent
  and notice a cancel flag (``POST …/cancel``) without ever cancelling the engine's own ``await``;
* when the consumer goes away (the client disconnected), ``finally`` cancels the producer,
  whose ``aclosing`` closes the engine stream and so the HTTP request to vLLM;
* the outcome (completed, incomplete, failed, cancelled) is stored under ``asyncio.shield`` so a
  second cancellation cannot lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from core.db import db_async
from core.metrics import record_first_token
from engines.runtime.types import (
    ContextLengthExceeded,
    DeltaQueue,
    Engine,
    EngineBadRequest,
    EngineDelta,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from quotas.services.admission import (
    Reservation,
    Settlement,
    quota_ledger_settle,
    quota_limiter_settle,
    quota_settle_start,
    quota_settlement,
    quota_settlement_by_id,
)
from responses.services import cancellation, lifecycle
from responses.services.usage import rate_limit_events, response_usage
from responses.streaming.builder import StreamBuilder

logger = logging.getLogger(__name__)


class _Marker(enum.Enum):
    # An enum member rather than a bare object(), so that `batch is KEEPALIVE` narrows the type.
    KEEPALIVE = "keepalive"


KEEPALIVE: Final = _Marker.KEEPALIVE
"""Yielded instead of an event when nothing happened for ``keepalive_seconds``."""

_END = object()
_WAKE = object()  # put on a generation's queue to make its consumer look at its cancel flag
_KEEPALIVE_DUE = object()  # put on it when the stream was idle for its keep-alive interval
_TIMER_SLACK = 0.001  # the event loop may run a timer up to its clock resolution early
_QUEUE_SIZE = 64  # deltas: a slow client backs up into vLLM, not into our memory

SUMMARY_INSTRUCTIONS = (
    "Summarize the reasoning below for the user in one to three short sentences. "
    "Describe the approach, not every step."
)


class _Cancelled(Exception):
    pass


# Words of vLLM's own "max_tokens too large" refusal; the client never sent those parameters.
_OUTPUT_LIMIT_MARKERS = ("max_completion_tokens", "max_tokens", "max_model_len")


@dataclass(frozen=True)
class ClientError:
    """How an engine failure is shown to the client: the engine's own message can name a
    replica's address or vLLM's parameters, so only refusals of the client's input keep it."""

    message: str
    param: str | None
    code: str | None


def engine_error_for_client(error: EngineError, *, max_output_tokens: int | None) -> ClientError:
    if isinstance(error, EngineBadRequest):
        lowered = error.message.lower()
        if any(marker in lowered for marker in _OUTPUT_LIMIT_MARKERS):
            return ClientError(
                f"'max_output_tokens' is too large: {max_output_tokens}. The input plus "
                "max_output_tokens must fit in the model's context length; lower "
                "max_output_tokens or shorten the input.",
                "max_output_tokens",
                "context_length_exceeded"
                if isinstance(error, ContextLengthExceeded)
                else "invalid_value",
            )
        if isinstance(error, ContextLengthExceeded):
            return ClientError(
                "Your input exceeds the context window of this model. Please adjust your input "
                "and try again.",
                "input",
                error.code,
            )
        return ClientError(error.message, error.param, error.code)
    if isinstance(error, EngineUnavailable):
        message = "The model is unavailable right now: no engine could take the request. Retry."
    elif isinstance(error, EngineTimeout):
        message = "The model's engine did not answer in time. Retry."
    else:
        message = "The model's engine failed while generating this response."
    return ClientError(message, None, error.code)


@dataclass
class Generation:
    engine: Engine
    engine_request: GenerationRequest
    builder: StreamBuilder
    record_pk: int | None
    """The StoredResponse row to finalize, or None when ``store`` is false."""
    record_links: tuple[int, int | None] | None = None
    """That row's organization and previous response (pks), for its finalize."""
    reasoning_summary: bool = False
    keepalive_seconds: float = 15.0
    queued: bool = False
    background: bool = False
    """Run by a Celery worker: cancellation is also watched through the database row."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Every event emitted, kept only when the response is stored (for replay)."""
    started: bool = False
    """Set when generate_events begins; a prepared generation that never starts (its client
    left first) is closed by :func:`generation_abandon` instead."""
    engine_error: EngineError | None = None
    """Why the generation failed, for the non-streaming answer's HTTP status."""
    reservation: Reservation | None = None
    """What quota admission reserved; settled once in generate_events' finally."""
    rate_limit_events: bool = False
    """Stream ``response.rate_limits.updated`` after admission and after settlement (the client
    opted in, or speaks the legacy dialect)."""
    cancelled: bool = False
    """Set by the cancel watcher (responses.services.cancellation); the loop stops at once."""
    wake: Callable[[], None] | None = None
    """Wakes the delta loop that is waiting on the engine, so it sees ``cancelled``."""
    upstream: tuple[DeltaQueue, asyncio.Task] | None = None
    """The engine request, already under way (:func:`generation_prestart`): its queue and the
    producer task that fills it."""

    def request_cancel(self) -> None:
        self.cancelled = True
        if self.wake is not None:
            self.wake()

    @property
    def response_id(self) -> str:
        return self.builder.response_id


async def _produce(engine: Engine, request: GenerationRequest, queue: DeltaQueue) -> None:
    try:
        into = getattr(engine, "stream_into", None)
        if into is not None:
            # The engine puts each delta on the queue from its socket's callback: no task of
            # ours wakes up per token on the way (docs/performance.md).
            await into(request, queue)
        else:
            async with contextlib.aclosing(engine.stream(request)) as stream:
                async for delta in stream:
                    await queue.room()  # the client is slower than the engine: wait
                    queue.put_nowait(delta)
        queue.put_nowait(_END)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the consumer, which reports it
        queue.put_nowait(exc)


def generation_prestart(generation: Generation) -> None:
    """Send the engine request now, before the rows written ahead of the first event are
    committed: the engine's time to first token then overlaps with those writes instead of
    following them. What it streams waits in the bounded queue (backpressure into the engine)
    until :func:`generate_events` reads it; a generation that never runs is closed by
    :func:`generation_abandon`, which cancels the request."""
    if generation.upstream is None:
        queue = DeltaQueue(_QUEUE_SIZE)
        producer = asyncio.create_task(
            _produce(generation.engine, generation.engine_request, queue)
        )
        generation.upstream = (queue, producer)


def _upstream_stop(generation: Generation) -> None:
    if generation.upstream is not None:
        generation.upstream[1].cancel()


async def _deltas(
    generation: Generation, request: GenerationRequest
) -> AsyncGenerator[list[EngineDelta] | _Marker, None]:
    """Batches (lists) of the deltas of one engine call — everything the engine produced since
    the last batch, so that one batch becomes one write to the client — interleaved with
    KEEPALIVE; raises _Cancelled or the producer's exception."""
    if request is generation.engine_request and generation.upstream is not None:
        queue, producer = generation.upstream
    else:
        queue = DeltaQueue(_QUEUE_SIZE)
        producer = asyncio.create_task(_produce(generation.engine, request, queue))
    generation.wake = functools.partial(_wake, queue)
    loop = asyncio.get_running_loop()
    keepalive = generation.keepalive_seconds
    last_activity = loop.time()
    timer: asyncio.TimerHandle | None = None

    # The keep-alive deadline is one timer that re-arms itself, not a timeout around every
    # queue.get() (a timer created and cancelled per token): when it finds the stream idle for
    # keepalive_seconds, it puts _KEEPALIVE_DUE on the queue.
    def due() -> None:
        nonlocal timer
        timer = None
        if loop.time() - last_activity >= keepalive - _TIMER_SLACK:
            _wake(queue, _KEEPALIVE_DUE)
        else:
            timer = loop.call_at(last_activity + keepalive, due)

    try:
        while True:
            if generation.cancelled:
                raise _Cancelled()
            if timer is None:
                timer = loop.call_at(last_activity + keepalive, due)
            item = await queue.get()
            if item is _KEEPALIVE_DUE and queue.empty():
                last_activity = loop.time()
                yield KEEPALIVE
                continue
            batch: list[EngineDelta] = []
            while True:
                if item is _END:
                    if batch:
                        yield batch
                    return
                if isinstance(item, BaseException):
                    if batch:
                        yield batch
                    raise item
                if item is not _WAKE and item is not _KEEPALIVE_DUE:
                    batch.append(item)  # type: ignore[arg-type]  # deltas, once markers are out
                if queue.empty():
                    break
                item = queue.get_nowait()
            last_activity = loop.time()
            if batch and not generation.cancelled:
                yield batch
    finally:
        if timer is not None:
            timer.cancel()
        generation.wake = None
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer


def _wake(queue: DeltaQueue, marker: object = _WAKE) -> None:
    queue.put_nowait(marker)  # unbounded for markers: the engine is what the bound stops


async def generate_events(
    generation: Generation,
) -> AsyncGenerator[list[dict[str, Any]] | _Marker, None]:
    """Batches (lists) of events and KEEPALIVE markers for one response, start to terminal
    event. A batch is what is ready at once; the SSE edge writes each batch in one piece."""
    generation.started = True
    builder = generation.builder
    began, first_delta_seen = time.monotonic(), False
    # None = the stream reached a terminal event by itself
    outcome: Literal["disconnect", "cancelled"] | None = None
    reasoning_text: list[str] = []

    def record(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if generation.record_pk is not None:
            generation.events.extend(events)
        return events

    watching = (
        cancellation.watch(
            response_id=generation.response_id,
            record_pk=generation.record_pk,
            on_cancel=generation.request_cancel,
            watch_row=generation.background,
        )
        if generation.record_pk is not None
        else contextlib.nullcontext()
    )
    try:
        with watching:
            # response.rate_limits.updated: remaining requests/tokens after admission, only for
            # clients that opted in (or speak the legacy dialect); numbered and stored like every
            # other event, so a replay of this stream has no gaps in its sequence numbers.
            opening = builder.start(queued=generation.queued)
            if generation.rate_limit_events:
                opening += rate_limit_events(generation.reservation, builder)
            yield record(opening)
            try:
                # aclosing: when this generator is closed at a yield (client gone), the inner
                # one must be closed now, not whenever the garbage collector finds it — its
                # finally is what cancels the producer and so the upstream request.
                async with contextlib.aclosing(
                    _deltas(generation, generation.engine_request)
                ) as deltas:
                    async for batch in deltas:
                        if batch is KEEPALIVE:
                            yield KEEPALIVE
                            continue
                        if not first_delta_seen:
                            first_delta_seen = True
                            record_first_token(
                                organization=generation.engine_request.organization_id,
                                model=generation.engine_request.model,
                                seconds=time.monotonic() - began,
                            )
                        events: list[dict[str, Any]] = []
                        for delta in batch:
                            if isinstance(delta, ReasoningDelta):
                                reasoning_text.append(delta.text)
                            events += builder.feed(delta)
                        if events:
                            yield record(events)
                if generation.reasoning_summary and reasoning_text:
                    async with contextlib.aclosing(
                        _summarize(generation, "".join(reasoning_text), record)
                    ) as summary:
                        async for item in summary:
                            yield item
                yield record(builder.finish())
            except EngineError as error:
                if error.status == 503 and error.retry_after_ms is None:
                    hint = getattr(generation.engine, "retry_hint_ms", None)
                    error.retry_after_ms = hint() if hint is not None else None
                generation.engine_error = error
                logger.warning("engine failed for %s: %s", generation.response_id, error.message)
                shown = engine_error_for_client(
                    error, max_output_tokens=generation.engine_request.max_tokens
                )
                yield record(builder.fail(shown.code, shown.message, param=shown.param))
    except _Cancelled:
        outcome = "cancelled"
    except (asyncio.CancelledError, GeneratorExit):
        outcome = "disconnect"
        raise
    except Exception:
        logger.exception("generation %s failed", generation.response_id)
        if not builder.closed:
            yield record(builder.fail("server_error", "The server had an error."))
    finally:
        if outcome is not None and not builder.closed:
            builder.interrupt(outcome, usage=_reported_usage(generation.engine_request))
        # Quotas: settled exactly once, whatever the ending (store=false too). The
        # limiter's half (Redis) starts now; the ledger's half is written in the transaction
        # that stores the outcome, one round trip to the database after the last event. Both
        # are tasks started before anything else is awaited, so a second cancellation cannot
        # skip them.
        body = builder.snapshot()
        settlement, limiting = _settlement_begin(generation, body)
        late: list[dict[str, Any]] = []
        cancelled_again: asyncio.CancelledError | None = None
        if (
            limiting is not None
            and outcome is None
            and builder.closed
            and generation.rate_limit_events
        ):
            # response.rate_limits.updated after settlement (opted-in clients only): waited for
            # before the outcome is stored, so that the stored stream holds this event too.
            try:
                await asyncio.shield(limiting)
                late = record(rate_limit_events(generation.reservation, builder, settled=True))
            except asyncio.CancelledError as exc:
                cancelled_again = exc  # store the outcome first, then give up
            except Exception:
                logger.exception("settling the quota of %s failed", generation.response_id)
        if generation.record_pk is not None or settlement is not None:
            closing = _keep(
                _close(
                    generation,
                    body=body,
                    settlement=settlement,
                    disconnected=outcome == "disconnect",
                )
            )
            await asyncio.shield(closing)
        if cancelled_again is not None:
            raise cancelled_again
        if limiting is not None:
            await asyncio.shield(limiting)
        if late:
            yield late


_closing: set[asyncio.Task] = set()
"""Tasks that end generations (asyncio keeps only weak references to tasks)."""


def _keep(coro) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    return task


def _settlement_begin(
    generation: Generation, body: dict[str, Any]
) -> tuple[Settlement | None, asyncio.Task | None]:
    """Settle the generation's quota with the response as it ended, at most once: the ledger's
    half to write (None: nothing to settle) and the limiter's half, started. A background run's
    reservation was made by the web process that admitted it: both halves are then found
    through the ledger row (the limiter's runs after it, in :func:`_close`)."""
    usage, estimated = response_usage(body)
    status = body.get("status") or "failed"
    reservation = generation.reservation
    if reservation is not None:
        settlement = quota_settlement(
            reservation=reservation, status=status, usage=usage, estimated=estimated
        )
        if settlement is None:
            return None, None
        return settlement, _keep(quota_limiter_settle(reservation=reservation, usage=usage))
    if generation.background:
        settlement = quota_settlement_by_id(
            response_id=generation.response_id, status=status, usage=usage, estimated=estimated
        )
        return settlement, None
    return None, None


async def _close(
    generation: Generation,
    *,
    body: dict[str, Any],
    settlement: Settlement | None,
    disconnected: bool,
) -> None:
    """Store the outcome (when the response is stored) and write the ledger's half of the
    settlement, in one transaction; then, for a settlement by id, the limiter's half."""
    settle = functools.partial(quota_ledger_settle, settlement) if settlement else None
    loaded = None
    try:
        finalized, loaded = await db_async(lifecycle.response_close)(
            response_pk=generation.record_pk,
            body=body,
            events=generation.events,
            end_reason="client_disconnected" if disconnected else None,
            links=generation.record_links,
            also=settle,  # type: ignore[arg-type]  # mypy binds T from the target, not from ``also``
        )
        if generation.record_pk is not None and not finalized:
            # Someone else (a cancel that found this process unresponsive, a sweeper) already
            # gave the response its final state; theirs stands.
            logger.info("response %s was finalized elsewhere", generation.response_id)
    except Exception:
        logger.exception("could not store the outcome of %s", generation.response_id)
        if settle is not None:
            # Rolled back with the outcome: the usage is written on its own (a stored outcome
            # that could not be written is left to the lease sweeper).
            try:
                loaded = await db_async(settle)()
            except Exception:
                logger.exception("could not write the usage of %s", generation.response_id)
    if loaded is not None and settlement is not None:
        await quota_limiter_settle(reservation=loaded, usage=settlement.usage)


def _settle_start(generation: Generation) -> asyncio.Task | None:
    """Start settling both halves of the generation's quota now, at most once (a generation
    that never ran)."""
    reservation = generation.reservation
    if reservation is None or reservation.settled:
        return None
    body = generation.builder.snapshot()
    usage, estimated = response_usage(body)
    return quota_settle_start(
        reservation=reservation,
        status=body.get("status") or "failed",
        usage=usage,
        estimated=estimated,
    )


def _reported_usage(request: GenerationRequest) -> Usage | None:
    """The engine's running count for a stream cut short (no final usage came)."""
    progress = request.progress
    if not progress.reported:
        return None
    return Usage(
        input_tokens=progress.input_tokens,
        output_tokens=progress.output_tokens,
        cached_tokens=progress.cached_tokens,
    )


async def _summarize(
    generation: Generation, reasoning: str, record
) -> AsyncGenerator[list[dict[str, Any]] | _Marker, None]:
    """A reasoning summary is generated text (a second, short engine call), never a copy of
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
    yield record(builder.open_summary_part())
    async with contextlib.aclosing(_deltas(generation, request)) as deltas:
        async for batch in deltas:
            if batch is KEEPALIVE:
                yield KEEPALIVE
                continue
            events: list[dict[str, Any]] = []
            for delta in batch:
                if isinstance(delta, TextDelta) and delta.text:
                    events += builder.feed_summary(delta.text)
                elif isinstance(delta, Usage):
                    builder.add_summary_usage(delta)  # billed like the rest of the response
            if events:
                yield record(events)
    yield record(builder.close_summary_part() + builder.close_reasoning())


async def generation_abandon(generation: Generation) -> None:
    """Close a prepared generation that will never run: its client left after admission but
    before the first event. The stored row ends ``incomplete`` (never stuck ``in_progress``) and
    the quota reservation is released. Idempotent; a no-op once the generation has started."""
    if generation.started:
        return
    generation.started = True
    _upstream_stop(generation)
    settling = _settle_start(generation)
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
