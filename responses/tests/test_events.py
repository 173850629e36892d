"""Ids, Response objects and the per-type event builders, each checked against the SDK's types."""

from __future__ import annotations

import inspect
import math

import pytest

from engines.runtime.types import TokenLogprob, TopLogprob
from responses.streaming import events as ev
from responses.streaming import ids, objects
from responses.streaming.objects import ResponseEcho
from testsupport.conformance import RESPONSE_KEYS, check_event, check_response

# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "prefix", "length"),
    [
        (ids.response_id, "resp_", 50),
        (ids.message_id, "msg_", 48),
        (ids.function_call_id, "fc_", 48),
        (ids.reasoning_id, "rs_", 48),
        (ids.call_id, "call_", 24),
    ],
)
@pytest.mark.compliance("L7")
def test_ids_have_openai_prefixes_and_lengths(make, prefix, length):
    generated = {make() for _ in range(200)}
    assert len(generated) == 200
    for value in generated:
        assert value.startswith(prefix)
        assert len(value) == len(prefix) + length
        assert value[len(prefix) :].isalnum()


def test_call_ids_look_like_call_ids_and_others_do_not():
    assert ids.looks_like_call_id(ids.call_id())
    assert ids.looks_like_call_id("call_abc-DEF_123")
    for other in ("chatcmpl-tool-1234", "", "call_", "call_ spaces", "fc_123", "call_a\nb"):
        assert not ids.looks_like_call_id(other), other


# --- the Response object ---------------------------------------------------------------------


def _response(**overrides):
    fields = {
        "response_id": "resp_1",
        "created_at": 1767225600,
        "echo": ResponseEcho(model="m"),
        "status": "in_progress",
    }
    return objects.response_object(**(fields | overrides))


def test_the_response_object_carries_every_key():
    response = _response()
    assert set(response) == RESPONSE_KEYS
    check_response(response)
    assert response["conversation"] is None
    assert response["prompt"] is None
    assert response["prompt_cache_retention"] is None
    assert response["usage"] is None
    assert response["output"] == []


def test_the_default_echo_matches_openais_skeleton():
    response = _response()
    assert {k: response[k] for k in ("tool_choice", "truncation", "text", "top_logprobs")} == {
        "tool_choice": "auto",
        "truncation": "disabled",
        "text": {"format": {"type": "text"}},
        "top_logprobs": 0,
    }
    assert response["parallel_tool_calls"] is True
    assert response["store"] is True
    assert response["background"] is False
    assert response["metadata"] == {}
    assert response["service_tier"] == "default"


def test_a_full_echo_validates_with_the_sdk():
    echo = ResponseEcho(
        model="qwen",
        instructions="Be brief.",
        previous_response_id="resp_prev",
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            }
        ],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        truncation="auto",
        text={"format": {"type": "json_object"}},
        reasoning={"effort": "low", "summary": "auto"},
        temperature=0.2,
        top_p=0.9,
        top_logprobs=3,
        max_output_tokens=256,
        max_tool_calls=4,
        store=False,
        background=True,
        service_tier="flex",
        metadata={"k": "v"},
        safety_identifier="user-1",
        prompt_cache_key="pck",
        prompt_cache_retention="24h",
        user="u",
    )
    model = check_response(_response(echo=echo, status="queued"))
    assert model.tools[0].name == "get_weather"
    assert model.reasoning.summary == "auto"
    assert model.service_tier == "flex"


def test_response_objects_do_not_share_the_echos_containers():
    echo = ResponseEcho(model="m", tools=[{"type": "function", "name": "f", "parameters": {}}])
    response = _response(echo=echo)
    response["tools"][0]["name"] = "changed"
    response["metadata"]["x"] = "y"
    assert echo.tools[0]["name"] == "f"
    assert echo.metadata == {}


