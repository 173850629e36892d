"""``check_stream`` itself: it must catch what it claims to, or the golden tests prove nothing."""

from __future__ import annotations

import copy

import pytest

from engines.runtime.types import TextDelta, ToolCallArgumentsDelta, ToolCallStart
from testsupport.conformance import check_response, check_stream
from testsupport.stream_builder import make_builder, run


def _text_stream() -> list[dict]:
    return run(make_builder(), [TextDelta("Hi"), TextDelta(" there")])


def _broken(mutate) -> list[dict]:
    events = copy.deepcopy(_text_stream())
    mutate(events)
    return events


def _renumber(events: list[dict]) -> None:
    for number, event in enumerate(events):
        event["sequence_number"] = number


def _move(events: list[dict], source: int, target: int) -> None:
    events.insert(target, events.pop(source))
    _renumber(events)


def test_the_golden_text_stream_passes():
    check_stream(_text_stream())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e[5].update(sequence_number=9), "not contiguous"),
        (lambda e: _move(e, 1, 0), "first event must be response.created"),
        (lambda e: _move(e, 4, 3), "delta outside an open content part"),
        (lambda e: _move(e, 3, 2), "before output_item.added"),
        (lambda e: e[4].update(delta="Ho"), "text != concatenated deltas"),
        (lambda e: e[4].update(item_id="msg_other"), "item_id does not match"),
        (lambda e: e.pop(), "no terminal event"),
        (lambda e: (e.append(copy.deepcopy(e[-1])), _renumber(e)), "after the terminal event"),
        (lambda e: (e.pop(8), _renumber(e)), "never got output_item.done"),
        (lambda e: e[-1]["response"].pop("store"), "lacks keys"),
        (lambda e: e[-1]["response"].update(top_logprobs=None), "top_logprobs"),
        (lambda e: e[-1]["response"].update(completed_at=None), "completed_at"),
        (lambda e: e[2]["item"].update(status="completed"), "added item not in_progress"),
    ],
)
def test_violations_are_caught(mutate, message):
    with pytest.raises(AssertionError, match=message):
        check_stream(_broken(mutate))


@pytest.mark.compliance("L1")
def test_schema_violations_are_caught_by_the_sdk_types():
    with pytest.raises(ValueError):  # pydantic.ValidationError
        check_stream(_broken(lambda e: e[4].pop("logprobs")))
    with pytest.raises(ValueError):
        check_stream(_broken(lambda e: e[4].update(type="response.output_text.deltas")))


def test_a_nested_error_event_is_refused():
    builder = make_builder()
    events = builder.start() + builder.fail("server_error", "boom")
    events[2]["error"] = {"message": "boom"}
    with pytest.raises(AssertionError, match="flat"):
        check_stream(events)


def test_function_call_arguments_must_add_up():
    builder = make_builder()
    events = run(
        builder,
        [ToolCallStart(0, "call_a", "f"), ToolCallArgumentsDelta(0, "{}")],
    )
    events[3]["delta"] = "{"
    with pytest.raises(AssertionError, match="arguments"):
        check_stream(events)


def test_response_keys_unknown_to_the_sdk_are_refused():
    response = copy.deepcopy(_text_stream()[-1]["response"])
    response["output_texts"] = "typo"
    with pytest.raises(AssertionError, match="does not know"):
        check_response(response)
