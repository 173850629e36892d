"""The engine seam: what the Responses layer asks of an engine and what it gets back.

The platform owns Responses semantics; an engine only turns a chat-style generation request into a
stream of small, normalized deltas. Requests are already in chat-completions vocabulary (messages,
``tools`` as ``{"type": "function", "function": {...}}``, ``tool_choice``, ``response_format``),
because that is what vLLM's OpenAI-compatible server speaks; the Responses layer translates.

Two implementations sit behind :class:`Engine`: the vLLM HTTP client and, for deterministic tests,
the scripted engine in ``testsupport.scripted_engine``. Nothing outside ``engines`` may depend on
which one it has.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

ServiceTier = Literal["auto", "default", "flex", "priority"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "abort"]

# vLLM's priority scheduler runs lower numbers first.
TIER_PRIORITY: dict[str, int] = {"priority": 0, "default": 1, "flex": 2}


@dataclass(slots=True)
class EngineProgress:
    """What the engine has reported so far for one request, kept up to date while it streams
    (vLLM's per-chunk usage). When the stream is cut short (the client left) no final ``Usage``
    delta comes, and this is what was really processed and generated, so that is billed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reported: bool = False


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    """Our request id (x-request-id); sent upstream as vLLM's request id, so one id names the
    request in our logs and in vLLM's."""
    model: str
    """The platform's public model name; the engine maps it to the upstream name."""
    messages: list[dict[str, Any]]
    organization_id: str
    """Public id of the calling organization: the routing key for prompt_cache_key and the source
    of the per-organization cache_salt."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    service_tier: str = "default"
    """Tier actually used (already resolved from "auto"); mapped to vLLM priority."""
    prompt_cache_key: str | None = None
    reasoning_effort: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Further vLLM parameters, passed through untouched."""
    progress: EngineProgress = field(default_factory=EngineProgress, compare=False)
    """Updated by the engine as it streams (see :class:`EngineProgress`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.progress, EngineProgress):
            # Rebuilt from a serialized job (dataclasses.asdict): progress belongs to one run,
            # so a rebuilt request starts afresh.
            object.__setattr__(self, "progress", EngineProgress())


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int
    """Position of the call within this generation (0, 1, … for parallel calls)."""
    call_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArgumentsDelta:
    index: int
    delta: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


EngineDelta = TextDelta | ReasoningDelta | ToolCallStart | ToolCallArgumentsDelta | Finish | Usage


class EngineError(Exception):
    """An engine failure, already classified for the API layer.

    ``code``/``type``/``status`` follow OpenAI's error vocabulary so the API layer can render them
    directly; ``permanent`` says whether retrying the same request can help.
    """

    status: int = 502
    type: str = "server_error"
    code: str | None = "server_error"
    permanent: bool = False
    retry_after_ms: int | None = None
    """For a 503: when a retry can first succeed (the next health check of the ejected
    replicas), filled in by the engine that knows; None when nobody does."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class EngineUnavailable(EngineError):
    """No healthy replica, or the replica could not be reached before anything streamed."""

    status = 503
    type = "service_unavailable_error"
    code = "engine_unavailable"


class EngineTimeout(EngineError):
    status = 504
    type = "server_error"
    code = "engine_timeout"


class EngineBadRequest(EngineError):
    """The upstream refused the request (its 400): the client's input, not our failure."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None
    permanent = True


class ContextLengthExceeded(EngineBadRequest):
    code = "context_length_exceeded"


class EngineProtocolError(EngineError):
    """The upstream sent something that is not a valid stream (malformed or truncated data)."""

    code = "server_error"


@runtime_checkable
class Engine(Protocol):
    """One model's generation backend.

    ``stream`` is an async generator. Cancelling the task that iterates it, or calling ``aclose()``
    on it, must abort the upstream request promptly (the HTTP connection to vLLM is closed, which
    makes vLLM abort the sequence). It raises :class:`EngineError` subclasses only; before the
    first delta a failure may be retried on another replica, after it never.
    """

    def stream(self, request: GenerationRequest) -> AsyncGenerator[EngineDelta, None]: ...

    async def count_tokens(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
    ) -> int: ...


class DeltaQueue:
    """Where an engine that can push (``stream_into(request, queue)``, the vLLM client) puts its
    deltas, straight from the socket's callback, so that no task wakes up per token between
    the engine and the consumer. One consumer; unbounded for ``put_nowait`` (the consumer's own
    markers always fit); the engine stops reading once :meth:`engine_full`, and
    :meth:`when_drained` tells it when the consumer has taken everything (backpressure: a slow
    client backs up into the engine, not into memory). A plain deque and one future: this is
    on the path of every token, and ``asyncio.Queue``'s generality (several getters and
    putters, task accounting) costs more than the rest of a hand-off."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._drained: list[Callable[[], object]] = []

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def engine_full(self) -> bool:
        return len(self._items) >= self.limit

    def when_drained(self, callback: Callable[[], object]) -> None:
        self._drained.append(callback)

    def put_nowait(self, item: object) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> object:
        while not self._items:
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self.get_nowait()

    def get_nowait(self) -> object:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if self._drained and not self._items:
            callbacks, self._drained = self._drained, []
            loop = asyncio.get_running_loop()
            for callback in callbacks:
                loop.call_soon(callback)  # not from inside the consumer's get()
        return item

    async def room(self) -> None:
        """For an engine that is iterated instead: wait until it may put again."""
        if self.engine_full():
            waiter = asyncio.get_running_loop().create_future()

            def wake() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            self.when_drained(wake)
            await waiter
