"""The one SSE encoder, and the dialects it can speak.

Events are built and stored in one canonical vocabulary, OpenAI's. A :class:`Dialect` is a pure
mapping applied to a canonical event just before it is encoded: it may rename event types, nest
the ``error`` event, reshape payloads, and it says whether ``data: [DONE]`` ends the stream.
Because the mapping happens only here, stored events can be replayed later in whatever dialect
the reader asks for, and adding ``open-responses`` or ``legacy`` never touches generation.

Layout: wire constants, :class:`Dialect`, the three dialects and their registry, JSON
serialization, :func:`encode_event`.

* ``openai`` — OpenAI's own stream, unchanged; no ``[DONE]`` unless the client asks for it.
* ``open-responses`` — the Open Responses specification (release 2026-04-24, ``schema/events.tsp``
  and ``specification.mdx``): raw reasoning is ``response.reasoning.delta|done``, the ``error``
  event nests its fields under ``error``, events that are ours alone carry the implementor slug
  (``platform:…``, "extended streaming events MUST be prefixed"), and ``data: [DONE]`` ends the
  stream ("The terminal event MUST be the literal string [DONE]").
* ``legacy`` — the names of the status report this platform grew from, for clients written
  against it: ``response.tool_call.delta``, ``response.error``, ``response.reasoning.delta|done``,
  ``response.reasoning.summary.added|delta|done``, and ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import (  # type: ignore[attr-defined]  # the C speed-up, untyped in typeshed
    c_make_encoder,
    encode_basestring,
)
from types import MappingProxyType
from typing import Any

from responses.streaming import events as ev
from responses.streaming.events import ERROR, Event

KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment frame, sent when a stream has been silent: ignored by every client, keeps
proxies from timing the stream out.
Never an ``event:`` line without ``data:`` — the Python SDK crashes on those (§6.4)."""

