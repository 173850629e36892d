"""Turning an async iterator of events into a streaming HTTP response (the one SSE edge)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from django.http import StreamingHttpResponse

from core.logging import current_request_id
from responses.streaming.encoder import KEEPALIVE, encode_event, get_dialect, stream_end

_closing: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones


class EventStreamResponse(StreamingHttpResponse):
    """A streaming response whose parts are already bytes.

    Django's ``StreamingHttpResponse.__aiter__`` wraps the content in two more async generators
    that pass every part through ``make_bytes``: two extra generator steps per streamed event.
    Here Django's send loop (``ASGIHandler.send_response``, under uvicorn and daphne alike)
    iterates the event stream itself. ``streaming_content`` (what middleware and tests read) is
    unchanged."""

    def __aiter__(self):
        if self.is_async:
            return self._iterator  # type: ignore[attr-defined]  # set by streaming_content
        return super().__aiter__()


def sse_response(
    events: AsyncGenerator[Any, None],  # events, lists of events (batches) or keepalive markers
    *,
    request_id: str,
    keepalive_marker: object,
    dialect: str = "openai",
    done: bool = False,
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> EventStreamResponse:
    """``dialect`` names the events; ``done`` sends ``data: [DONE]`` after the last event
    even when the dialect does not (L5, on request). ``on_close`` runs when Django closes the
    response, however it ended; it is how a stream that never started (its client left before
    the first byte) still gets cleaned up."""

    wire = get_dialect(dialect)

    async def body() -> AsyncGenerator[bytes, None]:
        # The gateway's logging context ended when the view returned; streaming happens after.
        token = current_request_id.set(request_id)
        try:
            # aclosing: closing this body (client gone) must close the event source at once.
            async with contextlib.aclosing(events) as source:
                async for item in source:
                    if item is keepalive_marker:
                        yield KEEPALIVE
                    elif isinstance(item, list):
                        # A batch: what the source had ready at once goes out as one write
                        # (one ASGI message, one socket send) instead of one per event.
                        if len(item) == 1:  # a paced stream's usual batch: one token
                            yield encode_event(item[0], dialect=wire)
                        elif item:
                            yield b"".join([encode_event(event, dialect=wire) for event in item])
                    else:
                        yield encode_event(item, dialect=wire)
            tail = stream_end(dialect, done=done)
            if tail:
                yield tail
        finally:
            # A generator closed from another task runs this in another context.
            with contextlib.suppress(ValueError):
                current_request_id.reset(token)

    stream = body()
    response = EventStreamResponse(stream, content_type="text/event-stream; charset=utf-8")
    loop = asyncio.get_running_loop()

    async def close() -> None:
        # Django wraps this generator in its own when it sends the body, and on a disconnect it
        # closes only the outermost one: ours would stay suspended (the generation running on,
        # its upstream request open) until the garbage collector found it. Django always calls
        # the response's closers, so close the stream here, deterministically.
        with contextlib.suppress(RuntimeError):  # still running: it is finishing by itself
            await stream.aclose()
        if on_close is not None:
            await on_close()

    def schedule_close() -> None:
        # Django calls closers from its thread-sensitive worker thread; waiting there for
        # cleanup that itself needs that thread (ORM calls) would deadlock, so hand it to the
        # event loop and return at once.
        def start() -> None:
            task = loop.create_task(close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)

        loop.call_soon_threadsafe(start)

    # django-stubs leave out this private list; Django offers no public hook for it.
    response._resource_closers.append(schedule_close)  # type: ignore[attr-defined]  # noqa: SLF001
    response["Cache-Control"] = "no-store"  # tenant data: never kept by a cache
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response
