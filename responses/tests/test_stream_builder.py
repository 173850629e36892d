"""Golden event sequences from ``StreamBuilder``, every one checked by ``check_stream`` (L1, L6).

``check_stream`` validates each event and Response with the ``openai`` SDK's types and checks
numbering, the §4.4 ordering rules and that deltas add up to the final texts; the tests here pin
the exact sequences and payloads on top of that.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from engines.runtime.types import (
    Finish,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStart,
    TopLogprob,
    Usage,
)
from responses.streaming.builder import StreamBuilder, StreamProtocolError, StreamStateError
from responses.streaming.objects import ResponseEcho
from testsupport.conformance import check_response, check_stream
from testsupport.stream_builder import CREATED_AT, make_builder, run, types


def strip(event: dict) -> dict:
    """An event without its (large) Response, for comparing item-level payloads."""
    return {key: value for key, value in event.items() if key != "response"}


TEXT_ITEM_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


# --- golden: text ----------------------------------------------------------------------------


def test_golden_text_stream_matches_the_reference_exactly():
    builder = make_builder()
    events = run(
        builder,
        [
            TextDelta("Hi"),
            TextDelta(" there"),
            Finish("stop"),
            Usage(input_tokens=5, output_tokens=2),
        ],
    )
    check_stream(events)
    message = {"type": "message", "id": "msg_1", "role": "assistant"}
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    final_part = {"type": "output_text", "text": "Hi there", "annotations": [], "logprobs": []}
    assert [strip(e) for e in events] == [
        {"type": "response.created", "sequence_number": 0},
        {"type": "response.in_progress", "sequence_number": 1},
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 0,
            "item": message | {"status": "in_progress", "content": []},
        },
        {
            "type": "response.content_part.added",
            "sequence_number": 3,
            **text,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 4,
            **text,
            "delta": "Hi",
            "logprobs": [],
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 5,
            **text,
            "delta": " there",
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            "sequence_number": 6,
            **text,
            "text": "Hi there",
            "logprobs": [],
        },
        {"type": "response.content_part.done", "sequence_number": 7, **text, "part": final_part},
        {
            "type": "response.output_item.done",
            "sequence_number": 8,
            "output_index": 0,
            "item": message | {"status": "completed", "content": [final_part]},
        },
        {"type": "response.completed", "sequence_number": 9},
    ]
    created, in_progress, completed = events[0], events[1], events[-1]
    for event in (created, in_progress):
        assert event["response"]["status"] == "in_progress"
        assert event["response"]["output"] == []
        assert event["response"]["usage"] is None
        assert event["response"]["completed_at"] is None
    final = completed["response"]
    assert final["id"] == "resp_1" and final["created_at"] == CREATED_AT
    assert final["status"] == "completed" and final["completed_at"] == CREATED_AT + 1
    assert final["output"] == [events[8]["item"]]
    assert final["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }
    assert check_response(final).output_text == "Hi there"
    assert builder.snapshot() == final


def test_deltas_concatenate_to_the_final_text():
    chunks = ["Α", "β", "γ 🌍", "\n", "", "end"]
    events = run(make_builder(), [TextDelta(c) for c in chunks])
    check_stream(events)
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert deltas == done["text"] == "".join(chunks)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "".join(chunks)


def test_empty_text_deltas_emit_nothing():
    builder = make_builder()
    builder.start()
    assert builder.feed(TextDelta("")) == []
    assert builder.feed(ReasoningDelta("")) == []


def test_an_empty_generation_completes_with_no_output():
    events = check_stream(run(make_builder(), [Finish("stop")]))
    assert types(events) == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1]["response"]["output"] == []


# --- golden: function calls ------------------------------------------------------------------


def test_golden_one_tool_call():
    events = check_stream(
        run(
            make_builder(),
            [
                ToolCallStart(index=0, call_id="call_abc", name="get_weather"),
                ToolCallArgumentsDelta(index=0, delta='{"city":'),
                ToolCallArgumentsDelta(index=0, delta=' "Paris"}'),
                Finish("tool_calls"),
            ],
        )
    )
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "get_weather"}
    assert events[2]["item"] == call | {"arguments": "", "status": "in_progress"}
    assert strip(events[5]) == {
        "type": "response.function_call_arguments.done",
        "sequence_number": 5,
        "item_id": "fc_1",
        "output_index": 0,
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    done = call | {"arguments": '{"city": "Paris"}', "status": "completed"}
    assert events[6]["item"] == done
    assert events[-1]["response"]["output"] == [done]


def test_golden_parallel_tool_calls_interleaved_by_index():
    events = check_stream(
        run(
            make_builder(),
            [
                ToolCallStart(index=0, call_id="call_a", name="get_weather"),
                ToolCallArgumentsDelta(index=0, delta='{"city":'),
                ToolCallStart(index=1, call_id="call_b", name="get_time"),
                ToolCallArgumentsDelta(index=1, delta='{"tz":'),
                ToolCallArgumentsDelta(index=0, delta=' "Paris"}'),
                ToolCallStart(index=2, call_id="chatcmpl-tool-9f8e", name="get_weather"),
                ToolCallArgumentsDelta(index=2, delta='{"city": "Oslo"}'),
                ToolCallArgumentsDelta(index=1, delta=' "UTC"}'),
                Finish("tool_calls"),
            ],
        )
    )
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        # closed in output order at the end: parallel calls may interleave until then
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    arg_deltas = [
        (e["output_index"], e["item_id"], e["delta"])
        for e in events
        if e["type"] == "response.function_call_arguments.delta"
    ]
    assert arg_deltas == [
        (0, "fc_1", '{"city":'),
        (1, "fc_2", '{"tz":'),
        (0, "fc_1", ' "Paris"}'),
        (2, "fc_3", '{"city": "Oslo"}'),
        (1, "fc_2", ' "UTC"}'),
    ]
    output = events[-1]["response"]["output"]
    assert [(o["call_id"], o["name"], json.loads(o["arguments"])) for o in output] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {"tz": "UTC"}),
        # vLLM's own ids are not OpenAI-shaped: a call_ id is minted instead (L7)
        ("call_1", "get_weather", {"city": "Oslo"}),
    ]
    assert {o["status"] for o in output} == {"completed"}


def test_text_before_tool_calls_is_closed_as_its_own_message():
    events = check_stream(
        run(
            make_builder(),
            [
                TextDelta("Let me check."),
                ToolCallStart(index=0, call_id="call_a", name="f"),
                ToolCallArgumentsDelta(index=0, delta="{}"),
                Finish("tool_calls"),
            ],
        )
    )
    assert types(events)[2:10] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
    ]
    assert [o["type"] for o in events[-1]["response"]["output"]] == ["message", "function_call"]


def test_invalid_json_arguments_still_make_a_well_formed_item():
    # E7: the model's raw string is kept; the item and the Response stay valid.
    broken = '{"city": "Par'
    events = check_stream(
        run(
            make_builder(),
            [
                ToolCallStart(index=0, call_id="call_a", name="get_weather"),
                ToolCallArgumentsDelta(index=0, delta=broken),
                Finish("tool_calls"),
            ],
        )
    )
    (call,) = events[-1]["response"]["output"]
    assert call["arguments"] == broken
    assert call["status"] == "completed"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["arguments"])


def test_a_protocol_error_while_queued_leaves_the_stream_coherent():
    builder = make_builder()
    events = builder.start(queued=True)
    with pytest.raises(StreamProtocolError):
        builder.feed(ToolCallArgumentsDelta(index=0, delta="{}"))
    assert builder.status == "queued"
    events += builder.fail("server_error", "malformed upstream stream")
    check_stream(events)


def test_a_repeated_tool_call_start_is_ignored_and_duplicate_call_ids_are_replaced():
    builder = make_builder()
    events = builder.start()
    events += builder.feed(ToolCallStart(index=0, call_id="call_same", name="f"))
    assert builder.feed(ToolCallStart(index=0, call_id="call_same", name="f")) == []
    events += builder.feed(ToolCallStart(index=1, call_id="call_same", name="g"))
    events += builder.finish()
    check_stream(events)
    assert [o["call_id"] for o in events[-1]["response"]["output"]] == ["call_same", "call_1"]


def test_arguments_for_an_unknown_call_are_a_protocol_error_and_fail_still_works():
    builder = make_builder()
    events = builder.start()
    with pytest.raises(StreamProtocolError):
        builder.feed(ToolCallArgumentsDelta(index=3, delta="{}"))
    events += builder.fail("server_error", "malformed upstream stream")
    check_stream(events)


# --- golden: structured output ---------------------------------------------------------------


def test_golden_json_schema_text():
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
        "required": ["city", "temp_c"],
        "additionalProperties": False,
    }
    text_format = {
        "format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}
    }
    chunks = ['{"city"', ': "Paris", ', '"temp_c": 21.5}']
    events = check_stream(
        run(
            make_builder(echo=ResponseEcho(model="m", text=text_format)),
            [TextDelta(c) for c in chunks],
        )
    )
    assert types(events)[2:-1] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    final = check_response(events[-1]["response"])
    assert json.loads(final.output_text) == {"city": "Paris", "temp_c": 21.5}
    assert final.text.format.type == "json_schema"
    assert final.text.format.name == "weather"
    assert events[0]["response"]["text"] == text_format


# --- golden: reasoning -----------------------------------------------------------------------


@pytest.mark.compliance("H2")
def test_golden_reasoning_then_text_without_summary():
    events = check_stream(
        run(make_builder(), [ReasoningDelta("Think"), ReasoningDelta("ing."), TextDelta("Hi")])
    )
    assert types(events)[2:10] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert events[2]["item"] == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [],
        "encrypted_content": None,
        "status": "in_progress",
    }
    assert events[3]["part"] == {"type": "reasoning_text", "text": ""}
    assert events[8]["item"]["content"] == [{"type": "reasoning_text", "text": "Thinking."}]
    assert [o["type"] for o in events[-1]["response"]["output"]] == ["reasoning", "message"]


@pytest.mark.compliance("H3")
def test_golden_reasoning_with_summary():
    # The summary is generated by another engine call while (or after) the answer streams;
    # the reasoning item stays open for it and closes at the end (H3).
    builder = make_builder(reasoning_summary=True)
    events = run(
        builder,
        [ReasoningDelta("The user "), ReasoningDelta("greets."), TextDelta("Hi"), TextDelta("!")],
        finish=False,
    )
    events += builder.add_reasoning_summary(["**Greeting** ", "the user."])
    events += builder.feed(Usage(input_tokens=4, output_tokens=6, reasoning_tokens=3))
    events += builder.finish()
    check_stream(events)
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # reasoning rs_1, output_index 0
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.added",  # message msg_1, output_index 1
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",  # reasoning first: closing follows output order
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    summary = {"item_id": "rs_1", "output_index": 0, "summary_index": 0}
    assert strip(events[12]) == {
        "type": "response.reasoning_summary_part.added",
        "sequence_number": 12,
        **summary,
        "part": {"type": "summary_text", "text": ""},
    }
    assert strip(events[16]) == {
        "type": "response.reasoning_summary_part.done",
        "sequence_number": 16,
        **summary,
        "part": {"type": "summary_text", "text": "**Greeting** the user."},
    }
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "**Greeting** the user."}],
        "content": [{"type": "reasoning_text", "text": "The user greets."}],
        "encrypted_content": None,
        "status": "completed",
    }
    assert message["content"][0]["text"] == "Hi!"
    assert events[-1]["response"]["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}


def test_a_summary_can_close_its_reasoning_item_before_the_answer():
    builder = make_builder(reasoning_summary=True)
    events = run(builder, [ReasoningDelta("why")], finish=False)
    events += builder.open_summary_part()
    events += builder.feed_summary("Part one.")
    events += builder.close_summary_part()
    events += builder.add_reasoning_summary(["Part two."])
    events += builder.close_reasoning()
    events += builder.feed(TextDelta("Answer"))
    events += builder.finish()
    check_stream(events)
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_summary_part.added",  # summaries may come while the text is open
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.reasoning_text.done",  # close_reasoning closes the text, then the item
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    reasoning = events[-1]["response"]["output"][0]
    assert [s["text"] for s in reasoning["summary"]] == ["Part one.", "Part two."]
    assert [e["summary_index"] for e in events if e["type"].endswith("summary_part.done")] == [0, 1]


def test_summaries_need_an_open_reasoning_item():
    builder = make_builder()  # reasoning_summary=False: the item closes when the text begins
    run(builder, [ReasoningDelta("why"), TextDelta("Hi")], finish=False)
    with pytest.raises(StreamStateError, match="already closed"):
        builder.add_reasoning_summary(["s"])
    with pytest.raises(StreamStateError, match="no summary part is open"):
        builder.feed_summary("s")
    no_reasoning = make_builder(reasoning_summary=True)
    no_reasoning.start()
    with pytest.raises(StreamStateError, match="no reasoning item"):
        no_reasoning.open_summary_part()


def test_reasoning_after_text_opens_a_new_reasoning_item():
    events = check_stream(
        run(
            make_builder(),
            [ReasoningDelta("a"), TextDelta("b"), ReasoningDelta("c"), TextDelta("d")],
        )
    )
    output = events[-1]["response"]["output"]
    assert [(o["type"], o["id"]) for o in output] == [
        ("reasoning", "rs_1"),
        ("message", "msg_1"),
        ("reasoning", "rs_2"),
        ("message", "msg_2"),
    ]


# --- golden: incomplete ----------------------------------------------------------------------


def test_golden_incomplete_on_length():
    events = check_stream(run(make_builder(), [TextDelta("Once upon"), Finish("length")]))
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert events[7]["item"]["status"] == "incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert final["output"][0]["status"] == "incomplete"


def test_length_during_reasoning_marks_the_reasoning_item_incomplete():
    events = check_stream(run(make_builder(), [ReasoningDelta("hmm"), Finish("length")]))
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


def test_length_during_parallel_calls_cuts_only_the_last_call():
    events = check_stream(
        run(
            make_builder(),
            [
                ToolCallStart(index=0, call_id="call_a", name="f"),
                ToolCallArgumentsDelta(index=0, delta="{}"),
                ToolCallStart(index=1, call_id="call_b", name="f"),
                ToolCallArgumentsDelta(index=1, delta='{"x": '),
                Finish("length"),
            ],
        )
    )
    assert [o["status"] for o in events[-1]["response"]["output"]] == ["completed", "incomplete"]


def test_content_filter_is_incomplete_with_its_reason():
    events = check_stream(run(make_builder(), [TextDelta("x"), Finish("content_filter")]))
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_finish_can_take_the_reason_directly():
    builder = make_builder()
    events = run(builder, [TextDelta("x")], finish=False) + builder.finish(reason="length")
    check_stream(events)
    assert events[-1]["type"] == "response.incomplete"


# --- golden: failure -------------------------------------------------------------------------


def test_golden_failure_mid_stream():
    builder = make_builder()
    events = run(builder, [TextDelta("Hal"), TextDelta("f")], finish=False)
    events += builder.fail("engine_timeout", "The engine did not answer in time.")
    check_stream(events)
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "error",
        "response.failed",
    ]
    assert events[6] == {
        "type": "error",
        "sequence_number": 6,
        "code": "engine_timeout",
        "message": "The engine did not answer in time.",
        "param": None,
    }
    failed = events[7]["response"]
    assert failed["status"] == "failed"
    # Response.error.code is a closed enum in OpenAI's spec: our own code folds into server_error.
    assert failed["error"] == {
        "code": "server_error",
        "message": "The engine did not answer in time.",
    }
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Half"
    assert builder.snapshot() == failed
    assert builder.closed


def test_failure_while_queued_still_announces_in_progress():
    builder = make_builder()
    events = builder.start(queued=True) + builder.fail("rate_limit_exceeded", "busy")
    check_stream(events)
    assert types(events) == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


# --- golden: cancellation and disconnects ----------------------------------------------------


def test_golden_cancellation():
    builder = make_builder()
    events = run(
        builder,
        [TextDelta("Part"), ToolCallStart(index=0, call_id="call_a", name="f")],
        finish=False,
    )
    number = builder.next_sequence_number
    final = builder.interrupt("cancelled")
    assert builder.next_sequence_number == number  # nothing was emitted
    check_response(final)
    assert final["status"] == "cancelled"
    assert final["incomplete_details"] is None and final["error"] is None
    assert [(o["type"], o["status"]) for o in final["output"]] == [
        ("message", "completed"),
        ("function_call", "incomplete"),
    ]
    assert builder.snapshot() == final
    with pytest.raises(StreamStateError):
        builder.feed(TextDelta("more"))
    with pytest.raises(StreamStateError):
        builder.finish()
    assert types(events)[-1] == "response.output_item.added"


def test_a_disconnect_leaves_an_incomplete_response_with_the_partial_output():
    builder = make_builder()
    run(builder, [ReasoningDelta("r"), TextDelta("partial")], finish=False)
    final = builder.interrupt("disconnect")
    check_response(final)
    assert final["status"] == "incomplete"
    assert [(o["type"], o["status"]) for o in final["output"]] == [
        ("reasoning", "completed"),
        ("message", "incomplete"),
    ]
    assert final["output"][1]["content"][0]["text"] == "partial"


# --- queued starts ---------------------------------------------------------------------------


def test_queued_start_then_the_first_delta_moves_to_in_progress():
    builder = make_builder(echo=ResponseEcho(model="m", background=True))
    events = builder.start(queued=True)
    assert types(events) == ["response.created", "response.queued"]
    assert {e["response"]["status"] for e in events} == {"queued"}
    events = run(make_builder(), [TextDelta("x")], queued=True)
    check_stream(events)
    assert types(events)[:4] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert events[2]["response"]["status"] == "in_progress"


def test_begin_is_explicit_and_idempotent():
    builder = make_builder()
    events = builder.start(queued=True)
    events += builder.begin()
    assert builder.begin() == []
    events += builder.finish()
    check_stream(events)
    assert types(events) == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
    ]


# --- logprobs --------------------------------------------------------------------------------

_TOKENS = [
    TokenLogprob(
        token="Hi",
        logprob=-0.1,
        top_logprobs=[
            TopLogprob(token="Hi", logprob=-0.1),
            TopLogprob(token="Hello", logprob=-2.3),
        ],
    ),
    TokenLogprob(token=" there", logprob=-0.5, bytes=[32, 116, 104, 101, 114, 101]),
]


def test_logprobs_when_included():
    events = check_stream(
        run(
            make_builder(include_logprobs=True),
            [TextDelta("Hi", logprobs=_TOKENS[:1]), TextDelta(" there", logprobs=_TOKENS[1:])],
        )
    )
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas[0]["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.1,
            "top_logprobs": [{"token": "Hi", "logprob": -0.1}, {"token": "Hello", "logprob": -2.3}],
        }
    ]
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert [lp["token"] for lp in done["logprobs"]] == ["Hi", " there"]
    part = events[-1]["response"]["output"][0]["content"][0]
    assert part["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [
                {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                {"token": "Hello", "logprob": -2.3, "bytes": list(b"Hello")},
            ],
        },
        {"token": " there", "logprob": -0.5, "bytes": list(b" there"), "top_logprobs": []},
    ]


def test_logprobs_are_empty_lists_when_not_included():
    events = check_stream(run(make_builder(), [TextDelta("Hi", logprobs=_TOKENS[:1])]))
    text_events = [e for e in events if "logprobs" in e]
    assert text_events and all(e["logprobs"] == [] for e in text_events)
    assert events[-1]["response"]["output"][0]["content"][0]["logprobs"] == []


def test_a_token_without_text_keeps_its_logprob():
    held_back = TokenLogprob(token="\\xe4", logprob=-1.0, bytes=[228])
    events = check_stream(
        run(
            make_builder(include_logprobs=True),
            [TextDelta("", logprobs=[held_back]), TextDelta("ä")],
        )
    )
    part = events[-1]["response"]["output"][0]["content"][0]
    assert part["text"] == "ä"
    assert [lp["bytes"] for lp in part["logprobs"]] == [[228]]


# --- snapshots, echo, usage, misuse ----------------------------------------------------------


def test_snapshot_mid_stream_has_the_partial_output():
    builder = make_builder()
    run(
        builder,
        [
            TextDelta("Hel"),
            ToolCallStart(index=0, call_id="call_a", name="f"),
            ToolCallArgumentsDelta(index=0, delta='{"a'),
        ],
        finish=False,
    )
    snapshot = builder.snapshot()
    check_response(snapshot)
    assert snapshot["status"] == "in_progress"
    assert [(o["type"], o["status"]) for o in snapshot["output"]] == [
        ("message", "completed"),
        ("function_call", "in_progress"),
    ]
    assert snapshot["output"][1]["arguments"] == '{"a'


def test_the_echo_is_in_every_lifecycle_response():
    echo = ResponseEcho(
        model="m",
        instructions="Be brief.",
        tools=[
            {"type": "function", "name": "f", "description": None, "parameters": {}, "strict": True}
        ],
        tool_choice="required",
        metadata={"k": "v"},
        prompt_cache_key="pck",
        service_tier="priority",
    )
    events = check_stream(run(make_builder(echo=echo), [TextDelta("x")]))
    for event in (events[0], events[1], events[-1]):
        response = event["response"]
        assert response["instructions"] == "Be brief."
        assert response["tools"][0]["name"] == "f"
        assert response["tool_choice"] == "required"
        assert response["metadata"] == {"k": "v"}
        assert response["prompt_cache_key"] == "pck"
        assert response["service_tier"] == "priority"


def test_events_do_not_share_mutable_state():
    builder = make_builder()
    events = builder.start() + builder.feed(TextDelta("x"))
    events[0]["response"]["metadata"]["changed"] = "yes"
    events[2]["item"]["content"].append("junk")
    events += builder.finish()
    final = events[-1]["response"]
    assert final["metadata"] == {}
    assert final["output"][0]["content"][0]["text"] == "x"


def test_usage_is_null_when_the_engine_reported_none():
    events = check_stream(run(make_builder(), [TextDelta("x")]))
    assert events[-1]["response"]["usage"] is None


def test_cached_and_reasoning_tokens_reach_usage():
    usage = Usage(input_tokens=100, output_tokens=20, cached_tokens=64, reasoning_tokens=12)
    events = check_stream(run(make_builder(), [TextDelta("x"), usage]))
    assert events[-1]["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 64
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 12


def test_misuse_is_refused():
    builder = make_builder()
    with pytest.raises(StreamStateError):
        builder.feed(TextDelta("x"))
    with pytest.raises(StreamStateError):
        builder.interrupt("disconnect")
    builder.start()
    with pytest.raises(StreamStateError):
        builder.start()
    builder.finish()
    for late in (lambda: builder.fail("server_error", "x"), lambda: builder.interrupt("cancelled")):
        with pytest.raises(StreamStateError):
            late()


def test_default_ids_are_random_and_openai_shaped():
    builder = StreamBuilder(echo=ResponseEcho(model="m"))
    events = run(builder, [ReasoningDelta("r"), TextDelta("t"), ToolCallStart(0, "x", "f")])
    check_stream(events)
    assert builder.response_id.startswith("resp_")
    assert [o["id"][:3] for o in events[-1]["response"]["output"]] == ["rs_", "msg", "fc_"]
    assert events[-1]["response"]["output"][2]["call_id"].startswith("call_")


@pytest.mark.compliance("E8")
def test_memory_stays_bounded_by_the_output_not_the_event_count():
    # E8: the builder keeps item state only; events are the caller's to store or drop.
    builder = make_builder()
    builder.start()
    builder.feed(TextDelta("warm-up"))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):
            builder.feed(TextDelta("ab"))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 40,000 characters of text; a retained event would cost hundreds of bytes each.
    assert grown < 400_000, grown
    assert builder.next_sequence_number == 2 + 2 + 1 + 20_000
