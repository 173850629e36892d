"""Translation of validated Responses requests into the engine's chat-completions vocabulary."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from core.errors import InvalidRequest
from responses.requests import (
    build_chat_messages,
    build_chat_tools,
    build_response_format,
    build_tool_choice,
    parse_create_request,
    stored_input_items,
)
from responses.requests.translate import engine_arguments

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}
TIME = {
    "type": "function",
    "name": "get_time",
    "description": None,
    "parameters": None,
    "strict": None,
}
NEWS = {
    "type": "function",
    "name": "get_news",
    "description": "Headlines",
    "parameters": {"type": "object"},
    "strict": False,
}

_messages_adapter = pydantic.TypeAdapter(list[ChatCompletionMessageParam])
_tools_adapter = pydantic.TypeAdapter(list[ChatCompletionToolParam])


def assert_valid_chat(messages: list[dict[str, Any]]) -> None:
    """Valid chat-completions messages: SDK types, and every tool message answers a call made
    by an earlier assistant message."""
    _messages_adapter.validate_python(messages)
    called: set[str] = set()
    for message in messages:
        assert message["role"] in ("system", "user", "assistant", "tool")
        for call in message.get("tool_calls") or []:
            called.add(call["id"])
        if message["role"] == "tool":
            assert message["tool_call_id"] in called


def parsed_input(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return list(parse_create_request({"model": "m", "input": list(entries)}).input)


def test_text_turn():
    request = parse_create_request({"model": "m", "input": "Hi", "instructions": "Be kind."})
    messages = build_chat_messages(
        instructions=request.instructions, history_items=[], input_items=request.input
    )
    assert messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    assert_valid_chat(messages)


def test_roles_and_content_parts():
    messages = build_chat_messages(
        instructions=None,
        history_items=[],
        input_items=parsed_input(
            {"role": "system", "content": "s"},
            {"role": "developer", "content": [{"type": "input_text", "text": "d"}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "x"},
                    {"type": "output_text", "text": "y"},
                ],
            },
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "user", "content": []},
        ),
    )
    assert messages == [
        {"role": "system", "content": "s"},
        {"role": "system", "content": "d"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "xy"},
        {"role": "assistant", "content": "I can't."},
        {"role": "user", "content": ""},
    ]
    assert_valid_chat(messages)


def test_full_tool_round_trip_through_a_chain():
    """user → reasoning + text + two parallel calls (response 1) → two outputs (response 2,
    chained) → answer → next user turn (response 3, chained): valid chat at every step."""
    first = parse_create_request(
        {
            "model": "m",
            "instructions": "Use tools.",
            "input": "Weather in Paris and Rome?",
            "tools": [WEATHER],
        }
    )
    first_input = stored_input_items(first.input)
    first_output = [
        {"id": "rs_1", "type": "reasoning", "status": "completed", "summary": [{"type": "summary_text", "text": "Two cities."}],
         "content": [{"type": "reasoning_text", "text": "I need both cities."}]},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_p", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_r", "name": "get_weather", "arguments": '{"city":"Rome"}'},
    ]  # fmt: skip

    second = parse_create_request(
        {
            "model": "m",
            "previous_response_id": "resp_1",
            "instructions": "Answer briefly.",
            "tools": [WEATHER],
            "input": [
                {"type": "function_call_output", "call_id": "call_p", "output": '{"temp": 18}'},
                {
                    "type": "function_call_output",
                    "call_id": "call_r",
                    "output": [{"type": "input_text", "text": '{"temp": 21}'}],
                },
            ],
        }
    )
    history = [*first_input, *first_output]
    second_input = stored_input_items(second.input)
    messages = build_chat_messages(
        instructions=second.instructions, history_items=history, input_items=second_input
    )
    assert messages == [
        # The second request's instructions only: the first's are not carried along the chain.
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "reasoning": "I need both cities.",
            "tool_calls": [
                {"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_r", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_p", "content": '{"temp": 18}'},
        {"role": "tool", "tool_call_id": "call_r", "content": '{"temp": 21}'},
    ]  # fmt: skip
    assert_valid_chat(messages)

    second_output = [
        {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Paris 18, Rome 21.", "annotations": []}]},
    ]  # fmt: skip
    third = parse_create_request(
        {"model": "m", "previous_response_id": "resp_2", "input": "Thanks!"}
    )
    messages = build_chat_messages(
        instructions=third.instructions,
        history_items=[*history, *second_input, *second_output],
        input_items=stored_input_items(third.input),
    )
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[-2:] == [
        {"role": "assistant", "content": "Paris 18, Rome 21."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert_valid_chat(messages)


def test_calls_without_text_merge_and_reasoning_can_be_dropped():
    items = parsed_input(
        {"role": "user", "content": "go"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "only a summary"}],
        },
        {"type": "function_call", "call_id": "a", "name": "get_time", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "get_news", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "noon"},
        {"type": "function_call_output", "call_id": "b", "output": "none"},
        {
            "type": "reasoning",
            "id": "rs_2",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "done"}],
        },
        {"type": "function_call", "call_id": "c", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "1pm"},
    )
    messages = build_chat_messages(instructions=None, history_items=[], input_items=items)
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "get_news", "arguments": "{}"}},
        ],
    }
    # A summary is not what the model thought: never sent. Raw reasoning is, on its message.
    assert messages[4]["reasoning"] == "done"
    assert_valid_chat(messages)
    without = build_chat_messages(
        instructions=None, history_items=[], input_items=items, include_reasoning=False
    )
    assert all("reasoning" not in message for message in without)
    assert_valid_chat(without)


def test_reasoning_without_a_following_message_is_dropped():
    items = parsed_input(
        {"role": "user", "content": "a"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "lost"}],
        },
        {"role": "user", "content": "b"},
    )
    messages = build_chat_messages(instructions=None, history_items=[], input_items=items)
    assert messages == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def test_text_after_tool_calls_starts_a_new_assistant_message():
    items = parsed_input(
        {"role": "user", "content": "a"},
        {"type": "function_call", "call_id": "a", "name": "get_time", "arguments": "{}"},
        {"role": "assistant", "content": "separate"},
        {"type": "function_call_output", "call_id": "a", "output": "x"},
    )
    messages = build_chat_messages(instructions=None, history_items=[], input_items=items)
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant", "tool"]
    assert messages[2] == {"role": "assistant", "content": "separate"}


@pytest.mark.compliance("E7")
def test_invalid_json_arguments_reach_the_engine_as_an_empty_object():
    items = parsed_input(
        {"role": "user", "content": "a"},
        {"type": "function_call", "call_id": "a", "name": "get_time", "arguments": '{"broken": '},
        {"type": "function_call", "call_id": "b", "name": "get_time", "arguments": ""},
        {"type": "function_call", "call_id": "c", "name": "get_time", "arguments": "[1, 2]"},
        {"type": "function_call", "call_id": "d", "name": "get_time", "arguments": '{"ok": true}'},
        {"type": "function_call_output", "call_id": "a", "output": "x"},
        {"type": "function_call_output", "call_id": "b", "output": "x"},
        {"type": "function_call_output", "call_id": "c", "output": "x"},
        {"type": "function_call_output", "call_id": "d", "output": "x"},
    )
    messages = build_chat_messages(instructions=None, history_items=[], input_items=items)
    arguments = [call["function"]["arguments"] for call in messages[1]["tool_calls"]]
    assert arguments == ["{}", "{}", "{}", '{"ok": true}']
    # The stored history keeps what the model really said.
    assert stored_input_items(items)[1]["arguments"] == '{"broken": '
    assert engine_arguments("not json") == "{}"


def test_output_without_its_call_is_openais_400():
    items = parsed_input(
        {"role": "user", "content": "a"},
        {"type": "function_call_output", "call_id": "call_x", "output": "x"},
    )
    with pytest.raises(InvalidRequest) as caught:
        build_chat_messages(instructions=None, history_items=[], input_items=items)
    assert caught.value.param == "input[1]"
    assert (
        caught.value.message == "No tool call found for function call output with call_id call_x."
    )


def test_call_without_its_output_is_openais_400():
    history = [
        *stored_input_items(parsed_input({"role": "user", "content": "a"})),
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1", "name": "get_time", "arguments": "{}"},
    ]  # fmt: skip
    with pytest.raises(InvalidRequest) as caught:
        build_chat_messages(
            instructions=None,
            history_items=history,
            input_items=parsed_input({"role": "user", "content": "b"}),
        )
    assert caught.value.param == "input"
    assert caught.value.message == "No tool output found for function call call_1."


def test_unresolved_item_reference_is_a_programming_error():
    with pytest.raises(ValueError, match="item references"):
        build_chat_messages(
            instructions=None,
            history_items=[],
            input_items=[{"type": "item_reference", "id": "msg_1"}],
        )


# --- tools -----------------------------------------------------------------------------------


def test_chat_tools():
    tools = build_chat_tools([WEATHER, TIME])
    _tools_adapter.validate_python(tools)
    assert tools == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["parameters"], "strict": True}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("tool_choice", "expected_choice", "expected_names"),
    [
        ("auto", "auto", ["get_weather", "get_time", "get_news"]),
        ("none", "none", ["get_weather", "get_time", "get_news"]),
        ("required", "required", ["get_weather", "get_time", "get_news"]),
        ({"type": "function", "name": "get_time"}, {"type": "function", "function": {"name": "get_time"}}, ["get_weather", "get_time", "get_news"]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_news"}, {"type": "function", "name": "get_weather"}]}, "auto", ["get_weather", "get_news"]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}, "required", ["get_time"]),
    ],
)  # fmt: skip
def test_tool_choice_translation(tool_choice, expected_choice, expected_names):
    request = parse_create_request(
        {"model": "m", "input": "x", "tools": [WEATHER, TIME, NEWS], "tool_choice": tool_choice}
    )
    choice, tools = build_tool_choice(tool_choice=request.tool_choice, tools=request.tools)
    assert choice == expected_choice
    assert [tool["function"]["name"] for tool in tools] == expected_names
    _tools_adapter.validate_python(tools)


def test_no_tools_means_no_tool_choice():
    request = parse_create_request({"model": "m", "input": "x", "tool_choice": "none"})
    assert build_tool_choice(tool_choice=request.tool_choice, tools=request.tools) == (None, [])


# --- response_format -------------------------------------------------------------------------


def test_response_formats():
    def fmt(text: dict[str, Any] | None) -> dict[str, Any] | None:
        request = parse_create_request({"model": "m", "input": "x", "text": text})
        return build_response_format(request.text_format)

    assert fmt(None) is None
    assert fmt({"format": {"type": "text"}}) is None
    assert fmt({"format": {"type": "json_object"}}) == {"type": "json_object"}
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert fmt(
        {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}}
    ) == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert fmt(
        {"format": {"type": "json_schema", "name": "thing", "schema": schema, "description": "d"}}
    ) == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": False, "description": "d"},
    }
