"""Conformance checks for emitted streams, against the official ``openai`` SDK's types.

For tests and dev tooling: any test that produces stream events — the builder's own, the SSE
view's, stored-event replay — can decode them and call :func:`check_stream`. Each check raises
``AssertionError`` naming the event's ``sequence_number`` and the rule it broke.

* :func:`check_event` — one event validates as the SDK's ``ResponseStreamEvent`` union member
  for its ``type``; lifecycle events also pass :func:`check_response`.
* :func:`check_response` — a Response validates as ``openai.types.responses.Response`` *and*
  carries every key OpenAI and Open Responses clients rely on (the SDK's model makes most of
  them optional, so validation alone would not notice a missing key).
* :func:`check_stream` — the whole sequence: numbering, lifecycle and item ordering (§4.4),
  deltas that add up to their ``done`` texts, and a terminal Response consistent with the items.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import pydantic
from openai.types.responses import Response, ResponseStreamEvent

from responses.streaming import events as ev

# Every key of reference §3.4 / §7.3, plus the echo keys we always send.
RESPONSE_KEYS: frozenset[str] = frozenset(
    {
        "id", "object", "created_at", "completed_at", "status", "incomplete_details", "error",
        "model", "previous_response_id", "instructions", "output", "tools", "tool_choice",
        "parallel_tool_calls", "truncation", "text", "reasoning", "temperature", "top_p",
        "presence_penalty", "frequency_penalty", "top_logprobs", "max_output_tokens",
        "max_tool_calls", "store", "background", "service_tier", "metadata", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention", "user", "conversation", "prompt", "usage",
    }
)  # fmt: skip

# Keys we send that the SDK's Response model does not declare (it keeps them as extras).
NON_SDK_RESPONSE_KEYS: frozenset[str] = frozenset(
    {"store", "presence_penalty", "frequency_penalty"}
)

_ITEM_KEYS: dict[str, frozenset[str]] = {
    "message": frozenset({"type", "id", "status", "role", "content"}),
    "function_call": frozenset({"type", "id", "call_id", "name", "arguments", "status"}),
    "reasoning": frozenset({"type", "id", "summary", "content", "encrypted_content", "status"}),
}

_LIFECYCLE = frozenset(
    {ev.RESPONSE_CREATED, ev.RESPONSE_QUEUED, ev.RESPONSE_IN_PROGRESS} | ev.TERMINAL_TYPES
)


@cache
def _event_adapter() -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(ResponseStreamEvent)


def check_response(obj: dict[str, Any]) -> Response:
    """Validate one Response dict; returns the SDK model."""
    missing = RESPONSE_KEYS - obj.keys()
    assert not missing, f"Response lacks keys {sorted(missing)}"
    unknown = obj.keys() - set(Response.model_fields) - NON_SDK_RESPONSE_KEYS
    assert not unknown, f"Response has keys the SDK does not know: {sorted(unknown)}"
    assert obj["object"] == "response"
    assert isinstance(obj["top_logprobs"], int), "top_logprobs must be an int, not null"
    assert obj["text"]["format"]["type"], "text.format.type is required"
    if obj["status"] == "completed":
        assert obj["completed_at"] is not None, "a completed Response needs completed_at"
    else:
        assert obj["completed_at"] is None, "completed_at is only set when completed"
    if obj["usage"] is not None:
        assert {"cached_tokens", "cache_write_tokens"} <= obj["usage"][
            "input_tokens_details"
        ].keys()
        assert "reasoning_tokens" in obj["usage"]["output_tokens_details"]
    for item in obj["output"]:
        _check_item_keys(item)
    return Response.model_validate(obj)


def _check_item_keys(item: dict[str, Any]) -> None:
    required = _ITEM_KEYS.get(item["type"])
    if required is not None:
        missing = required - item.keys()
        assert not missing, f"{item['type']} item lacks {sorted(missing)}"
    if item["type"] == "message":
        for part in item["content"]:
            if part["type"] == "output_text":
                assert {"annotations", "logprobs"} <= part.keys(), "output_text lacks keys"


def check_event(event: dict[str, Any]) -> Any:
    """Validate one stamped event; returns the SDK model."""
    assert isinstance(event.get("sequence_number"), int), f"no sequence_number in {event}"
    model = _event_adapter().validate_python(event)
    assert model.type == event["type"], f"{event['type']} validated as {model.type}"
    if event["type"] in _LIFECYCLE:
        check_response(event["response"])
    if "item" in event:
        _check_item_keys(event["item"])
    if event["type"] == ev.ERROR:
        assert "error" not in event, "OpenAI's error event is flat (a nested one aborts the SDK)"
    return model


class _ItemTrack:
    __slots__ = ("added", "arguments", "done", "item_id", "kind", "parts", "summaries")

    def __init__(self, item: dict[str, Any]) -> None:
        self.item_id: str = item["id"]
        self.kind: str = item["type"]
        self.done: dict[str, Any] | None = None
        self.parts: dict[int, list[str] | None] = {}  # content_index -> deltas (None = closed)
        self.summaries: dict[int, list[str] | None] = {}
        self.arguments: list[str] = []


def check_stream(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check a complete stream (through its terminal event); returns it as a list."""
    stream = list(events)
    assert stream, "empty stream"
    items: dict[int, _ItemTrack] = {}
    terminal: dict[str, Any] | None = None
    started = False  # response.in_progress seen

    for position, event in enumerate(stream):
        check_event(event)
        kind = event["type"]
        where = f"event {position} ({kind})"
        assert event["sequence_number"] == position, f"{where}: sequence_number not contiguous"
        assert terminal is None, f"{where}: after the terminal event"

        if position == 0:
            assert kind == ev.RESPONSE_CREATED, "the first event must be response.created"
            assert event["response"]["status"] in ("in_progress", "queued")
            started = event["response"]["status"] == "in_progress"
            continue
        assert kind != ev.RESPONSE_CREATED, f"{where}: second response.created"
        if kind in _LIFECYCLE:
            assert event["response"]["id"] == stream[0]["response"]["id"], f"{where}: id changed"
        if kind == ev.RESPONSE_QUEUED:
            assert not started and position == 1, f"{where}: response.queued out of place"
            continue
        if kind == ev.RESPONSE_IN_PROGRESS:
            started = True
            continue
        assert started, f"{where}: before response.in_progress"
        if kind in ev.TERMINAL_TYPES:
            terminal = event
            continue
        if kind == ev.ERROR:
            following = stream[position + 1]["type"] if position + 1 < len(stream) else None
            assert following == ev.RESPONSE_FAILED, f"{where}: not followed by response.failed"
            continue
        _check_item_event(event, items, where)

    assert terminal is not None, "no terminal event"
    _check_terminal(terminal, items)
    return stream


