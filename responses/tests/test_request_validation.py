"""Request validation: a table of bad requests → (400, param, code), then good requests of every
form — hand-written, and bodies captured from the official ``openai`` SDK — and the stored item
shapes, each validated against the SDK's own ``ResponseItem`` types."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseInputItem,
    ResponseItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Content, Summary

from core.errors import InvalidRequest
from responses.requests import (
    CreateResponseRequest,
    parse_create_request,
    parse_input_tokens_request,
    parse_list_input_items_query,
    resolve_item_references,
    stored_input_items,
)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}
TIME_TOOL = {"type": "function", "name": "get_time", "parameters": None, "strict": None}


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "m", "input": "hi"}
    base.update(overrides)
    return base


def items(*entries: Any) -> dict[str, Any]:
    return body(input=list(entries))


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def fn_call(call_id: str = "call_1", arguments: str = "{}") -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": arguments,
    }


def fn_output(call_id: str = "call_1", output: Any = "ok") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def reasoning(**extra: Any) -> dict[str, Any]:
    return {"type": "reasoning", "id": "rs_1", "summary": [], **extra}


def drop(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != key}


LONG = "x" * 65

# fmt: off
BAD_REQUESTS: list[tuple[str, Any, str | None, str]] = [
    # --- top level -------------------------------------------------------------------------
    ("body-not-object", [], None, "invalid_type"),
    ("unknown-param", body(foo=1), "foo", "unknown_parameter"),
    ("chat-response-format", body(response_format={"type": "json_object"}), "response_format", "unknown_parameter"),
    ("vllm-policy-cache-salt", body(cache_salt="x"), "cache_salt", "unknown_parameter"),
    ("vllm-policy-priority", body(priority=0), "priority", "unknown_parameter"),
    ("vllm-policy-request-id", body(request_id="r"), "request_id", "unknown_parameter"),
    ("model-missing", {"input": "hi"}, "model", "missing_required_parameter"),
    ("model-null", body(model=None), "model", "missing_required_parameter"),
    ("model-type", body(model=5), "model", "invalid_type"),
    ("model-empty", body(model=""), "model", "empty_string"),
    ("input-missing", {"model": "m"}, "input", "missing_required_parameter"),
    ("input-empty", body(input=[]), "input", "empty_array"),
    ("input-type", body(input=5), "input", "invalid_type"),
    ("instructions-type", body(instructions=["x"]), "instructions", "invalid_type"),
    ("previous-prefix", body(previous_response_id="abc"), "previous_response_id", "invalid_value"),
    ("previous-type", body(previous_response_id=5), "previous_response_id", "invalid_type"),
    ("conversation-type", body(conversation=5), "conversation", "invalid_type"),
    ("conversation-empty", body(conversation=""), "conversation", "empty_string"),
    ("conversation-object-extra", body(conversation={"id": "conv_1", "x": 1}), "conversation.x", "unknown_parameter"),
    ("conversation-id-type", body(conversation={"id": 5}), "conversation.id", "invalid_type"),
    ("conversation-and-previous", body(conversation="conv_1", previous_response_id="resp_1"), "conversation", "invalid_value"),
    ("prompt-type", body(prompt="pmpt_1"), "prompt", "invalid_type"),
    ("prompt-no-id", body(prompt={"version": "1"}), "prompt.id", "missing_required_parameter"),
    ("prompt-extra", body(prompt={"id": "pmpt_1", "x": 1}), "prompt.x", "unknown_parameter"),
    ("prompt-version-type", body(prompt={"id": "pmpt_1", "version": 2}), "prompt.version", "invalid_type"),
    ("prompt-variables-type", body(prompt={"id": "pmpt_1", "variables": []}), "prompt.variables", "invalid_type"),
    ("context-management-threshold", body(context_management=[{"type": "compaction", "compact_threshold": 999}]), "context_management[0].compact_threshold", "integer_below_min_value"),
    ("context-management-kind", body(context_management=[{"type": "trim"}]), "context_management[0].type", "invalid_value"),
    ("context-management-type", body(context_management="auto"), "context_management", "invalid_type"),
    ("moderation", body(moderation={"model": "omni-moderation-latest"}), "moderation", "unsupported_parameter"),
    # --- input items ------------------------------------------------------------------------
    ("item-not-object", items(5), "input[0]", "invalid_type"),
    ("item-no-type-no-role", items({"content": "x"}), "input[0].type", "missing_required_parameter"),
    ("item-type-not-string", items({"type": 5}), "input[0].type", "invalid_type"),
    ("item-type-unknown", items({"type": "banana"}), "input[0].type", "invalid_value"),
    ("item-builtin-web-search", items(user(), {"type": "web_search_call", "id": "ws_1", "status": "completed"}), "input[1].type", "unsupported_value"),
    ("item-builtin-computer-output", items({"type": "computer_call_output", "call_id": "c"}), "input[0].type", "unsupported_value"),
    ("item-compaction-empty", items({"type": "compaction", "encrypted_content": ""}), "input[0].encrypted_content", "empty_string"),
    ("item-compaction-missing", items({"type": "compaction"}), "input[0].encrypted_content", "missing_required_parameter"),
    ("item-compaction-extra", items({"type": "compaction", "encrypted_content": "x", "summary": "y"}), "input[0].summary", "unknown_parameter"),
    ("item-custom-tool-call", items({"type": "custom_tool_call", "call_id": "c", "name": "n", "input": ""}), "input[0].type", "unsupported_value"),
    ("message-role", items({"role": "robot", "content": "x"}), "input[0].role", "invalid_value"),
    ("message-no-content", items({"role": "user"}), "input[0].content", "missing_required_parameter"),
    ("message-content-type", items({"role": "user", "content": 5}), "input[0].content", "invalid_type"),
    ("message-content-object", items({"role": "user", "content": {"text": "x"}}), "input[0].content", "invalid_type"),
    ("message-unknown-key", items({"role": "user", "content": "x", "foo": 1}), "input[0].foo", "unknown_parameter"),
    ("message-chat-tool-calls", items({"role": "assistant", "content": "", "tool_calls": []}), "input[0].tool_calls", "unknown_parameter"),
    ("message-tool-role", items({"role": "tool", "content": "x"}), "input[0].role", "invalid_value"),
    ("message-status", items({"role": "user", "content": "x", "status": "done"}), "input[0].status", "invalid_value"),
    ("message-phase", items({"role": "assistant", "content": "x", "phase": "draft"}), "input[0].phase", "invalid_value"),
    ("part-not-object", items({"role": "user", "content": ["x"]}), "input[0].content[0]", "invalid_type"),
    ("part-no-type", items({"role": "user", "content": [{"text": "x"}]}), "input[0].content[0].type", "missing_required_parameter"),
    ("part-image", items(user(), {"role": "user", "content": [{"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": "https://x/a.png", "detail": "auto"}]}), "input[1].content[1].image_url", "invalid_value"),
    ("part-file", items({"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}), "input[0].content[0].file_id", "unsupported_value"),
    ("part-audio", items({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}), "input[0].content[0].type", "invalid_value"),
    ("part-user-refusal", items({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}), "input[0].content[0].type", "invalid_value"),
    ("part-assistant-image", items({"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x"}]}), "input[0].content[0].type", "invalid_value"),
    ("part-assistant-unknown", items({"role": "assistant", "content": [{"type": "summary_text", "text": "x"}]}), "input[0].content[0].type", "invalid_value"),
    ("part-no-text", items({"role": "user", "content": [{"type": "input_text"}]}), "input[0].content[0].text", "missing_required_parameter"),
    ("part-text-type", items({"role": "user", "content": [{"type": "input_text", "text": 5}]}), "input[0].content[0].text", "invalid_type"),
    ("part-unknown-key", items({"role": "user", "content": [{"type": "input_text", "text": "x", "cache": 1}]}), "input[0].content[0].cache", "unknown_parameter"),
    ("refusal-missing", items({"role": "assistant", "content": [{"type": "refusal"}]}), "input[0].content[0].refusal", "missing_required_parameter"),
    ("call-no-call-id", items(user(), drop("call_id", fn_call())), "input[1].call_id", "missing_required_parameter"),
    ("call-no-name", items(drop("name", fn_call())), "input[0].name", "missing_required_parameter"),
    ("call-no-arguments", items(drop("arguments", fn_call())), "input[0].arguments", "missing_required_parameter"),
    ("call-arguments-object", items(fn_call(arguments={"city": "Paris"})), "input[0].arguments", "invalid_type"),
    ("call-status", items({**fn_call(), "status": "failed"}), "input[0].status", "invalid_value"),
    ("call-unknown-key", items({**fn_call(), "output": "x"}), "input[0].output", "unknown_parameter"),
    ("output-no-call-id", items(drop("call_id", fn_output())), "input[0].call_id", "missing_required_parameter"),
    ("output-call-id-long", items(fn_output(call_id="c" * 65)), "input[0].call_id", "string_above_max_length"),
    ("output-no-output", items(drop("output", fn_output())), "input[0].output", "missing_required_parameter"),
    ("output-type", items(fn_output(output=5)), "input[0].output", "invalid_type"),
    ("output-object", items(fn_output(output={"temp": 3})), "input[0].output", "invalid_type"),
    ("output-image", items(fn_output(output=[{"type": "input_image", "image_url": "https://x"}])), "input[0].output[0]", "unsupported_value"),
    ("output-part-type", items(fn_output(output=[{"type": "refusal", "refusal": "x"}])), "input[0].output[0].type", "invalid_value"),
    ("reasoning-encrypted-type", items(reasoning(encrypted_content=5)), "input[0].encrypted_content", "invalid_type"),
    ("reasoning-no-id", items(drop("id", reasoning())), "input[0].id", "missing_required_parameter"),
    ("reasoning-no-summary", items(drop("summary", reasoning())), "input[0].summary", "missing_required_parameter"),
    ("reasoning-summary-type", items(reasoning(summary="x")), "input[0].summary", "invalid_type"),
    ("reasoning-summary-part", items(reasoning(summary=[{"type": "reasoning_text", "text": "x"}])), "input[0].summary[0].type", "invalid_value"),
    ("reasoning-content-part", items(reasoning(content=[{"type": "reasoning_text"}])), "input[0].content[0].text", "missing_required_parameter"),
    ("item-reference-no-id", items({"type": "item_reference"}), "input[0].id", "missing_required_parameter"),
    ("item-reference-extra", items({"type": "item_reference", "id": "msg_1", "role": "user"}), "input[0].role", "unknown_parameter"),
    # --- tools ------------------------------------------------------------------------------
    ("tools-type", body(tools="get_weather"), "tools", "invalid_type"),
    ("tool-not-object", body(tools=["get_weather"]), "tools[0]", "invalid_type"),
    ("tool-no-type", body(tools=[drop("type", WEATHER_TOOL)]), "tools[0].type", "missing_required_parameter"),
    ("tool-web-search", body(tools=[WEATHER_TOOL, {"type": "web_search"}]), "tools[1].type", "unsupported_value"),
    ("tool-file-search", body(tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}]), "tools[0].type", "unsupported_value"),
    ("tool-mcp", body(tools=[{"type": "mcp", "server_label": "x"}]), "tools[0].type", "unsupported_value"),
    ("tool-custom", body(tools=[{"type": "custom", "name": "x"}]), "tools[0].type", "unsupported_value"),
    ("tool-unknown-type", body(tools=[{"type": "banana"}]), "tools[0].type", "invalid_value"),
    ("tool-no-name", body(tools=[{"type": "function", "parameters": {}}]), "tools[0].name", "missing_required_parameter"),
    ("tool-chat-shape", body(tools=[{"type": "function", "function": {"name": "x", "parameters": {}}}]), "tools[0].name", "missing_required_parameter"),
    ("tool-name-pattern", body(tools=[{**WEATHER_TOOL, "name": "get weather!"}]), "tools[0].name", "invalid_value"),
    ("tool-name-long", body(tools=[{**WEATHER_TOOL, "name": LONG}]), "tools[0].name", "invalid_value"),
    ("tool-name-empty", body(tools=[{**WEATHER_TOOL, "name": ""}]), "tools[0].name", "invalid_value"),
    ("tool-parameters-type", body(tools=[{**WEATHER_TOOL, "parameters": "object"}]), "tools[0].parameters", "invalid_type"),
    ("tool-strict-type", body(tools=[{**WEATHER_TOOL, "strict": "yes"}]), "tools[0].strict", "invalid_type"),
    ("tool-description-type", body(tools=[{**WEATHER_TOOL, "description": 5}]), "tools[0].description", "invalid_type"),
    ("tool-unknown-key", body(tools=[{**WEATHER_TOOL, "foo": 1}]), "tools[0].foo", "unknown_parameter"),
    ("tool-duplicate", body(tools=[WEATHER_TOOL, WEATHER_TOOL]), "tools[1].name", "invalid_value"),
    ("tool-defer-loading", body(tools=[{**WEATHER_TOOL, "defer_loading": True}]), "tools[0].defer_loading", "unsupported_value"),
    ("tool-allowed-callers", body(tools=[{**WEATHER_TOOL, "allowed_callers": ["robots"]}]), "tools[0].allowed_callers[0]", "invalid_value"),
    # --- tool_choice ------------------------------------------------------------------------
    ("choice-value", body(tools=[WEATHER_TOOL], tool_choice="sometimes"), "tool_choice", "invalid_value"),
    ("choice-type", body(tools=[WEATHER_TOOL], tool_choice=5), "tool_choice", "invalid_type"),
    ("choice-required-no-tools", body(tool_choice="required"), "tool_choice", "invalid_value"),
    ("choice-function-unknown", body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "nope"}), "tool_choice.name", "invalid_value"),
    ("choice-function-no-tools", body(tool_choice={"type": "function", "name": "get_weather"}), "tool_choice.name", "invalid_value"),
    ("choice-function-no-name", body(tools=[WEATHER_TOOL], tool_choice={"type": "function"}), "tool_choice.name", "missing_required_parameter"),
    ("choice-chat-shape", body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}), "tool_choice.function", "unknown_parameter"),
    ("choice-hosted", body(tools=[WEATHER_TOOL], tool_choice={"type": "web_search_preview"}), "tool_choice.type", "unsupported_value"),
    ("choice-mcp", body(tools=[WEATHER_TOOL], tool_choice={"type": "mcp", "server_label": "x"}), "tool_choice.type", "unsupported_value"),
    ("choice-unknown-type", body(tools=[WEATHER_TOOL], tool_choice={"type": "banana"}), "tool_choice.type", "invalid_value"),
    ("allowed-mode", body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools", "mode": "none", "tools": [{"type": "function", "name": "get_weather"}]}), "tool_choice.mode", "invalid_value"),
    ("allowed-no-tools", body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools", "mode": "auto"}), "tool_choice.tools", "missing_required_parameter"),
    ("allowed-empty", body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools", "mode": "auto", "tools": []}), "tool_choice.tools", "empty_array"),
    ("allowed-unknown-name", body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "nope"}]}), "tool_choice.tools[0].name", "invalid_value"),
    ("allowed-hosted", body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools", "mode": "auto", "tools": [{"type": "image_generation"}]}), "tool_choice.tools[0].type", "unsupported_value"),
    # --- tool call limits -------------------------------------------------------------------
    ("parallel-type", body(parallel_tool_calls="yes"), "parallel_tool_calls", "invalid_type"),
    ("max-tool-calls-zero", body(max_tool_calls=0), "max_tool_calls", "integer_below_min_value"),
    ("max-tool-calls-float", body(max_tool_calls=1.5), "max_tool_calls", "invalid_type"),
    ("max-tool-calls-bool", body(max_tool_calls=True), "max_tool_calls", "invalid_type"),
    # --- text -------------------------------------------------------------------------------
    ("text-type", body(text="json"), "text", "invalid_type"),
    ("text-unknown", body(text={"foo": 1}), "text.foo", "unknown_parameter"),
    ("text-format-type", body(text={"format": {"type": "xml"}}), "text.format.type", "invalid_value"),
    ("text-format-no-type", body(text={"format": {}}), "text.format.type", "missing_required_parameter"),
    ("text-format-extra", body(text={"format": {"type": "text", "name": "x"}}), "text.format.name", "unknown_parameter"),
    ("schema-no-name", body(text={"format": {"type": "json_schema", "schema": {}}}), "text.format.name", "missing_required_parameter"),
    ("schema-name-pattern", body(text={"format": {"type": "json_schema", "name": "my schema", "schema": {}}}), "text.format.name", "invalid_value"),
    ("schema-name-long", body(text={"format": {"type": "json_schema", "name": LONG, "schema": {}}}), "text.format.name", "invalid_value"),
    ("schema-missing", body(text={"format": {"type": "json_schema", "name": "s"}}), "text.format.schema", "missing_required_parameter"),
    ("schema-type", body(text={"format": {"type": "json_schema", "name": "s", "schema": "object"}}), "text.format.schema", "invalid_type"),
    ("schema-strict-type", body(text={"format": {"type": "json_schema", "name": "s", "schema": {}, "strict": "yes"}}), "text.format.strict", "invalid_type"),
    ("schema-chat-shape", body(text={"format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}}}), "text.format.json_schema", "unknown_parameter"),
    ("verbosity", body(text={"verbosity": "loud"}), "text.verbosity", "invalid_value"),
    # --- reasoning --------------------------------------------------------------------------
    ("reasoning-type", body(reasoning="high"), "reasoning", "invalid_type"),
    ("reasoning-effort", body(reasoning={"effort": "extreme"}), "reasoning.effort", "invalid_value"),
    ("reasoning-summary", body(reasoning={"summary": "long"}), "reasoning.summary", "invalid_value"),
    ("reasoning-generate-summary", body(reasoning={"generate_summary": "yes"}), "reasoning.generate_summary", "invalid_value"),
    ("reasoning-context", body(reasoning={"context": "everything"}), "reasoning.context", "invalid_value"),
    ("reasoning-unknown", body(reasoning={"budget": 100}), "reasoning.budget", "unknown_parameter"),
    # --- sampling ---------------------------------------------------------------------------
    ("max-output-low", body(max_output_tokens=15), "max_output_tokens", "integer_below_min_value"),
    ("max-output-type", body(max_output_tokens="100"), "max_output_tokens", "invalid_type"),
    ("max-output-float", body(max_output_tokens=100.0), "max_output_tokens", "invalid_type"),
    ("temperature-high", body(temperature=2.5), "temperature", "decimal_above_max_value"),
    ("temperature-low", body(temperature=-0.1), "temperature", "decimal_below_min_value"),
    ("temperature-type", body(temperature="hot"), "temperature", "invalid_type"),
    ("temperature-bool", body(temperature=True), "temperature", "invalid_type"),
    ("temperature-nan", body(temperature=float("nan")), "temperature", "invalid_value"),
    ("top-p-high", body(top_p=1.5), "top_p", "decimal_above_max_value"),
    ("top-logprobs-high", body(top_logprobs=21), "top_logprobs", "integer_above_max_value"),
    ("top-logprobs-low", body(top_logprobs=-1), "top_logprobs", "integer_below_min_value"),
    ("presence-penalty", body(presence_penalty=3), "presence_penalty", "decimal_above_max_value"),
    # --- include, metadata ------------------------------------------------------------------
    ("include-type", body(include="message.output_text.logprobs"), "include", "invalid_type"),
    ("include-unknown", body(include=["message.output_text.logprobs", "usage.details"]), "include[1]", "invalid_value"),
    ("metadata-type", body(metadata=["a"]), "metadata", "invalid_type"),
    ("metadata-keys", body(metadata={f"k{i}": "v" for i in range(17)}), "metadata", "object_above_max_properties"),
    ("metadata-key-long", body(metadata={LONG: "v"}), "metadata", "string_above_max_length"),
    ("metadata-value-long", body(metadata={"k": "v" * 513}), "metadata.k", "string_above_max_length"),
    ("metadata-value-type", body(metadata={"k": 5}), "metadata.k", "invalid_type"),
    # --- store, background, stream ----------------------------------------------------------
    ("store-type", body(store="no"), "store", "invalid_type"),
    ("background-without-store", body(background=True, store=False), "background", "invalid_value"),
    ("background-type", body(background="yes"), "background", "invalid_type"),
    ("background-window-needs-background", body(background_options={"completion_window": "2h"}), "background_options.completion_window", "invalid_value"),
    ("background-window-no-stream", body(background=True, stream=True, background_options={"completion_window": "8h"}), "background_options.completion_window", "invalid_value"),
    ("background-window-value", body(background_options={"completion_window": "1h"}), "background_options.completion_window", "invalid_value"),
    ("stream-type", body(stream="yes"), "stream", "invalid_type"),
    ("stream-options-without-stream", body(stream_options={"include_obfuscation": False}), "stream_options", "invalid_value"),
    ("stream-options-chat-usage", body(stream=True, stream_options={"include_usage": True}), "stream_options.include_usage", "unknown_parameter"),
    ("stream-options-type", body(stream=True, stream_options={"include_obfuscation": "no"}), "stream_options.include_obfuscation", "invalid_type"),
    # --- the rest ---------------------------------------------------------------------------
    ("truncation", body(truncation="sometimes"), "truncation", "invalid_value"),
    ("user-type", body(user=5), "user", "invalid_type"),
    ("safety-identifier-long", body(safety_identifier="s" * 129), "safety_identifier", "string_above_max_length"),
    ("prompt-cache-key-long", body(prompt_cache_key=LONG), "prompt_cache_key", "string_above_max_length"),
    ("prompt-cache-retention", body(prompt_cache_retention="forever"), "prompt_cache_retention", "invalid_value"),
    ("prompt-cache-options-ttl", body(prompt_cache_options={"ttl": "1h"}), "prompt_cache_options.ttl", "invalid_value"),
    ("service-tier", body(service_tier="turbo"), "service_tier", "invalid_value"),
    ("access-programs", body(access_programs={"cyber": "x"}), "access_programs.cyber", "invalid_value"),
    ("image", body(image={"context_compression": "x"}), "image.context_compression", "invalid_value"),
    # --- vLLM extras ------------------------------------------------------------------------
    ("top-k-type", body(top_k="5"), "top_k", "invalid_type"),
    ("top-k-low", body(top_k=-2), "top_k", "integer_below_min_value"),
    ("repetition-penalty-zero", body(repetition_penalty=0), "repetition_penalty", "decimal_below_min_value"),
    ("seed-float", body(seed=1.5), "seed", "invalid_type"),
    ("seed-huge", body(seed=2 ** 64), "seed", "integer_above_max_value"),
    ("stop-type", body(stop=5), "stop", "invalid_type"),
    ("stop-item-type", body(stop=["a", 5]), "stop[1]", "invalid_type"),
]
# fmt: on


@pytest.mark.parametrize(
    ("request_body", "param", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_are_400_naming_the_param(request_body, param, code):
    with pytest.raises(InvalidRequest) as caught:
        parse_create_request(request_body)
    error = caught.value
    assert (error.status, error.type, error.param, error.code) == (
        400,
        "invalid_request_error",
        param,
        code,
    ), error.message
    assert error.message and error.message.endswith((".", ")"))


def test_every_bad_request_case_is_distinct():
    names = [case[0] for case in BAD_REQUESTS]
    assert len(names) == len(set(names))


def test_messages_read_like_openai():
    cases = {
        "Unknown parameter: 'foo'.": body(foo=1),
        "Missing required parameter: 'model'.": {"input": "x"},
        "Invalid type for 'temperature': expected a decimal, but got a string instead.": body(
            temperature="x"
        ),
        "Invalid value: 'sometimes'. Supported values are: 'auto' and 'disabled'.": body(
            truncation="sometimes"
        ),
        "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 5 instead.": body(
            max_output_tokens=5
        ),
        "Invalid 'previous_response_id': 'abc'. Expected an ID that begins with 'resp'.": body(
            previous_response_id="abc"
        ),
    }
    for message, request_body in cases.items():
        with pytest.raises(InvalidRequest) as caught:
            parse_create_request(request_body)
        assert caught.value.message == message


def test_unsupported_things_say_what_they_are():
    checks = [
        (body(tools=[{"type": "web_search_preview"}]), "'web_search_preview'"),
        (items({"type": "mcp_call", "id": "x"}), "'mcp_call'"),
        (
            items({"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}),
            "input[0].content[0]",
        ),
        (body(tools=[WEATHER_TOOL], tool_choice={"type": "file_search"}), "'file_search'"),
    ]
    for request_body, fragment in checks:
        with pytest.raises(InvalidRequest) as caught:
            parse_create_request(request_body)
        assert fragment in caught.value.message


def test_chat_completions_tool_shape_gets_a_hint():
    with pytest.raises(InvalidRequest) as caught:
        parse_create_request(body(tools=[{"type": "function", "function": {"name": "x"}}]))
    assert "nested 'function' object" in caught.value.message


# --- good requests ---------------------------------------------------------------------------


def test_minimal_request_has_openai_defaults():
    request = parse_create_request({"model": "m", "input": "Hello"})
    assert request == CreateResponseRequest(
        model="m",
        input=(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello"}],
            },
        ),
    )
    assert request.store is True and request.background is False and request.stream is False
    assert request.truncation == "disabled"
    assert request.tool_choice == "auto" and request.tools == () and request.parallel_tool_calls
    assert request.text == {"format": {"type": "text"}, "verbosity": "medium"}
    assert request.service_tier == "auto" and request.requested_service_tier is None
    assert request.extra_body == {} and request.metadata == {} and request.include == ()
    assert not request.logprobs and not request.include_obfuscation


def test_nulls_mean_defaults():
    nullable = [
        "instructions", "previous_response_id", "conversation", "tools", "tool_choice",
        "parallel_tool_calls", "max_tool_calls", "text", "reasoning", "max_output_tokens",
        "temperature", "top_p", "top_logprobs", "include", "metadata", "store", "background",
        "stream", "stream_options", "truncation", "user", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention", "service_tier", "prompt",
        "context_management", "moderation", "top_k", "seed", "stop",
    ]  # fmt: skip
    request = parse_create_request(body(**dict.fromkeys(nullable)))
    assert request == parse_create_request(body())


def test_every_parameter_at_once_is_normalized():
    request = parse_create_request(
        {
            "model": "qwen",
            "input": [{"role": "developer", "content": "Be brief."}, user("Weather in Paris?")],
            "instructions": "You are helpful.",
            "previous_response_id": "resp_abc",
            "tools": [WEATHER_TOOL, TIME_TOOL],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_time"}],
            },
            "parallel_tool_calls": False,
            "max_tool_calls": 3,
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "answer",
                    "schema": {"type": "object"},
                    "description": "d",
                },
                "verbosity": "low",
            },
            "reasoning": {
                "effort": "high",
                "generate_summary": "concise",
                "mode": "pro",
                "context": "all_turns",
            },
            "max_output_tokens": 256,
            "temperature": 0.2,
            "top_p": 1,
            "top_logprobs": 5,
            "include": [
                "message.output_text.logprobs",
                "reasoning.encrypted_content",
                "file_search_call.results",
                "message.output_text.logprobs",
            ],
            "metadata": {"k" * 64: "v" * 512},
            "store": True,
            "background": True,
            "background_options": {"completion_window": "2h", "continuation_id": "c1"},
            "stream": False,
            "truncation": "auto",
            "user": "u-1",
            "safety_identifier": "s" * 128,
            "prompt_cache_key": "p" * 64,
            "prompt_cache_retention": "24h",
            "prompt_cache_options": {"ttl": "12h", "mode": "explicit", "prewarm": False},
            "service_tier": "fast",
            "context_management": [],
            "access_programs": {"cyber": "standard"},
            "image": {"context_compression": "auto"},
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "top_k": 40,
            "repetition_penalty": 1.1,
            "seed": 7,
            "stop": ["END"],
        }
    )
    assert request.input[0] == {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "Be brief."}],
    }
    assert request.instructions == "You are helpful."
    assert request.previous_response_id == "resp_abc"
    assert request.tools == (
        WEATHER_TOOL,
        {
            "type": "function",
            "name": "get_time",
            "description": None,
            "parameters": None,
            "strict": None,
        },
    )
    assert request.tool_choice == {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    assert request.parallel_tool_calls is False and request.max_tool_calls == 3
    assert request.text == {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "schema": {"type": "object"},
            "description": "d",
            "strict": False,
        },
        "verbosity": "low",
    }
    assert request.reasoning == {
        "effort": "high",
        "summary": "concise",
        "mode": "pro",
        "context": "all_turns",
    }
    assert (request.reasoning_effort, request.reasoning_summary) == ("high", "concise")
    assert (
        request.max_output_tokens,
        request.temperature,
        request.top_p,
        request.top_logprobs,
    ) == (256, 0.2, 1.0, 5)
    assert request.include == (
        "message.output_text.logprobs",
        "reasoning.encrypted_content",
        "file_search_call.results",
    )
    assert request.logprobs and request.include_encrypted_reasoning
    assert request.background and request.background_options == {
        "completion_window": "2h",
        "continuation_id": "c1",
    }
    assert request.truncation == "auto"
    assert (request.service_tier, request.requested_service_tier) == ("priority", "fast")
    assert request.prompt_cache_options == {"ttl": "12h", "mode": "explicit", "prewarm": False}
    assert request.access_programs == {"cyber": "standard"} and request.image == {
        "context_compression": "auto"
    }
    assert (request.presence_penalty, request.frequency_penalty) == (0.5, -0.5)
    assert request.extra_body == {
        "top_k": 40, "repetition_penalty": 1.1, "seed": 7, "stop": ["END"],
        "presence_penalty": 0.5, "frequency_penalty": -0.5,
    }  # fmt: skip
    with pytest.raises(dataclasses_frozen_error()):
        request.model = "other"  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize(
    ("requested", "mapped"),
    [("auto", "auto"), ("default", "default"), ("flex", "flex"), ("priority", "priority"),
     ("scale", "default"), ("fast", "priority"), ("ultrafast", "priority")],
)  # fmt: skip
@pytest.mark.compliance("L8")
def test_every_documented_service_tier_is_accepted_and_mapped(requested, mapped):
    request = parse_create_request(body(service_tier=requested))
    assert (request.service_tier, request.requested_service_tier) == (mapped, requested)


@pytest.mark.compliance("M4")
def test_every_documented_include_value_is_accepted():
    values = [
        "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
        "message.input_image.image_url", "computer_call_output.output.image_url",
        "code_interpreter_call.outputs", "reasoning.encrypted_content",
        "message.output_text.logprobs",
    ]  # fmt: skip
    assert parse_create_request(body(include=values)).include == tuple(values)


@pytest.mark.compliance("M6")
def test_store_and_background():
    assert parse_create_request(body(store=False)).store is False
    request = parse_create_request(body(background=True))
    assert request.background and request.store
    assert parse_create_request(body(background=True, stream=True)).stream


def test_stream_options_obfuscation_defaults_on():
    assert parse_create_request(body(stream=True)).include_obfuscation
    assert parse_create_request(body(stream=True, stream_options={})).include_obfuscation
    request = parse_create_request(body(stream=True, stream_options={"include_obfuscation": False}))
    assert request.stream_options == {"include_obfuscation": False}
    assert not request.include_obfuscation


def test_summary_wins_over_deprecated_generate_summary():
    request = parse_create_request(
        body(reasoning={"summary": "detailed", "generate_summary": "auto"})
    )
    assert request.reasoning == {"effort": None, "summary": "detailed"}


def test_previous_response_id_makes_input_optional():
    request = parse_create_request({"model": "m", "previous_response_id": "resp_1"})
    assert request.input == ()
    assert (
        parse_create_request({"model": "m", "previous_response_id": "resp_1", "input": []}).input
        == ()
    )


def test_tool_choice_forms():
    tools = [WEATHER_TOOL, TIME_TOOL]
    for choice in ("none", "auto", "required"):
        assert parse_create_request(body(tools=tools, tool_choice=choice)).tool_choice == choice
    assert parse_create_request(body(tool_choice="none")).tool_choice == "none"
    forced = parse_create_request(
        body(tools=tools, tool_choice={"type": "function", "name": "get_time"})
    )
    assert forced.tool_choice == {"type": "function", "name": "get_time"}
    allowed = parse_create_request(
        body(
            tools=tools,
            tool_choice={
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "function", "name": "get_weather"}],
            },
        )
    )
    assert allowed.tool_choice["tools"] == [{"type": "function", "name": "get_weather"}]


def test_function_tool_refinements_are_accepted():
    tool = {
        **WEATHER_TOOL,
        "output_schema": {"type": "object"},
        "allowed_callers": ["direct"],
        "defer_loading": False,
    }
    assert parse_create_request(body(tools=[tool])).tools == (WEATHER_TOOL,)
    bare = parse_create_request(body(tools=[{"type": "function", "name": "ping"}])).tools[0]
    assert bare == {
        "type": "function",
        "name": "ping",
        "description": None,
        "parameters": None,
        "strict": None,
    }


# --- input item forms ------------------------------------------------------------------------


def test_message_forms_normalize_content():
    request = parse_create_request(
        items(
            {"role": "system", "content": "sys"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {"role": "assistant", "content": "prior answer", "phase": "final_answer"},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_prev",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "x", "annotations": [], "logprobs": []},
                    {"type": "refusal", "refusal": "no"},
                ],
            },
            {"role": "user", "content": "u", "phase": "commentary"},
            {"role": "assistant", "content": [{"type": "input_text", "text": "tolerated"}]},
        )
    )
    assert request.input == (
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "sys"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "prior answer", "annotations": []}], "phase": "final_answer"},
        {"type": "message", "role": "assistant", "id": "msg_prev", "status": "completed",
         "content": [{"type": "output_text", "text": "x", "annotations": []}, {"type": "refusal", "refusal": "no"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "u"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "tolerated", "annotations": []}]},
    )  # fmt: skip


@pytest.mark.compliance("E7")
def test_invalid_json_arguments_are_history_and_are_recorded():
    request = parse_create_request(
        items(
            user(),
            fn_call("call_a", '{"city": "Par'),
            fn_call("call_b", ""),
            fn_call("call_c", '{"ok": 1}'),
            fn_output("call_a"),
            fn_output("call_b"),
            fn_output("call_c"),
        )
    )
    assert request.input[1]["arguments"] == '{"city": "Par'
    assert request.invalid_arguments == ("input[1].arguments", "input[2].arguments")


def test_tool_items_keep_optional_fields():
    request = parse_create_request(
        items(
            {
                **fn_call(),
                "id": "fc_1",
                "status": "completed",
                "namespace": "ns",
                "caller": {"type": "direct"},
            },
            {
                **fn_output(output=[{"type": "input_text", "text": "part"}]),
                "id": "fco_1",
                "status": "completed",
                "name": "get_weather",
            },
            {
                "type": "reasoning",
                "id": "rs_9",
                "summary": [{"type": "summary_text", "text": "s"}],
                "content": [{"type": "reasoning_text", "text": "r"}],
                "encrypted_content": None,
                "status": "completed",
            },
            {"id": "msg_ref"},
            {"type": "item_reference", "id": "fc_ref"},
        )
    )
    call, output, thought, reference, typed_reference = request.input
    assert call == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "{}",
        "id": "fc_1",
        "status": "completed",
        "namespace": "ns",
    }
    assert output == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": [{"type": "input_text", "text": "part"}],
        "id": "fco_1",
        "status": "completed",
        "name": "get_weather",
    }
    assert thought == {
        "type": "reasoning",
        "id": "rs_9",
        "summary": [{"type": "summary_text", "text": "s"}],
        "content": [{"type": "reasoning_text", "text": "r"}],
        "status": "completed",
    }
    assert reference == {"type": "item_reference", "id": "msg_ref"}
    assert typed_reference == {"type": "item_reference", "id": "fc_ref"}


def test_canonical_items_are_valid_sdk_input_items():
    request = parse_create_request(
        items(
            {"role": "developer", "content": "d"},
            user(),
            {"role": "assistant", "content": "a"},
            fn_call(),
            fn_output(),
            fn_output(output=[{"type": "input_text", "text": "t"}]),
            reasoning(content=[{"type": "reasoning_text", "text": "r"}]),
            {"type": "item_reference", "id": "x"},
        )
    )
    adapter = pydantic.TypeAdapter(ResponseInputItem)
    for item in request.input:
        if item.get("role") == "assistant":
            # Canonical assistant content is output_text (what OpenAI stores and returns); the
            # SDK only types that on ResponseOutputMessage, which needs the id and status
            # stored_input_items adds (checked in the stored-item tests below).
            item = {**item, "id": "msg_1", "status": "completed"}
        adapter.validate_python(item)


# --- bodies as the official SDK sends them ---------------------------------------------------


def sdk_body(**kwargs: Any) -> dict[str, Any]:
    """The JSON body ``client.responses.create(**kwargs)`` puts on the wire."""
    captured: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        captured["body"] = json.loads(request.content)
        error = {
            "message": "captured",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return httpx.Response(400, json={"error": error})

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://testserver/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with pytest.raises(openai.BadRequestError):
        client.responses.create(**kwargs)
    return captured["body"]


def test_sdk_text_turn():
    request = parse_create_request(
        sdk_body(
            model="m",
            input="Tell me a joke",
            instructions="Be funny",
            max_output_tokens=64,
            temperature=0.7,
        )
    )
    assert request.input[0]["content"] == [{"type": "input_text", "text": "Tell me a joke"}]
    assert (request.instructions, request.max_output_tokens, request.temperature) == (
        "Be funny",
        64,
        0.7,
    )


def test_sdk_streaming_structured_output_with_extras():
    sent = sdk_body(
        model="m",
        input=[{"role": "user", "content": "JSON please"}],
        stream=True,
        stream_options={"include_obfuscation": False},
        text={
            "format": {
                "type": "json_schema",
                "name": "out",
                "schema": {"type": "object", "properties": {}},
                "strict": True,
            }
        },
        reasoning={"effort": "low", "summary": "auto"},
        include=["message.output_text.logprobs"],
        top_logprobs=3,
        metadata={"trace": "t1"},
        service_tier="flex",
        prompt_cache_key="session-1",
        safety_identifier="user-hash",
        truncation="auto",
        store=False,
        extra_body={"top_k": 20, "repetition_penalty": 1.05, "seed": 1, "stop": "###"},
    )
    request = parse_create_request(sent)
    assert request.stream and not request.include_obfuscation and request.store is False
    assert request.text["format"]["strict"] is True
    assert request.extra_body == {"top_k": 20, "repetition_penalty": 1.05, "seed": 1, "stop": "###"}
    assert request.service_tier == "flex" and request.prompt_cache_key == "session-1"


def test_sdk_tool_round_trip_with_output_models_resent():
    # The documented manual-state pattern: ``input += response.output`` (SDK model objects).
    output = [
        ResponseReasoningItem(id="rs_1", type="reasoning", summary=[Summary(type="summary_text", text="s")], content=[Content(type="reasoning_text", text="think")], status="completed"),
        ResponseOutputMessage(id="msg_1", type="message", role="assistant", status="completed", content=[ResponseOutputText(type="output_text", text="Checking.", annotations=[], logprobs=[])]),
        ResponseFunctionToolCall(type="function_call", id="fc_1", call_id="call_1", name="get_weather", arguments='{"city":"Paris"}', status="completed"),
        ResponseFunctionToolCall(type="function_call", id="fc_2", call_id="call_2", name="get_weather", arguments='{"city":"Rome"}', status="completed"),
    ]  # fmt: skip
    sent = sdk_body(
        model="m",
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        parallel_tool_calls=True,
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            *output,
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "21C"}],
            },
        ],
    )
    request = parse_create_request(sent)
    assert [item["type"] for item in request.input] == [
        "message", "reasoning", "message", "function_call", "function_call",
        "function_call_output", "function_call_output",
    ]  # fmt: skip
    assert request.input[3]["id"] == "fc_1" and request.input[2]["id"] == "msg_1"
    assert request.invalid_arguments == ()


def test_sdk_chained_turn():
    request = parse_create_request(
        sdk_body(
            model="m",
            previous_response_id="resp_123",
            input=[{"type": "function_call_output", "call_id": "call_1", "output": "ok"}],
        )
    )
    assert request.previous_response_id == "resp_123"


# --- stored items ----------------------------------------------------------------------------


def assert_sdk_item(record: dict[str, Any], expected_class: type[pydantic.BaseModel]) -> None:
    """``record`` parses as the SDK's ``ResponseItem`` member ``expected_class`` with no key the
    SDK does not declare (its models accept extras silently, so check them ourselves)."""
    model = pydantic.TypeAdapter(ResponseItem).validate_python(record)
    assert type(model) is expected_class, (type(model), record)
    _assert_no_extras(model)


def _assert_no_extras(value: Any) -> None:
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, (type(value).__name__, value.model_extra)
        for name in type(value).model_fields:
            _assert_no_extras(getattr(value, name))
    elif isinstance(value, list):
        for entry in value:
            _assert_no_extras(entry)


def test_stored_items_have_ids_and_openai_shapes():
    from openai.types.responses import (
        ResponseFunctionToolCallItem,
        ResponseFunctionToolCallOutputItem,
        ResponseInputMessageItem,
    )

    request = parse_create_request(
        items(
            {"role": "system", "content": "s"},
            {"role": "developer", "content": "d"},
            user("u"),
            {"role": "assistant", "content": "a", "phase": "commentary"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "no"}],
                "status": "incomplete",
            },
            fn_call(),
            fn_output(),
            fn_output(output=[{"type": "input_text", "text": "t"}]),
            reasoning(
                summary=[{"type": "summary_text", "text": "s"}],
                content=[{"type": "reasoning_text", "text": "r"}],
            ),
            reasoning(id="rs_2"),
        )
    )
    stored = stored_input_items(request.input)
    expected = [
        ("msg_", ResponseInputMessageItem), ("msg_", ResponseInputMessageItem),
        ("msg_", ResponseInputMessageItem), ("msg_", ResponseOutputMessage),
        ("msg_", ResponseOutputMessage), ("fc_", ResponseFunctionToolCallItem),
        ("fco_", ResponseFunctionToolCallOutputItem), ("fco_", ResponseFunctionToolCallOutputItem),
        ("rs_", ResponseReasoningItem), ("rs_", ResponseReasoningItem),
    ]  # fmt: skip
    assert len(stored) == len(expected)
    for record, (prefix, cls) in zip(stored, expected, strict=True):
        assert record["id"].startswith(prefix)
        assert record["status"] in ("completed", "incomplete")
        assert_sdk_item(record, cls)
    assert stored[0] == {
        "id": stored[0]["id"],
        "type": "message",
        "status": "completed",
        "role": "system",
        "content": [{"type": "input_text", "text": "s"}],
    }
    assert stored[3]["content"] == [{"type": "output_text", "text": "a", "annotations": []}]
    assert stored[3]["phase"] == "commentary"
    assert stored[4]["status"] == "incomplete"
    assert stored[8]["id"] == "rs_1" and stored[9]["id"] == "rs_2"
    assert len({record["id"] for record in stored}) == len(stored)
    # Parsing did not mutate the request's items.
    assert "id" not in request.input[0]


def test_stored_items_keep_client_ids_but_stay_unique():
    first = {"type": "message", "role": "assistant", "id": "msg_same", "content": "x"}
    request = parse_create_request(
        items(user(), first, first, {**fn_call(), "id": "fc_mine"}, fn_output())
    )
    stored = stored_input_items(request.input)
    assert stored[1]["id"] == "msg_same"
    assert stored[2]["id"] != "msg_same" and stored[2]["id"].startswith("msg_")
    assert stored[3]["id"] == "fc_mine"


def test_item_references_resolve_to_stored_items():
    known = {
        "msg_old": {"id": "msg_old", "type": "message", "status": "completed", "role": "user", "content": [{"type": "input_text", "text": "old"}]},
    }  # fmt: skip
    request = parse_create_request(
        items({"type": "item_reference", "id": "msg_old"}, {"id": "msg_old"}, user())
    )
    resolved = resolve_item_references(request.input, known=known)
    assert resolved[0] == known["msg_old"] and resolved[0] is not known["msg_old"]
    stored = stored_input_items(resolved)
    assert stored[0]["id"] == "msg_old" and stored[1]["id"] != "msg_old"
    with pytest.raises(InvalidRequest) as caught:
        resolve_item_references(
            parse_create_request(items(user(), {"id": "msg_gone"})).input, known=known
        )
    assert caught.value.param == "input[1]" and "msg_gone" in caught.value.message
    with pytest.raises(ValueError, match="resolve item references"):
        stored_input_items(request.input)


# --- input_tokens and input_items query ------------------------------------------------------


def test_input_tokens_request():
    parsed = parse_input_tokens_request(
        {
            "model": "m",
            "input": [user(), fn_call(), fn_output()],
            "instructions": "i",
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
            "text": {"format": {"type": "json_object"}},
            "reasoning": {"effort": "minimal"},
            "truncation": "auto",
            "personality": "friendly",
            "previous_response_id": "resp_1",
        }
    )
    assert len(parsed.input) == 3 and parsed.tools == (WEATHER_TOOL,)
    assert parsed.text["format"] == {"type": "json_object"} and parsed.truncation == "auto"
    assert parsed.personality == "friendly" and not parsed.parallel_tool_calls
    assert parse_input_tokens_request({"model": "m", "instructions": "only"}).input == ()


@pytest.mark.parametrize(
    ("request_body", "param", "code"),
    [
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "m", "stream": True}, "stream", "unknown_parameter"),
        ({"model": "m", "max_output_tokens": 20}, "max_output_tokens", "unknown_parameter"),
        ({"model": "m", "conversation": 1}, "conversation", "invalid_type"),
        ({"model": "m", "personality": LONG}, "personality", "string_above_max_length"),
        (
            {"model": "m", "input": [{"type": "web_search_call"}]},
            "input[0].type",
            "unsupported_value",
        ),
        (
            {"model": "m", "tools": [{"type": "code_interpreter"}]},
            "tools[0].type",
            "unsupported_value",
        ),
    ],
)
def test_input_tokens_bad_requests(request_body, param, code):
    with pytest.raises(InvalidRequest) as caught:
        parse_input_tokens_request(request_body)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_list_input_items_query():
    default = parse_list_input_items_query({})
    assert (default.after, default.limit, default.order, default.include) == (None, 20, "desc", ())
    query = parse_list_input_items_query(
        {
            "after": ["msg_1"],
            "limit": ["100"],
            "order": "asc",
            "include[]": ["message.output_text.logprobs"],
            "before": "msg_0",
        }
    )
    assert (query.after, query.limit, query.order) == ("msg_1", 100, "asc")
    assert query.include == ("message.output_text.logprobs",)
    assert parse_list_input_items_query({"include": "reasoning.encrypted_content"}).include == (
        "reasoning.encrypted_content",
    )


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        ({"limit": "0"}, "limit", "integer_below_min_value"),
        ({"limit": "101"}, "limit", "integer_above_max_value"),
        ({"limit": "ten"}, "limit", "invalid_type"),
        ({"order": "up"}, "order", "invalid_value"),
        ({"include[]": ["nope"]}, "include[0]", "invalid_value"),
        ({"after": ""}, "after", "empty_string"),
    ],
)
def test_list_input_items_bad_queries(query, param, code):
    with pytest.raises(InvalidRequest) as caught:
        parse_list_input_items_query(query)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_conversation_is_an_id_or_an_object_and_input_may_be_omitted():
    assert parse_create_request(body(conversation="conv_1")).conversation == "conv_1"
    assert parse_create_request(body(conversation={"id": "conv_2"})).conversation == "conv_2"
    assert parse_create_request({"model": "m", "conversation": "conv_3"}).input == ()
    assert parse_input_tokens_request({"model": "m", "conversation": "conv_4"}).conversation == (
        "conv_4"
    )


def test_context_management_gives_the_compaction_threshold():
    assert parse_create_request(body()).compact_threshold is None
    assert parse_create_request(body(context_management=[])).compact_threshold is None
    assert (
        parse_create_request(
            body(context_management=[{"type": "compaction", "compact_threshold": 4000}])
        ).compact_threshold
        == 4000
    )
    # Without a threshold: compact only when the context would not fit the model.
    assert (
        parse_create_request(body(context_management=[{"type": "compaction"}])).compact_threshold
        == 0
    )
