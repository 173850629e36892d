"""A deterministic engine for tests: it streams a script of deltas and records what happened.

Tests of the Responses layer use it to drive every path without a model: text, reasoning, tool
calls, usage, failures before or after the first delta, slow streams. Its counters show whether a
stream ran to its end or was abandoned, which is how client-disconnect tests prove that the API
layer really stops generation::

    engine = ScriptedEngine(text_script("Hello world"), delay=0.01)
    register_engine_override("test-model", engine)
    ...
    assert await engine.wait_until(lambda e: e.cancelled == 1)
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from engines.runtime.types import (
    EngineDelta,
    EngineError,
    Finish,
    FinishReason,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStart,
    Usage,
)

__all__ = ["Script", "ScriptedEngine", "build_script", "text_script", "whitespace_token_count"]

Script = Sequence[EngineDelta] | Callable[[GenerationRequest], Sequence[EngineDelta]]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def whitespace_token_count(
    *, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    """Deterministic stand-in for a tokenizer: whitespace-separated words plus one per message."""
    count = 0
    for message in messages:
        count += 1 + len(_content_text(message.get("content")).split())
        for call in message.get("tool_calls") or []:
            count += len(json.dumps(call, sort_keys=True).split())
    if tools:
        count += len(json.dumps(tools, sort_keys=True).split())
    return count


def _words(text: str) -> list[str]:
    # Split after each space so that the pieces join back to exactly ``text``.
    pieces = text.split(" ")
    return [p + " " for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def build_script(
    *,
    text: str | None = None,
    reasoning: str | None = None,
    tool_calls: Sequence[tuple[str, str] | tuple[str, str, str]] = (),
    finish: FinishReason | None = None,
    input_tokens: int = 10,
    cached_tokens: int = 0,
    output_tokens: int | None = None,
    argument_chunk_chars: int = 8,
) -> list[EngineDelta]:
    """A realistic delta sequence: reasoning words, text words, tool calls (``(name, arguments)``
    or ``(name, arguments, call_id)``), then Finish and Usage."""
    deltas: list[EngineDelta] = []
    reasoning_words = _words(reasoning) if reasoning else []
    text_words = _words(text) if text else []
    deltas.extend(ReasoningDelta(text=w) for w in reasoning_words)
    deltas.extend(TextDelta(text=w) for w in text_words)
    for index, call in enumerate(tool_calls):
        name, arguments = call[0], call[1]
        call_id = call[2] if len(call) > 2 else f"call_scripted{index}"
        deltas.append(ToolCallStart(index=index, call_id=call_id, name=name))
        step = max(argument_chunk_chars, 1)
        deltas.extend(
            ToolCallArgumentsDelta(index=index, delta=arguments[i : i + step])
            for i in range(0, len(arguments), step)
        )
    if finish is None:
        finish = "tool_calls" if tool_calls else "stop"
    deltas.append(Finish(reason=finish))
    produced = len(reasoning_words) + len(text_words) + sum(len(c[1]) // 4 + 1 for c in tool_calls)
    deltas.append(
        Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens if output_tokens is not None else produced,
            cached_tokens=cached_tokens,
            reasoning_tokens=len(reasoning_words),
        )
    )
    return deltas


def text_script(text: str, **kwargs: Any) -> list[EngineDelta]:
    """Shorthand for ``build_script(text=...)``."""
    return build_script(text=text, **kwargs)


def _advance(request: GenerationRequest, delta: EngineDelta) -> None:
    """Keep the request's progress like vLLM's per-chunk usage: the prompt from the start, one
    output token per delta that carries output."""
    progress = request.progress
    if not progress.reported:
        progress.reported = True
        progress.input_tokens = whitespace_token_count(
            messages=request.messages, tools=request.tools
        )
    if isinstance(delta, TextDelta | ReasoningDelta | ToolCallArgumentsDelta):
        progress.output_tokens += 1
    elif isinstance(delta, Usage):
        progress.input_tokens = delta.input_tokens
        progress.output_tokens = delta.output_tokens


class ScriptedEngine:
    """:class:`~engines.runtime.types.Engine` that plays back a script.

    Counters (all streams since construction or :meth:`reset`): ``started``; ``finished`` (the
    whole script was consumed); ``cancelled`` (the consumer left early: task cancelled or generator
    closed); ``failed`` (the scripted error was raised). ``active`` is started minus ended.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        delay: float = 0.0,
        first_delay: float = 0.0,
        fail_after: int | None = None,
        error: EngineError | None = None,
        token_count: int | Callable[..., int] | None = None,
    ) -> None:
        """
        :param script: deltas to stream, or a callable ``request -> deltas``.
        :param delay: seconds to sleep before every delta after the first.
        :param first_delay: seconds to sleep before the first delta (time to first token).
        :param fail_after: raise ``error`` after this many deltas (0: before any).
        :param error: the error to raise (default: EngineError) — with ``fail_after``.
        :param token_count: fixed result, or callable, for :meth:`count_tokens`.
        """
        self.script: Script = script if script is not None else text_script("Hello world")
        self.delay = delay
        self.first_delay = first_delay
        self.fail_after = fail_after
        self.error = error
        self.token_count = token_count
        self.requests: list[GenerationRequest] = []
        self.token_requests: list[dict[str, Any]] = []
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.failed = 0
        self.yielded = 0
        """Deltas handed out, over all streams."""

    @property
    def active(self) -> int:
        return self.started - self.finished - self.cancelled - self.failed

    @property
    def last_request(self) -> GenerationRequest:
        return self.requests[-1]

    def reset(self) -> None:
        self.requests.clear()
        self.token_requests.clear()
        self.started = self.finished = self.cancelled = self.failed = self.yielded = 0

    async def wait_until(
        self, predicate: Callable[[ScriptedEngine], bool], *, within: float = 2.0
    ) -> bool:
        """Poll ``predicate(self)`` without blocking the loop; True once it holds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            await asyncio.sleep(0.005)
        return predicate(self)

    def _deltas_for(self, request: GenerationRequest) -> list[EngineDelta]:
        script = self.script
        return list(script(request) if callable(script) else script)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[EngineDelta, None]:
        self.requests.append(request)
        self.started += 1
        deltas = self._deltas_for(request)
        sent = 0
        try:
            for delta in deltas:
                if self.fail_after is not None and sent >= self.fail_after:
                    self._fail()
                pause = self.first_delay if sent == 0 else self.delay
                if pause:
                    await asyncio.sleep(pause)
                sent += 1
                self.yielded += 1
                _advance(request, delta)
                yield delta
            if self.fail_after is not None and sent == self.fail_after:
                self._fail()  # fail_after == len(script): fail after the very last delta
            self.finished += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise

    def _fail(self) -> None:
        self.failed += 1
        # A fresh copy per stream: re-raising one instance would chain its tracebacks.
        raise copy.copy(self.error) if self.error else EngineError("scripted engine failure")

    async def count_tokens(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
    ) -> int:
        self.token_requests.append({"model": model, "messages": messages, "tools": tools})
        if isinstance(self.token_count, int):
            return self.token_count
        if callable(self.token_count):
            return int(self.token_count(model=model, messages=messages, tools=tools))
        return whitespace_token_count(messages=messages, tools=tools)

    async def aclose(self) -> None:
        """Nothing to release; present so callers can close any engine alike."""
