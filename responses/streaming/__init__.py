"""The pure core of Responses streaming: ids, object and event builders, the SSE encoder, and
the :class:`StreamBuilder` state machine. No Django and no I/O here, so every piece can be
tested alone and reused by the streaming view, the background worker and stream replay.

* :mod:`.ids` — ``resp_``/``msg_``/``fc_``/``rs_``/``call_`` ids.
* :mod:`.objects` — the Response object, output items, usage (plain dicts, OpenAI's shape).
* :mod:`.events` — one pure builder per stream event type; no sequence numbers.
* :mod:`.encoder` — ``encode_event`` (the one SSE encoder), dialects, keep-alive, [DONE].
* :mod:`.state` — the per-item state the builder accumulates (and nothing else).
* :mod:`.builder` — ``StreamBuilder``: engine deltas → numbered events, plus snapshots.
* :mod:`.conformance` — checks against the ``openai`` SDK's types, for tests (not imported here).
"""

from __future__ import annotations

from responses.streaming.builder import (
    InterruptReason,
    StreamBuilder,
    StreamProtocolError,
    StreamStateError,
)
from responses.streaming.encoder import (
    DONE,
    KEEPALIVE,
    Dialect,
    encode_event,
    get_dialect,
    register_dialect,
    stream_end,
)
from responses.streaming.objects import ResponseEcho

__all__ = [
    "DONE",
    "KEEPALIVE",
    "Dialect",
    "InterruptReason",
    "ResponseEcho",
    "StreamBuilder",
    "StreamProtocolError",
    "StreamStateError",
    "encode_event",
    "get_dialect",
    "register_dialect",
    "stream_end",
]
