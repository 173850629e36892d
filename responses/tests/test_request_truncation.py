"""``truncation`` against the context window (E8), with a deterministic fake tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import InvalidRequest
from responses.requests import fit_to_context
from responses.requests.truncation import CONTEXT_LENGTH_EXCEEDED_MESSAGE, drop_points


class Counter:
    """10 tokens per message plus one per content character and 5 per tool call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, messages: list[dict[str, Any]]) -> int:
        self.calls.append(len(messages))
        return sum(
            10 + len(m.get("content") or "") + 5 * len(m.get("tool_calls") or []) for m in messages
        )


def system(text: str = "sys") -> dict[str, Any]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def calls(*ids: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
        ],
    }


def tool(call_id: str, text: str = "out") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def conversation(turns: int, size: int = 20) -> list[dict[str, Any]]:
    messages = [system()]
    for index in range(turns):
        messages += [user(f"{index}".ljust(size, "u")), assistant("a" * size)]
    return messages


async def fit(messages, *, context_length, max_output_tokens=None, truncation="auto", counter=None):
    return await fit_to_context(
        messages=messages,
        count_tokens=counter or Counter(),
        context_length=context_length,
        max_output_tokens=max_output_tokens,
        truncation=truncation,
    )


async def test_fitting_prompt_is_untouched_and_counted_once():
    messages = conversation(3)
    counter = Counter()
    fitted = await fit(messages, context_length=1000, max_output_tokens=100, counter=counter)
    assert fitted.messages == messages and fitted.messages is not messages
    assert fitted.input_tokens == await Counter()(messages)
    assert not fitted.truncated and fitted.dropped_messages == 0
    assert counter.calls == [len(messages)]


async def test_disabled_over_the_window_is_context_length_exceeded():
    messages = conversation(10)  # 10 + 13 + 20 * 30 = 613 tokens
    with pytest.raises(InvalidRequest) as caught:
        await fit(messages, context_length=500, truncation="disabled")
    error = caught.value
    assert (error.status, error.type, error.param, error.code) == (
        400,
        "invalid_request_error",
        "input",
        "context_length_exceeded",
    )
    assert error.message == CONTEXT_LENGTH_EXCEEDED_MESSAGE


async def test_disabled_runs_when_only_the_output_reserve_is_short():
    messages = conversation(10)
    fitted = await fit(messages, context_length=650, max_output_tokens=100, truncation="disabled")
    assert fitted.messages == messages and not fitted.truncated


async def test_auto_drops_oldest_turns_keeping_instructions_and_last_turn():
    messages = conversation(10)  # turns of 60 tokens after a 13-token system message
    fitted = await fit(messages, context_length=400, max_output_tokens=100)
    assert fitted.input_tokens <= 300
    assert fitted.messages[0] == system()
    assert fitted.messages[1]["role"] == "user"
    assert fitted.messages[-2:] == messages[-2:]
    assert fitted.messages[1:] == messages[-len(fitted.messages) + 1 :]
    # Fewest turns dropped: one more turn would not fit.
    assert fitted.input_tokens + 60 > 300
    assert fitted.dropped_messages == len(messages) - len(fitted.messages) and fitted.truncated


async def test_auto_reserves_max_output_tokens():
    messages = conversation(10)
    small = await fit(messages, context_length=700, max_output_tokens=16)
    large = await fit(messages, context_length=700, max_output_tokens=400)
    assert not small.truncated
    assert large.truncated and large.input_tokens <= 300


async def test_auto_never_drops_the_last_user_turn():
    messages = [system(), user("old"), assistant("x"), user("u" * 500), assistant("a" * 10)]
    with pytest.raises(InvalidRequest) as caught:
        await fit(messages, context_length=300)
    assert caught.value.code == "context_length_exceeded"


async def test_auto_falls_back_to_the_hard_limit_when_the_reserve_cannot_be_met():
    messages = [system(), user("old"), assistant("x"), user("u" * 200)]
    fitted = await fit(messages, context_length=300, max_output_tokens=200)
    # Dropping everything droppable leaves 223 tokens: under the window, over window - reserve.
    assert fitted.messages == [system(), user("u" * 200)]
    assert fitted.input_tokens == 223


async def test_max_output_tokens_larger_than_the_window():
    messages = conversation(2)
    fitted = await fit(messages, context_length=200, max_output_tokens=5000)
    assert fitted.messages == messages


async def test_tool_calls_are_dropped_with_their_outputs():
    messages = [
        system(),
        user("q1"), calls("a", "b"), tool("a"), user("interjection"), tool("b"), assistant("r1"),
        user("q2"), assistant("r2"),
        user("q3"),
    ]  # fmt: skip
    # The cut at "interjection" would strand tool("b") without its call.
    assert drop_points(messages) == [7, 9]
    fitted = await fit(messages, context_length=120, max_output_tokens=16)
    assert fitted.messages in ([system(), *messages[7:]], [system(), *messages[9:]])
    for kept in fitted.messages:
        assert kept["role"] != "tool"


async def test_tool_turn_continuation_is_the_protected_last_turn():
    messages = [
        system(),
        user("old " * 20),
        assistant("x"),
        user("now"),
        calls("c"),
        tool("c", "result"),
    ]
    fitted = await fit(messages, context_length=110, max_output_tokens=16)
    assert fitted.messages == [system(), user("now"), calls("c"), tool("c", "result")]


async def test_no_user_message_means_nothing_to_drop():
    messages = [system(), assistant("a" * 300)]
    assert drop_points(messages) == []
    with pytest.raises(InvalidRequest):
        await fit(messages, context_length=200)


async def test_leading_non_user_messages_form_the_first_turn():
    messages = [system(), assistant("greeting" * 20), user("hi")]
    assert drop_points(messages) == [2]
    fitted = await fit(messages, context_length=100, max_output_tokens=16)
    assert fitted.messages == [system(), user("hi")]


async def test_long_chains_take_few_tokenizer_calls():
    messages = conversation(500)
    counter = Counter()
    fitted = await fit(messages, context_length=2000, max_output_tokens=200, counter=counter)
    assert fitted.input_tokens <= 1800 and fitted.input_tokens + 60 > 1800
    assert len(counter.calls) <= 12