def test_a_finished_response_with_items_validates():
    output = [
        objects.reasoning_item(item_id="rs_1", status="completed", summary=["s"], content=["r"]),
        objects.message_item(
            item_id="msg_1", status="completed", content=[objects.output_text_part("Hi")]
        ),
        objects.function_call_item(
            item_id="fc_1", call_id="call_1", name="f", arguments="{", status="incomplete"
        ),
    ]
    response = _response(
        status="incomplete",
        output=output,
        usage=objects.usage_object(input_tokens=5, output_tokens=2, cached_tokens=1),
        incomplete_details=objects.incomplete_details("max_output_tokens"),
    )
    model = check_response(response)
    assert model.output_text == "Hi"
    assert model.output[2].arguments == "{"  # E7: the raw string survives
    assert model.usage.total_tokens == 7


def test_usage_has_both_detail_objects():
    assert objects.usage_object(
        input_tokens=10, output_tokens=4, cached_tokens=6, reasoning_tokens=3
    ) == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 14,
    }


def test_response_error_codes_outside_openais_enum_become_server_error():
    assert objects.response_error("rate_limit_exceeded", "slow") == {
        "code": "rate_limit_exceeded",
        "message": "slow",
    }
    assert objects.response_error("engine_timeout", "t")["code"] == "server_error"
    assert objects.response_error(None, "t")["code"] == "server_error"
    error = objects.response_error("engine_timeout", "t")
    check_response(_response(status="failed", error=error))


def test_reasoning_items_have_every_key():
    assert objects.reasoning_item(item_id="rs_1", status="in_progress") == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [],
        "encrypted_content": None,
        "status": "in_progress",
    }


# --- logprobs --------------------------------------------------------------------------------

_LOGPROBS = [
    TokenLogprob(
        token="Hé",
        logprob=-0.25,
        top_logprobs=[TopLogprob(token="Hé", logprob=-0.25), TopLogprob(token="Ha", logprob=-1.5)],
    ),
    TokenLogprob(token="!", logprob=-math.inf, bytes=[33], top_logprobs=[]),
]


def test_delta_logprobs_have_no_bytes():
    assert objects.delta_logprobs(_LOGPROBS) == [
        {
            "token": "Hé",
            "logprob": -0.25,
            "top_logprobs": [{"token": "Hé", "logprob": -0.25}, {"token": "Ha", "logprob": -1.5}],
        },
        {"token": "!", "logprob": -9999.0, "top_logprobs": []},
    ]


def test_part_logprobs_carry_utf8_bytes_and_finite_values():
    rendered = objects.part_logprobs(_LOGPROBS)
    assert rendered[0]["bytes"] == list("Hé".encode())
    assert rendered[0]["top_logprobs"][1] == {"token": "Ha", "logprob": -1.5, "bytes": [72, 97]}
    assert rendered[1] == {"token": "!", "logprob": -9999.0, "bytes": [33], "top_logprobs": []}
    part = objects.output_text_part("Hé!", logprobs=rendered)
    message = objects.message_item(item_id="msg_1", status="completed", content=[part])
    check_response(_response(status="completed", completed_at=1767225601, output=[message]))


# --- event builders --------------------------------------------------------------------------

_MESSAGE = objects.message_item(item_id="msg_1", status="in_progress")
_TEXT = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
_SUMMARY = {"item_id": "rs_1", "output_index": 0, "summary_index": 0}

