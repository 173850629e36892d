"""Operations on stored responses: delete, cancel, and replaying their event log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async

from api.errors import InvalidRequest
from responses.models import StoredResponse
from responses.selectors import response_events
from responses.services import lifecycle
from responses.services.cancellation import cancel_request

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
            "Only responses created with background=true, or still in progress, can be "
            "cancelled.",
            param="response_id",
        )
    await sync_to_async(cancel_request)(response_id=response.public_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_GRACE_SECONDS
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        response = await sync_to_async(_reload)(response)
        if response.status in StoredResponse.TERMINAL:
            return response
    body = dict(response.body, status=StoredResponse.Status.CANCELLED)
    try:
        await sync_to_async(lifecycle.response_transition)(
            response_pk=response.pk,
            from_status=response.status,
            to_status=StoredResponse.Status.CANCELLED,
            body=body,
        )
    except lifecycle.TransitionRefused:
        pass  # it ended in the meantime; report what it became
    return await sync_to_async(_reload)(response)


async def response_replay(
    *, response: StoredResponse, starting_after: int | None, keepalive_seconds: float
) -> AsyncIterator[dict | None]:
    """Stored events after ``starting_after`` with their original sequence numbers; while the
    response is still running, waits for more (yielding None as a keep-alive marker)."""
    cursor = starting_after if starting_after is not None else -1
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while True:
        events = await sync_to_async(response_events)(response=response, starting_after=cursor)
        for event in events:
            cursor = event["sequence_number"]
            yield event
            last_sent = loop.time()
        if events:
            continue
        response = await sync_to_async(_reload)(response)
        if response.status in StoredResponse.TERMINAL:
            # One last read: the final events are written in the same transaction as the status.
            for event in await sync_to_async(response_events)(
                response=response, starting_after=cursor
            ):
                cursor = event["sequence_number"]
                yield event
            return
        if loop.time() - last_sent >= keepalive_seconds:
            last_sent = loop.time()
            yield None
        await asyncio.sleep(REPLAY_POLL_SECONDS)