def _check_item_event(event: dict[str, Any], items: dict[int, _ItemTrack], where: str) -> None:
    kind = event["type"]
    index = event["output_index"]
    if kind == ev.OUTPUT_ITEM_ADDED:
        assert index == len(items), f"{where}: output_index {index}, expected {len(items)}"
        assert event["item"]["status"] == "in_progress", f"{where}: added item not in_progress"
        items[index] = _ItemTrack(event["item"])
        return
    track = items.get(index)
    assert track is not None, f"{where}: before output_item.added for index {index}"
    assert track.done is None, f"{where}: after output_item.done for index {index}"
    if "item_id" in event:
        assert event["item_id"] == track.item_id, f"{where}: item_id does not match the item"

    if kind == ev.CONTENT_PART_ADDED:
        assert event["content_index"] not in track.parts, f"{where}: part added twice"
        assert event["content_index"] == len(track.parts), f"{where}: content_index gap"
        track.parts[event["content_index"]] = []
    elif kind in (ev.OUTPUT_TEXT_DELTA, ev.REASONING_TEXT_DELTA):
        deltas = track.parts.get(event["content_index"])
        assert deltas is not None, f"{where}: delta outside an open content part"
        deltas.append(event["delta"])
    elif kind in (ev.OUTPUT_TEXT_DONE, ev.REASONING_TEXT_DONE):
        deltas = track.parts.get(event["content_index"])
        assert deltas is not None, f"{where}: done outside an open content part"
        assert event["text"] == "".join(deltas), f"{where}: text != concatenated deltas"
    elif kind == ev.CONTENT_PART_DONE:
        deltas = track.parts.get(event["content_index"])
        assert deltas is not None, f"{where}: part done twice or never added"
        part = event["part"]
        text = part.get("text", part.get("refusal"))
        assert text == "".join(deltas), f"{where}: part text != concatenated deltas"
        track.parts[event["content_index"]] = None
    elif kind == ev.REASONING_SUMMARY_PART_ADDED:
        assert event["summary_index"] == len(track.summaries), f"{where}: summary_index gap"
        track.summaries[event["summary_index"]] = []
    elif kind == ev.REASONING_SUMMARY_TEXT_DELTA:
        deltas = track.summaries.get(event["summary_index"])
        assert deltas is not None, f"{where}: summary delta outside an open summary part"
        deltas.append(event["delta"])
    elif kind == ev.REASONING_SUMMARY_TEXT_DONE:
        deltas = track.summaries.get(event["summary_index"])
        assert deltas is not None and event["text"] == "".join(deltas), f"{where}: bad summary"
    elif kind == ev.REASONING_SUMMARY_PART_DONE:
        deltas = track.summaries.get(event["summary_index"])
        assert deltas is not None, f"{where}: summary part done twice or never added"
        assert event["part"]["text"] == "".join(deltas), f"{where}: summary part text"
        track.summaries[event["summary_index"]] = None
    elif kind == ev.FUNCTION_CALL_ARGUMENTS_DELTA:
        assert track.kind == "function_call", f"{where}: arguments for a {track.kind}"
        track.arguments.append(event["delta"])
    elif kind == ev.FUNCTION_CALL_ARGUMENTS_DONE:
        assert event["arguments"] == "".join(track.arguments), f"{where}: arguments mismatch"
        assert "name" in event, f"{where}: function_call_arguments.done without name"
    elif kind == ev.OUTPUT_ITEM_DONE:
        item = event["item"]
        assert item["id"] == track.item_id and item["type"] == track.kind, f"{where}: identity"
        assert item["status"] in ("completed", "incomplete"), f"{where}: item not finished"
        open_parts = [i for i, d in track.parts.items() if d is not None]
        open_summaries = [i for i, d in track.summaries.items() if d is not None]
        assert not open_parts and not open_summaries, f"{where}: item done with open parts"
        if track.kind == "function_call":
            assert item["arguments"] == "".join(track.arguments), f"{where}: arguments"
        track.done = item
    else:
        raise AssertionError(f"{where}: an event type this checker does not know")


