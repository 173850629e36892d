"""Operations on stored responses: delete, cancel, and replaying their event log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from django.utils import timezone

from core.db import db_async
from core.errors import InvalidRequest
from responses.models import StoredResponse
from responses.selectors import response_events
from responses.services import lifecycle
from responses.services.cancellation import cancel_local, cancel_request
from responses.services.event_log import DatabaseEventLog, event_log_delete, live_event_log

CANCEL_GRACE_SECONDS = 2.0
REPLAY_POLL_SECONDS = 0.25


def _reload(response: StoredResponse) -> StoredResponse:
    return StoredResponse.objects.get(pk=response.pk)


async def response_cancel(*, response: StoredResponse) -> StoredResponse:
    """Cancel a queued or running response; idempotent once it has ended.

    The generating process (maybe another one) is asked through the cancel flag and given
    CANCEL_GRACE_SECONDS to stop and store its partial output; if it does not answer (it died),
    the response is moved to ``cancelled`` here so it never stays in progress.
    """
    if response.status in StoredResponse.TERMINAL:
        if response.background or response.status == StoredResponse.Status.CANCELLED:
            return response
        raise InvalidRequest(
            "Only responses created with background=true, or still in progress, can be cancelled.",
            param="response_id",
        )
    if response.background:
        response = await db_async(_cancel_background)(response)
        if response.status in StoredResponse.TERMINAL:
            return response
    await db_async(cancel_request)(response_id=response.public_id)
    cancel_local(response_id=response.public_id)  # running here: stop now, not at the next tick
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_GRACE_SECONDS
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        response = await db_async(_reload)(response)
        if response.status in StoredResponse.TERMINAL:
            return response
    body = dict(response.body, status=StoredResponse.Status.CANCELLED)
    try:
        await db_async(lifecycle.response_transition)(
            response_pk=response.pk,
            from_status=response.status,
            to_status=StoredResponse.Status.CANCELLED,
            body=body,
        )
    except lifecycle.TransitionRefused:
        pass  # it ended in the meantime; report what it became
    return await db_async(_reload)(response)


async def response_delete(*, response: StoredResponse) -> None:
    """Delete a stored response; a queued or running one is cancelled first.

    Cancelling stops the engine request and lets the generating process (a worker, another web
    process) settle what was generated and free its concurrency slot the ordinary way, before
    the row it writes to disappears. Its ledger row outlives the response (deleted responses
    are billed too)."""
    if response.status not in StoredResponse.TERMINAL:
        response = await response_cancel(response=response)
    await db_async(lifecycle.response_row_delete)(response=response)
    if response.background:
        await db_async(event_log_delete)(public_ids=[response.public_id])


def _cancel_background(response: StoredResponse) -> StoredResponse:
    """Mark the row (the worker may share no cache with this process and watches the row), and
    cancel a still-queued response outright: no worker has it yet, and a worker that picks it up
    later finds nothing to claim."""
    StoredResponse.objects.filter(pk=response.pk, cancel_requested_at=None).update(
        cancel_requested_at=timezone.now()
    )
    if response.status == StoredResponse.Status.QUEUED:
        with contextlib.suppress(lifecycle.TransitionRefused):
            lifecycle.response_transition(
                response_pk=response.pk,
                from_status=StoredResponse.Status.QUEUED,
                to_status=StoredResponse.Status.CANCELLED,
                body=dict(response.body, status=StoredResponse.Status.CANCELLED),
            )
    return _reload(response)


async def response_replay(
    *, response: StoredResponse, starting_after: int | None, keepalive_seconds: float
) -> AsyncGenerator[dict | None, None]:
    """Events after ``starting_after`` with their original sequence numbers, then, while the
    response is still running, the new ones as they come (None is a keep-alive marker).

    A running background response is followed through the live event log (Redis or the
    database, whichever the workers write); once the response is terminal, what is left comes
    from the database, where the final events are stored in the same transaction as the status.
    The cursor makes the switch between the two sources gap- and duplicate-free.
    """
    cursor = starting_after if starting_after is not None else -1
    log = live_event_log() if response.background else DatabaseEventLog()
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    wait = 0.0  # only wait for news once a read came back empty and the response still runs
    try:
        while True:
            events = await log.read(
                response_pk=response.pk, public_id=response.public_id, after=cursor, wait=wait
            )
            fresh = [event for event in events if event["sequence_number"] > cursor]
            for event in fresh:
                cursor = event["sequence_number"]
                yield event
            if fresh:
                last_sent = loop.time()
                wait = 0.0
                continue
            response = await db_async(_reload)(response)
            if response.status in StoredResponse.TERMINAL:
                for event in await db_async(response_events)(
                    response=response, starting_after=cursor
                ):
                    cursor = event["sequence_number"]
                    yield event
                return
            if loop.time() - last_sent >= keepalive_seconds:
                last_sent = loop.time()
                yield None
            wait = REPLAY_POLL_SECONDS
    finally:
        await log.close()