DONE = b"data: [DONE]\n\n"
"""The sentinel some dialects send after the terminal event; OpenAI itself never does."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """How one wire vocabulary differs from the canonical (OpenAI) one.

    ``renames`` maps canonical event types to this dialect's names; ``nested_errors`` turns the
    flat ``error`` event into ``{"type": "error", "error": {type, code, message, param}}``;
    ``transform`` is a last hook for payload changes a rename cannot express. ``apply`` never
    mutates its input: the canonical event may be stored or encoded again for another reader.
    """

    name: str
    renames: Mapping[str, str] = field(default_factory=dict)
    nested_errors: bool = False
    send_done: bool = False
    transform: Callable[[Event], Event] | None = None

    def apply(self, event: Event) -> Event:
        if self.nested_errors and event.get("type") == ERROR:
            event = _nest_error(event)
        renamed = self.renames.get(event.get("type", ""))
        if renamed is not None:
            event = {**event, "type": renamed}
        if self.transform is not None:
            event = self.transform(event)
        return event


def _nest_error(event: Event) -> Event:
    # The flat event has no error class; a mid-stream failure is ours, so "server_error".
    nested = {
        "type": "server_error",
        "code": event.get("code"),
        "message": event.get("message", ""),
        "param": event.get("param"),
    }
    outer = {key: value for key, value in event.items() if key not in ("code", "message", "param")}
    outer["error"] = nested
    return outer


EXTENSION_SLUG = "platform"
"""Open Responses: event types that are not in the specification carry an implementor slug."""

OPENAI = Dialect(name="openai")

OPEN_RESPONSES = Dialect(
    name="open-responses",
    renames={
        ev.REASONING_TEXT_DELTA: "response.reasoning.delta",
        ev.REASONING_TEXT_DONE: "response.reasoning.done",
        ev.RESPONSE_RATE_LIMITS_UPDATED: f"{EXTENSION_SLUG}:rate_limits.updated",
        ev.RESPONSE_ADDITIONAL_CONTEXT: f"{EXTENSION_SLUG}:additional_context",
    },
    nested_errors=True,
    send_done=True,
)

LEGACY = Dialect(
    name="legacy",
    renames={
        ev.FUNCTION_CALL_ARGUMENTS_DELTA: "response.tool_call.delta",
        ev.ERROR: "response.error",
        ev.REASONING_TEXT_DELTA: "response.reasoning.delta",
        ev.REASONING_TEXT_DONE: "response.reasoning.done",
        ev.REASONING_SUMMARY_PART_ADDED: "response.reasoning.summary.added",
        ev.REASONING_SUMMARY_TEXT_DELTA: "response.reasoning.summary.delta",
        ev.REASONING_SUMMARY_TEXT_DONE: "response.reasoning.summary.done",
    },
    send_done=True,
)

_DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENAI, OPEN_RESPONSES, LEGACY)}
DIALECTS: Mapping[str, Dialect] = MappingProxyType(_DIALECTS)
"""The registered dialects by name (read-only view)."""


class UnknownDialect(ValueError):
    pass


def register_dialect(dialect: Dialect) -> None:
    """Add a dialect (at import time of the module that defines it)."""
    if dialect.name in _DIALECTS and _DIALECTS[dialect.name] is not dialect:
        raise ValueError(f"dialect {dialect.name!r} is already registered")
    _DIALECTS[dialect.name] = dialect


def get_dialect(dialect: str | Dialect) -> Dialect:
    if isinstance(dialect, Dialect):
        return dialect
    try:
        return _DIALECTS[dialect]
    except KeyError:
        raise UnknownDialect(f"unknown stream dialect {dialect!r}") from None


def stream_end(dialect: str | Dialect = "openai", *, done: bool = False) -> bytes:
    """What follows the terminal event: :data:`DONE` or nothing, per dialect; ``done`` asks for
    it in a dialect that does not send it by default."""
    return DONE if done or get_dialect(dialect).send_done else b""


# --- JSON ------------------------------------------------------------------------------------


# Built once: ``json.dumps`` with non-default options constructs a new encoder on every call.
_JSON_UTF8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_JSON_ASCII = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)

# And ``JSONEncoder.encode`` builds its C encoder afresh on every call: this one is built once,
# with the same options, so it writes the same bytes. Without a circular-reference check (its
# shared bookkeeping would outlive a failed call); events are trees.
_C_UTF8 = (
    c_make_encoder(None, _JSON_UTF8.default, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)


def _dumps_ascii(value: Any) -> bytes:
    # Lone surrogates (possible in text decoded from a broken upstream) cannot be UTF-8 encoded;
    # \u escapes keep the frame valid JSON and round-trip to the same Python string, so
    # the stream stays well-formed whatever the upstream sent.
    return _JSON_ASCII.encode(value).encode("ascii")


def dumps(value: Any) -> bytes:
    """Compact one-line JSON as UTF-8 bytes (never contains a raw newline).

    The standard library's encoder and nothing faster on purpose: the bytes on the wire are
    part of the contract (golden streams), and other encoders write some floats differently
    (``1e-05`` vs ``1e-5``)."""
    try:
        if _C_UTF8 is not None:
            return "".join(_C_UTF8(value, 0)).encode("utf-8")
        return _JSON_UTF8.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return _dumps_ascii(value)


# --- the encoder -----------------------------------------------------------------------------

# The per-token events. One whose keys are in the order the builder writes them and whose
# values are plain strings and integers (and, for ``logprobs``, an empty list) is written
# field by field with the standard library's own string escaping: the same bytes ``dumps``
# writes, in a third of the time. Anything else takes the general path.


def _text_delta(event: Event, head: str) -> str | None:
    if len(event) != 7:
        return None
    _, number, item_id, output_index, content_index, delta, logprobs = event.values()
    if (
        type(number) is int
        and type(item_id) is str
        and type(output_index) is int
        and type(content_index) is int
        and type(delta) is str
        and type(logprobs) is list
        and not logprobs
    ):
        return (
            f'{head}{number},"item_id":{encode_basestring(item_id)},"output_index":'
            f'{output_index},"content_index":{content_index},"delta":'
            f'{encode_basestring(delta)},"logprobs":[]}}\n\n'
        )
    return None


def _part_delta(event: Event, head: str, index_key: str) -> str | None:
    # reasoning_text.delta (content_index) and reasoning_summary_text.delta (summary_index)
    if len(event) != 6:
        return None
    _, number, item_id, output_index, index, delta = event.values()
    if (
        type(number) is int
        and type(item_id) is str
        and type(output_index) is int
        and type(index) is int
        and type(delta) is str
    ):
        return (
            f'{head}{number},"item_id":{encode_basestring(item_id)},"output_index":'
            f'{output_index},"{index_key}":{index},"delta":{encode_basestring(delta)}}}\n\n'
        )
    return None


def _arguments_delta(event: Event, head: str) -> str | None:
    if len(event) != 5:
        return None
    _, number, item_id, output_index, delta = event.values()
    if (
        type(number) is int
        and type(item_id) is str
        and type(output_index) is int
        and type(delta) is str
    ):
        return (
            f'{head}{number},"item_id":{encode_basestring(item_id)},"output_index":'
            f'{output_index},"delta":{encode_basestring(delta)}}}\n\n'
        )
    return None


_DELTA_SHAPES: dict[str, tuple[tuple[str, ...], Callable[[Event, str], str | None]]] = {
    ev.OUTPUT_TEXT_DELTA: (
        (
            "type",
            "sequence_number",
            "item_id",
            "output_index",
            "content_index",
            "delta",
            "logprobs",
        ),
        _text_delta,
    ),
    ev.REASONING_TEXT_DELTA: (
        ("type", "sequence_number", "item_id", "output_index", "content_index", "delta"),
        lambda event, head: _part_delta(event, head, "content_index"),
    ),
    ev.REASONING_SUMMARY_TEXT_DELTA: (
        ("type", "sequence_number", "item_id", "output_index", "summary_index", "delta"),
        lambda event, head: _part_delta(event, head, "summary_index"),
    ),
    ev.FUNCTION_CALL_ARGUMENTS_DELTA: (
        ("type", "sequence_number", "item_id", "output_index", "delta"),
        _arguments_delta,
    ),
}
_heads: dict[str, str] = {}


def _delta_frame(event: Event, wire_type: str) -> bytes | None:
    keys, write = _DELTA_SHAPES[event["type"]]
    if type(wire_type) is not str or tuple(event) != keys:
        return None
    head = _heads.get(wire_type)
    if head is None:
        head = _heads[wire_type] = (
            f'event: {wire_type}\ndata: {{"type":{encode_basestring(wire_type)},"sequence_number":'
        )
    frame = write(event, head)
    if frame is None:
        return None
    try:
        return frame.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: the general path escapes it


def encode_event(event: Event, *, dialect: str | Dialect = "openai") -> bytes:
    """One SSE frame: ``event: <type>\\ndata: <json>\\n\\n``, with ``event:`` equal to ``type``."""
    dialect = get_dialect(dialect)
    kind = event.get("type")
    if kind in _DELTA_SHAPES and dialect.transform is None:
        frame = _delta_frame(event, dialect.renames.get(kind, kind))
        if frame is not None:
            return frame
    wire = dialect.apply(event)
    return b"event: " + str(wire["type"]).encode("utf-8") + b"\ndata: " + dumps(wire) + b"\n\n"
