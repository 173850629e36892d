"""Encoded builder streams consumed by the real ``openai`` SDK client (its SSE decoding, strict
event validation, and the ``responses.stream()`` accumulator), through an in-memory transport.
"""

from __future__ import annotations

import json

import httpx
import openai
import pydantic
import pytest

from engines.runtime.types import (
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStart,
    Usage,
)
from responses.streaming.encoder import DONE, KEEPALIVE, encode_event
from responses.streaming.objects import ResponseEcho
from testsupport.stream_builder import make_builder, run, types


def sdk_client(
    events: list[dict], *, extra: bytes = b"", chunk: int | None = None
) -> openai.OpenAI:
    """An SDK client whose every request streams back ``events``, SSE-encoded."""
    body = b"".join(encode_event(event) + KEEPALIVE for event in events) + extra
    pieces = [body] if chunk is None else [body[i : i + chunk] for i in range(0, len(body), chunk)]

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=iter(pieces)
        )

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://platform.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
        # Validate every event against the SDK's models instead of constructing loosely.
        _strict_response_validation=True,
    )


def test_responses_stream_accumulates_a_text_stream():
    events = run(make_builder(), [TextDelta("Hi"), TextDelta(" there"), Usage(5, 2)])
    client = sdk_client(events, extra=DONE, chunk=5)
    with client.responses.stream(model="test-model", input="Hello") as stream:
        seen = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in seen] == types(events)
    assert [e.sequence_number for e in seen] == list(range(len(events)))
    snapshots = [e.snapshot for e in seen if e.type == "response.output_text.delta"]
    assert snapshots == ["Hi", "Hi there"]
    assert final.output_text == "Hi there"
    assert final.id == events[0]["response"]["id"]
    assert final.usage.total_tokens == 7


def test_raw_create_stream_yields_validated_events():
    events = run(
        make_builder(),
        [ReasoningDelta("hm"), TextDelta("ok"), ToolCallStart(0, "call_a", "f")],
    )
    client = sdk_client(events)
    seen = list(client.responses.create(model="test-model", input="x", stream=True))
    assert [(e.type, e.sequence_number) for e in seen] == [
        (e["type"], e["sequence_number"]) for e in events
    ]
    assert seen[-1].response.output[1].content[0].text == "ok"


def test_responses_stream_handles_parallel_tool_calls():
    events = run(
        make_builder(),
        [
            ToolCallStart(index=0, call_id="call_a", name="get_weather"),
            ToolCallStart(index=1, call_id="call_b", name="get_time"),
            ToolCallArgumentsDelta(index=1, delta='{"tz": "UTC"}'),
            ToolCallArgumentsDelta(index=0, delta='{"city": "Paris"}'),
            Finish("tool_calls"),
        ],
    )
    with sdk_client(events).responses.stream(model="test-model", input="x") as stream:
        snapshots = [
            (e.output_index, e.snapshot)
            for e in stream
            if e.type == "response.function_call_arguments.delta"
        ]
        final = stream.get_final_response()
    assert snapshots == [(1, '{"tz": "UTC"}'), (0, '{"city": "Paris"}')]
    assert [(o.call_id, o.name, o.arguments) for o in final.output] == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_time", '{"tz": "UTC"}'),
    ]


class Weather(pydantic.BaseModel):
    city: str
    temp_c: float


def test_responses_stream_parses_json_schema_text():
    text = {
        "format": {
            "type": "json_schema",
            "name": "Weather",
            "schema": Weather.model_json_schema(),
            "strict": True,
        }
    }
    events = run(
        make_builder(echo=ResponseEcho(model="m", text=text)),
        [TextDelta('{"city": "Paris",'), TextDelta(' "temp_c": 21.5}')],
    )
    client = sdk_client(events)
    with client.responses.stream(model="m", input="x", text_format=Weather) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Weather(city="Paris", temp_c=21.5)


@pytest.mark.compliance("H2", "H3")
def test_responses_stream_takes_a_summary_on_a_reasoning_item_kept_open():
    builder = make_builder(reasoning_summary=True)
    events = run(builder, [ReasoningDelta("why"), TextDelta("Hi")], finish=False)
    events += builder.add_reasoning_summary(["Short ", "summary."])
    events += builder.finish()
    with sdk_client(events).responses.stream(model="m", input="x") as stream:
        final = stream.get_final_response()
    reasoning, _message = final.output
    assert reasoning.summary[0].text == "Short summary."
    assert reasoning.content[0].text == "why"
    assert final.output_text == "Hi"


def test_queued_streams_are_accepted():
    events = run(make_builder(), [TextDelta("later")], queued=True)
    with sdk_client(events).responses.stream(model="m", input="x") as stream:
        assert stream.get_final_response().output_text == "later"


def test_an_incomplete_stream_is_read_to_the_end_but_has_no_final_response():
    # The SDK's helper only returns a final response for response.completed (reference §4.4).
    events = run(make_builder(), [TextDelta("Once"), Finish("length")])
    with sdk_client(events).responses.stream(model="m", input="x") as stream:
        last = list(stream)[-1]
        assert last.type == "response.incomplete"
        assert last.response.incomplete_details.reason == "max_output_tokens"
        assert last.response.output[0].status == "incomplete"
        with pytest.raises(RuntimeError, match=r"response.completed"):
            stream.get_final_response()


@pytest.mark.compliance("C4", "E1")
def test_a_failure_reaches_the_sdk_as_an_error_event_then_response_failed():
    builder = make_builder()
    events = run(builder, [TextDelta("Hal")], finish=False)
    events += builder.fail("engine_unavailable", "No healthy engine replica.")
    client = sdk_client(events)
    # The flat error event is yielded, not raised (a nested "error" key would raise APIError).
    seen = list(client.responses.create(model="m", input="x", stream=True))
    error, failed = seen[-2], seen[-1]
    assert (error.type, error.code, error.message) == (
        "error",
        "engine_unavailable",
        "No healthy engine replica.",
    )
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error.code == "server_error"
    assert failed.response.output[0].content[0].text == "Hal"


def test_the_harness_really_validates_events():
    # Guards the tests above: strict validation must reject a schema violation.
    events = run(make_builder(), [TextDelta("Hi")])
    del events[4]["logprobs"]  # the first output_text.delta
    with pytest.raises(openai.APIResponseValidationError):
        list(sdk_client(events).responses.create(model="m", input="x", stream=True))
