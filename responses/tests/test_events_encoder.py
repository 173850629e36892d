"""The SSE encoder and dialects, read back with the ``openai`` SDK's own SSE decoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from engines.runtime.types import Finish, TextDelta, ToolCallArgumentsDelta, ToolCallStart, Usage
from responses.streaming import encoder
from responses.streaming import events as ev
from responses.streaming.builder import StreamBuilder
from responses.streaming.encoder import (
    DONE,
    KEEPALIVE,
    Dialect,
    UnknownDialect,
    encode_event,
    get_dialect,
    register_dialect,
    stream_end,
)
from responses.streaming.objects import ResponseEcho
from testsupport.conformance import check_stream


def _decode(body: bytes, *, chunk: int | None = None) -> list:
    chunks = [body] if chunk is None else [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return list(SSEDecoder().iter_bytes(iter(chunks)))


def _stream() -> list[dict]:
    builder = StreamBuilder(echo=ResponseEcho(model="m"))
    events = builder.start()
    for delta in (
        TextDelta("Grüße, "),
        TextDelta("世界 🌍\nline two \u2028 end"),
        ToolCallStart(index=0, call_id="call_1", name="f"),
        ToolCallArgumentsDelta(index=0, delta='{"q": "a\\"b"}'),
        Usage(input_tokens=3, output_tokens=9),
        Finish("tool_calls"),
    ):
        events += builder.feed(delta)
    return events + builder.finish()


def test_a_frame_is_event_line_data_line_blank_line():
    frame = encode_event({"type": "response.output_text.delta", "sequence_number": 3, "delta": "x"})
    assert frame == (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","sequence_number":3,"delta":"x"}\n\n'
    )


def test_the_sdk_decoder_reads_every_frame_and_event_equals_type():
    events = _stream()
    body = b"".join(encode_event(event) for event in events)
    decoded = _decode(body)
    assert [sse.json() for sse in decoded] == events
    assert all(sse.event == sse.json()["type"] for sse in decoded)
    check_stream([sse.json() for sse in decoded])


def test_frames_survive_arbitrary_chunking_even_inside_utf8_characters():
    events = _stream()
    body = b"".join(encode_event(event) for event in events)
    assert [sse.json() for sse in _decode(body, chunk=3)] == events


def test_data_is_one_compact_line_of_raw_utf8():
    deltas = [e for e in _stream() if e["type"] == ev.OUTPUT_TEXT_DELTA]
    frame = b"".join(encode_event(e) for e in deltas[:1])
    assert "Grüße".encode() in frame  # not \u-escaped
    frame = encode_event(deltas[1])  # carries "\n" and U+2028 in its text
    lines = frame.split(b"\n")
    assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: ")
    assert lines[2:] == [b"", b""]  # exactly one data line, then the blank line
    assert "世界 🌍".encode() in frame
    assert b'", "' not in frame and b'": ' not in frame  # compact separators


def test_text_with_lone_surrogates_still_makes_a_valid_frame():
    event = {"type": "response.output_text.delta", "sequence_number": 0, "delta": "bad \ud800 half"}
    frame = encode_event(event)
    frame.decode("ascii")  # escaped, so any client can read it
    assert _decode(frame)[0].json() == event


def test_keepalive_is_a_comment_the_sdk_ignores():
    assert KEEPALIVE == b": keep-alive\n\n"
    events = _stream()
    body = KEEPALIVE + b"".join(encode_event(e) + KEEPALIVE for e in events)
    assert [sse.json() for sse in _decode(body)] == events


@pytest.mark.compliance("L5")
def test_done_is_the_data_only_sentinel():
    assert DONE == b"data: [DONE]\n\n"
    (sse,) = _decode(DONE)
    assert sse.event is None and sse.data == "[DONE]"


@pytest.mark.compliance("L5")
def test_the_openai_dialect_changes_nothing_and_sends_no_done():
    dialect = get_dialect("openai")
    event = {"type": "error", "sequence_number": 1, "code": "x", "message": "m", "param": None}
    assert dialect.apply(event) is event
    assert stream_end("openai") == b""
    assert encode_event(event) == encode_event(event, dialect=dialect)


def test_unknown_dialects_are_refused():
    with pytest.raises(UnknownDialect):
        encode_event({"type": "error"}, dialect="nope")


def test_a_dialect_maps_canonical_events_without_mutating_them(monkeypatch):
    # Shaped like the future open-responses dialect (L3): renamed reasoning events, nested
    # errors, [DONE]. Registered here only, to prove generation needs no change for it.
    monkeypatch.setattr(encoder, "_DIALECTS", dict(encoder._DIALECTS))
    other = Dialect(
        name="test-dialect",
        renames={
            ev.REASONING_TEXT_DELTA: "response.reasoning.delta",
            ev.REASONING_TEXT_DONE: "response.reasoning.done",
        },
        nested_errors=True,
        send_done=True,
    )
    register_dialect(other)
    register_dialect(other)  # idempotent for the same object
    with pytest.raises(ValueError, match="already registered"):
        register_dialect(Dialect(name="test-dialect"))

    delta = {"type": ev.REASONING_TEXT_DELTA, "sequence_number": 4, "delta": "hm"}
    (sse,) = _decode(encode_event(delta, dialect="test-dialect"))
    assert sse.event == "response.reasoning.delta"
    assert sse.json() == {"type": "response.reasoning.delta", "sequence_number": 4, "delta": "hm"}
    assert delta["type"] == ev.REASONING_TEXT_DELTA

    error = {"type": "error", "sequence_number": 9, "code": "c", "message": "m", "param": None}
    (sse,) = _decode(encode_event(error, dialect="test-dialect"))
    assert sse.json() == {
        "type": "error",
        "sequence_number": 9,
        "error": {"type": "server_error", "code": "c", "message": "m", "param": None},
    }
    assert "error" not in error
    assert stream_end("test-dialect") == DONE


def test_a_dialect_transform_runs_last():
    tagged = Dialect(
        name="tagged", transform=lambda event: {**event, "x": json.dumps(event["type"])}
    )
    frame = encode_event({"type": "response.created", "sequence_number": 0}, dialect=tagged)
    assert _decode(frame)[0].json()["x"] == '"response.created"'


# --- the per-token shortcut writes what the general path writes ---------------------------------

_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\u2028", "\ud800"]),
        st.characters(),
    ),
    max_size=12,
)


def _general_frame(event: dict, dialect: str) -> bytes:
    wire = get_dialect(dialect).apply(event)
    return b"event: " + wire["type"].encode() + b"\ndata: " + encoder.dumps(wire) + b"\n\n"


@given(
    kind=st.sampled_from(["text", "text_logprobs", "reasoning", "summary", "arguments"]),
    number=st.one_of(st.integers(min_value=-5, max_value=10**6), st.booleans()),
    index=st.one_of(st.integers(min_value=0, max_value=3), st.just(True)),
    item_id=_TEXT,
    delta=_TEXT,
    dialect=st.sampled_from(["openai", "open-responses", "legacy"]),
)
def test_delta_events_are_written_exactly_as_the_general_encoder_writes_them(
    kind, number, index, item_id, delta, dialect
):
    event = {
        "text": lambda: ev.output_text_delta(
            item_id=item_id, output_index=index, content_index=0, delta=delta
        ),
        "text_logprobs": lambda: ev.output_text_delta(
            item_id=item_id,
            output_index=0,
            content_index=index,
            delta=delta,
            logprobs=[{"token": delta, "logprob": -1.5e-05, "top_logprobs": []}],
        ),
        "reasoning": lambda: ev.reasoning_text_delta(
            item_id=item_id, output_index=index, content_index=0, delta=delta
        ),
        "summary": lambda: ev.reasoning_summary_text_delta(
            item_id=item_id, output_index=0, summary_index=index, delta=delta
        ),
        "arguments": lambda: ev.function_call_arguments_delta(
            item_id=item_id, output_index=index, delta=delta
        ),
    }[kind]()
    numbered = {"type": event["type"], "sequence_number": number} | event
    assert encode_event(numbered, dialect=dialect) == _general_frame(numbered, dialect)
    # Keys in another order, or one more, are not the builder's shape: still the same bytes.
    reordered = dict(reversed(numbered.items()))
    assert encode_event(reordered, dialect=dialect) == _general_frame(reordered, dialect)
    extra = numbered | {"obfuscation": "x"}
    assert encode_event(extra, dialect=dialect) == _general_frame(extra, dialect)