# One example per builder; the test below fails when a builder is added without an example.
_EXAMPLES = {
    "response_created": lambda: ev.response_created(_response()),
    "response_queued": lambda: ev.response_queued(_response(status="queued")),
    "response_in_progress": lambda: ev.response_in_progress(_response()),
    "response_completed": lambda: ev.response_completed(
        _response(status="completed", completed_at=1767225601)
    ),
    "response_incomplete": lambda: ev.response_incomplete(
        _response(
            status="incomplete",
            incomplete_details=objects.incomplete_details("max_output_tokens"),
        )
    ),
    "response_failed": lambda: ev.response_failed(
        _response(status="failed", error=objects.response_error("server_error", "boom"))
    ),
    "output_item_added": lambda: ev.output_item_added(output_index=0, item=_MESSAGE),
    "output_item_done": lambda: ev.output_item_done(
        output_index=0,
        item=objects.function_call_item(
            item_id="fc_1", call_id="call_1", name="f", arguments="{}", status="completed"
        ),
    ),
    "content_part_added": lambda: ev.content_part_added(**_TEXT, part=objects.output_text_part()),
    "content_part_done": lambda: ev.content_part_done(
        **_TEXT, part=objects.reasoning_text_part("because")
    ),
    "output_text_delta": lambda: ev.output_text_delta(**_TEXT, delta="Hi"),
    "output_text_done": lambda: ev.output_text_done(
        **_TEXT, text="Hi", logprobs=objects.delta_logprobs(_LOGPROBS)
    ),
    "reasoning_text_delta": lambda: ev.reasoning_text_delta(**_TEXT, delta="hm"),
    "reasoning_text_done": lambda: ev.reasoning_text_done(**_TEXT, text="hm"),
    "reasoning_summary_part_added": lambda: ev.reasoning_summary_part_added(
        **_SUMMARY, part=objects.summary_text_part()
    ),
    "reasoning_summary_part_done": lambda: ev.reasoning_summary_part_done(
        **_SUMMARY, part=objects.summary_text_part("s"), incomplete=True
    ),
    "reasoning_summary_text_delta": lambda: ev.reasoning_summary_text_delta(**_SUMMARY, delta="s"),
    "reasoning_summary_text_done": lambda: ev.reasoning_summary_text_done(**_SUMMARY, text="s"),
    "function_call_arguments_delta": lambda: ev.function_call_arguments_delta(
        item_id="fc_1", output_index=1, delta='{"a"'
    ),
    "function_call_arguments_done": lambda: ev.function_call_arguments_done(
        item_id="fc_1", output_index=1, name="f", arguments='{"a"'
    ),
    "error": lambda: ev.error(code="engine_timeout", message="upstream timed out"),
}


# Not OpenAI events: sent only to clients that opt in (H5, quotas/tests cover them), so there is
# no SDK type to validate them against.
_EXTENSIONS = {"response_rate_limits_updated", "response_additional_context"}


def test_every_builder_has_an_example():
    builders = {
        name
        for name, value in vars(ev).items()
        if inspect.isfunction(value) and value.__module__ == ev.__name__
    }
    assert builders == set(_EXAMPLES) | _EXTENSIONS


@pytest.mark.parametrize("name", sorted(_EXAMPLES))
def test_builders_make_valid_unnumbered_events(name):
    event = _EXAMPLES[name]()
    assert "sequence_number" not in event  # numbering is the StreamBuilder's job alone
    assert next(iter(event)) == "type"
    check_event({**event, "sequence_number": 7})


def test_the_error_event_is_flat():
    assert ev.error(code="server_error", message="boom", param=None) == {
        "type": "error",
        "code": "server_error",
        "message": "boom",
        "param": None,
    }


def test_function_call_arguments_done_names_the_function():
    event = ev.function_call_arguments_done(
        item_id="fc_1", output_index=0, name="get_weather", arguments="{}"
    )
    assert event["name"] == "get_weather"


def test_text_events_always_carry_logprobs():
    assert ev.output_text_delta(**_TEXT, delta="x")["logprobs"] == []
    assert ev.output_text_done(**_TEXT, text="x")["logprobs"] == []
    assert objects.output_text_part("x")["logprobs"] == []


def test_a_finished_summary_part_has_no_status_key():
    done = ev.reasoning_summary_part_done(**_SUMMARY, part=objects.summary_text_part("s"))
    assert "status" not in done


def test_terminal_types():
    assert {"response.completed", "response.incomplete", "response.failed"} == ev.TERMINAL_TYPES