def _check_terminal(terminal: dict[str, Any], items: dict[int, _ItemTrack]) -> None:
    kind = terminal["type"]
    response = terminal["response"]
    expected_status = {
        ev.RESPONSE_COMPLETED: "completed",
        ev.RESPONSE_INCOMPLETE: "incomplete",
        ev.RESPONSE_FAILED: "failed",
    }[kind]
    assert response["status"] == expected_status, f"{kind} with status {response['status']}"
    output = response["output"]
    assert len(output) == len(items), "terminal output does not list every streamed item"
    for index, track in items.items():
        assert output[index]["id"] == track.item_id, f"terminal output[{index}] is another item"
    if kind == ev.RESPONSE_FAILED:
        assert response["error"] is not None, "response.failed without error"
        return
    assert response["error"] is None
    for index, track in items.items():
        assert track.done is not None, f"item {index} never got output_item.done"
        assert output[index] == track.done, f"terminal output[{index}] != its output_item.done"
    incomplete = [
        i for i, t in items.items() if t.done is not None and t.done["status"] == "incomplete"
    ]
    if incomplete:
        # Open Responses: an incomplete item is the last one, in an incomplete response.
        assert kind == ev.RESPONSE_INCOMPLETE, "incomplete item in a completed response"
        assert incomplete == [len(items) - 1], "only the last item may be incomplete"
