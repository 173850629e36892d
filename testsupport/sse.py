"""Reading our Server-Sent Events in tests: whole bodies, streams as they arrive, output text.

Each reader also checks the framing rules every stream must keep: an ``event:`` line equal to the
data's ``type``, and no frame without data other than a ``:`` comment (a keep-alive).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


def parse_sse(raw: bytes) -> list[dict]:
    """Events of an SSE body; asserts the framing rules (event == type, no data-less frames)."""
    events = []
    for frame in raw.decode().split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert "data" in fields, frame
        if fields["data"] == "[DONE]":
            continue
        event = json.loads(fields["data"])
        assert fields.get("event") == event["type"], frame
        events.append(event)
    return events


async def streamed_body(response) -> bytes:
    """The whole body of a Django streaming response (the async test client's)."""
    return b"".join([chunk async for chunk in response.streaming_content])


async def streamed_events(response) -> list[dict]:
    """The events of a Django streaming response, read to its end."""
    return parse_sse(await streamed_body(response))


async def sse_frames(response: httpx.Response) -> AsyncIterator[dict[str, Any] | None]:
    """Events of an httpx SSE response as they arrive; ``None`` for a comment (keep-alive)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
            continue
        if not lines:
            continue
        frame, lines = lines, []
        data = [entry[len("data: ") :] for entry in frame if entry.startswith("data: ")]
        if not data:
            assert all(entry.startswith(":") for entry in frame), frame
            yield None
            continue
        event = json.loads("\n".join(data))
        assert f"event: {event['type']}" in frame, frame
        yield event


def text_of(events: list[dict[str, Any] | None]) -> str:
    """The output text the ``response.output_text.delta`` events add up to (keep-alives, given
    as ``None`` by :func:`sse_frames`, are skipped)."""
    return "".join(
        e["delta"] for e in events if e is not None and e["type"] == "response.output_text.delta"
    )
