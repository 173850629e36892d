"""Fitting a chat prompt into the model's context window (``truncation``).

:func:`fit_to_context` takes the chat messages :func:`.translate.build_chat_messages` built, an
async token counter (in production the engine's tokenizer with the request's tools bound, e.g.
``functools.partial(engine.count_tokens, model=…, tools=…)`` adapted to take ``messages``), the
model's context length and the request's ``max_output_tokens``:

* ``truncation="disabled"`` (OpenAI's default): the input must leave room for output, else
  400 ``context_length_exceeded`` on ``input`` with OpenAI's message;
* ``truncation="auto"``: whole turns are dropped from the beginning until the input fits with
  ``max_output_tokens`` to spare. Never dropped: the leading system messages (instructions) and
  the last user turn (the last user message and everything after it). A tool call never loses
  its outputs, and an output never loses its call: such pairs are dropped together or not at all.

Turns are dropped at user-message boundaries, so what remains still starts with a user message
(chat templates that insist on alternation keep working). The number of turns to drop is found by
binary search: a handful of tokenizer calls even for long chains.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import InvalidRequest

TokenCounter = Callable[[list[dict[str, Any]]], Awaitable[int]]

CONTEXT_LENGTH_EXCEEDED_MESSAGE = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    messages: list[dict[str, Any]]
    """The messages to send (a new list; the message dicts are shared with the input)."""
    input_tokens: int
    """Their token count, as the counter reported it."""
    dropped_messages: int = 0
    """How many messages ``auto`` dropped from the beginning of the conversation."""

    @property
    def truncated(self) -> bool:
        return self.dropped_messages > 0


def context_length_exceeded() -> InvalidRequest:
    return InvalidRequest(
        CONTEXT_LENGTH_EXCEEDED_MESSAGE, param="input", code="context_length_exceeded"
    )


async def fit_to_context(
    *,
    messages: Sequence[dict[str, Any]],
    count_tokens: TokenCounter,
    context_length: int,
    max_output_tokens: int | None,
    truncation: Literal["auto", "disabled"],
    min_output_tokens: int = 1,
) -> FittedPrompt:
    """The prompt that fits, or ``InvalidRequest(code="context_length_exceeded")``.

    Two limits: the *hard* one (``context_length - min_output_tokens``) is what any request must
    meet — the model has to be able to say something; the *target* one also reserves
    ``max_output_tokens``, and is what ``auto`` trims towards. A ``disabled`` request over the
    target but under the hard limit runs: the engine caps its output to what is left, and the
    response ends ``incomplete`` if it needed more, as OpenAI's does.
    """
    messages = list(messages)
    hard_limit = context_length - min_output_tokens
    reserve = max(min_output_tokens, max_output_tokens or 0)
    target = context_length - reserve if reserve < context_length else hard_limit

    counts: dict[int, int] = {}
    cuts = drop_points(messages)
    pinned = _pinned_count(messages)

    def candidate(k: int) -> list[dict[str, Any]]:
        if k == 0:
            return messages
        return messages[:pinned] + messages[cuts[k - 1] :]

    async def tokens(k: int) -> int:
        if k not in counts:
            counts[k] = await count_tokens(candidate(k))
        return counts[k]

    def result(k: int) -> FittedPrompt:
        kept = candidate(k)
        return FittedPrompt(
            messages=list(kept), input_tokens=counts[k], dropped_messages=len(messages) - len(kept)
        )

    if await tokens(0) <= target:
        return result(0)
    if truncation == "disabled" or not cuts:
        if counts[0] <= hard_limit:
            return result(0)
        raise context_length_exceeded()

    most = len(cuts)
    if await tokens(most) > target:
        # Even the shortest allowed prompt leaves less than max_output_tokens: run it if the
        # model can still answer at all.
        if counts[most] <= hard_limit:
            return result(most)
        raise context_length_exceeded()
    # Smallest k that fits; counts shrink (or stay) as k grows.
    low, high = 1, most
    while low < high:
        middle = (low + high) // 2
        if await tokens(middle) <= target:
            high = middle
        else:
            low = middle + 1
    await tokens(high)
    return result(high)


def drop_points(messages: Sequence[dict[str, Any]]) -> list[int]:
    """Indices ``c`` (ascending) such that dropping ``messages[pinned:c]`` is allowed.

    Each is the index of a user message after the pinned system prefix, up to and including the
    last user message, excluding those that would separate a tool call from one of its outputs.
    Dropping to the k-th point drops k turns.
    """
    pinned = _pinned_count(messages)
    user_indices = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not user_indices:
        return []
    last_user = user_indices[-1]
    forbidden: set[int] = set()
    call_at: dict[str | None, int] = {}
    for index, message in enumerate(messages):
        for call in message.get("tool_calls") or []:
            call_at[call.get("id")] = index
        if message.get("role") == "tool":
            start = call_at.get(message.get("tool_call_id"))
            if start is not None:
                # A cut anywhere in (call, output] would keep the output without its call.
                forbidden.update(range(start + 1, index + 1))
    return [i for i in user_indices if pinned < i <= last_user and i not in forbidden]


def _pinned_count(messages: Sequence[dict[str, Any]]) -> int:
    """The leading system messages (instructions, developer prompts): never dropped."""
    count = 0
    for message in messages:
        if message.get("role") != "system":
            break
        count += 1
    return count
