"""Turning an async iterator of events into a streaming HTTP response (the one SSE edge)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse

from api.logging import current_request_id
from responses.streaming.encoder import KEEPALIVE, encode_event, stream_end


def sse_response(
    events: AsyncIterator[object],
    *,
    request_id: str,
    keepalive_marker: object,
    dialect: str = "openai",
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> StreamingHttpResponse:
    """``on_close`` runs when Django closes the response, however it ended; it is how a stream
    that never started (its client left before the first byte) still gets cleaned up."""
    async def body() -> AsyncIterator[bytes]:
        # The gateway's logging context ended when the view returned; streaming happens after.
        token = current_request_id.set(request_id)
        try:
            async for item in events:
                yield KEEPALIVE if item is keepalive_marker else encode_event(item, dialect=dialect)
            tail = stream_end(dialect)
            if tail:
                yield tail
        finally:
            # A generator closed from another task runs this in another context.
            with contextlib.suppress(ValueError):
                current_request_id.reset(token)

    response = StreamingHttpResponse(body(), content_type="text/event-stream; charset=utf-8")
    if on_close is not None:
        # Closers are sync and Django calls them from a worker thread: hop back onto the loop.
        response._resource_closers.append(async_to_sync(on_close))
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response
