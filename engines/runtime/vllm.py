"""The vLLM engine: streaming chat completions over HTTP (httpx, vLLM's OpenAI-compatible API).

One :class:`VllmEngine` serves one model. It picks a replica from its :class:`ReplicaPool` for
every attempt, speaks vLLM's OpenAI-compatible ``/v1/chat/completions`` with ``stream=True`` and
turns the chunks into the normalized deltas of :mod:`engines.runtime.types`.

Failure rules (what the API layer relies on):

* every upstream failure surfaces as an :class:`EngineError` subclass, never as an SDK or httpx
  exception;
* a failure before the first delta was handed to the caller is retried on another healthy
  replica (unless it is the client's fault, e.g. a 400); after the first delta it propagates;
* closing the generator or cancelling the task that drives it closes the HTTP response at once,
  which is how vLLM learns to abort the sequence when the client disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from http import HTTPStatus
from typing import Any

import httpx
import orjson

from engines.runtime.event_stream import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    EngineResponse,
    ReadTimeout,
    request_json,
)
from engines.runtime.pool import Replica, ReplicaPool
from engines.runtime.types import (
    TIER_PRIORITY,
    ContextLengthExceeded,
    DeltaQueue,
    EngineBadRequest,
    EngineDelta,
    EngineError,
    EngineProgress,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    Finish,
    FinishReason,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStart,
    TopLogprob,
    Usage,
)

logger = logging.getLogger(__name__)

__all__ = ["VllmEngine", "cache_salt_factory", "organization_cache_salt"]

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "abort": "abort",
}

_TEXT_ONLY = frozenset({"content", "role"})  # a delta with only these is plain text

_CONTEXT_LENGTH_MARKERS = ("maximum context length", "context length", "context window")


def organization_cache_salt(*, secret: str, organization_id: str) -> str:
    """vLLM ``cache_salt`` for an organization: HMAC-SHA256(secret, organization id), hex.

    Prefix-cache blocks are only shared between requests with the same salt, so tenants never hit
    each other's cache entries, and the salt cannot be guessed from the public org id.
    """
    return hmac.new(secret.encode(), organization_id.encode(), hashlib.sha256).hexdigest()


def cache_salt_factory(secret: str) -> Callable[[str], str]:
    """A ``organization_id -> cache_salt`` callable bound to ``secret``."""
    if not secret:
        raise ValueError("cache salt secret must not be empty")

    def salt(organization_id: str) -> str:
        return organization_cache_salt(secret=secret, organization_id=organization_id)

    return salt


def _get(obj: Any, name: str) -> Any:
    # Chunks are parsed JSON: dicts, checked first; anything else is read by attribute.
    if type(obj) is dict:
        return obj.get(name)
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _error_message(status: int, body: bytes) -> str:
    """The message of an error answer: vLLM sends ``{"error": {"message": …}}`` (older
    versions ``{"object": "error", "message": …}``); anything else is shown as text."""
    try:
        parsed = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
            return error["message"]
        if isinstance(error, str) and error:
            return error
    text = body.decode("utf-8", "replace")[:500]
    if text:
        return text
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _loads(data: bytes) -> Any:
    """One chunk's JSON. orjson parses it in a quarter of the standard library's time; what it
    refuses (``NaN``, lone surrogate escapes, text that is not UTF-8, broken JSON) goes to the
    standard library, which reads the first two as before and reports the last as before. Text
    that is not UTF-8 is decoded with replacement characters, as a text reader of the stream
    would have."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        return json.loads(data.decode("utf-8", "replace"))


def _is_context_length(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _CONTEXT_LENGTH_MARKERS)


def _status_error(status: int, message: str) -> EngineError:
    if status in (400, 413, 422):
        if _is_context_length(message):
            return ContextLengthExceeded(message)
        return EngineBadRequest(message)
    if status in (429, 503):
        return EngineUnavailable(
            f"Engine replica is overloaded or unavailable ({status}): {message}"
        )
    return EngineError(f"Engine replica answered {status}: {message}")


_ITERATOR_QUEUE = 64  # deltas buffered for an iterating caller before the engine pauses


class _StreamState:
    __slots__ = ("chunks", "done")

    def __init__(self) -> None:
        self.chunks = 0
        self.done = False


class _Counter:
    """Puts deltas on a queue and counts them (a failure after the first is not retried)."""

    __slots__ = ("count", "queue")

    def __init__(self, queue: DeltaQueue) -> None:
        self.queue = queue
        self.count = 0

    def __call__(self, delta: EngineDelta) -> None:
        self.count += 1
        self.queue.put_nowait(delta)


class _ChunkMapper:
    """Turns chat-completion chunks into normalized deltas and checks the stream's shape."""

    def __init__(self, progress: EngineProgress | None = None) -> None:
        self.started_calls: set[int] = set()
        self.finished = False
        self.usage_seen = False
        self.progress = progress if progress is not None else EngineProgress()
        self.last_usage: Any = None

    def feed(self, chunk: Any) -> list[EngineDelta]:
        # Nearly every chunk is one more token of text: one choice whose delta holds only
        # content, no logprobs, no finish. Read it without the general walk below (same result).
        if type(chunk) is dict:
            choices = chunk.get("choices")
            if type(choices) is list and len(choices) == 1 and type(choices[0]) is dict:
                choice = choices[0]
                delta = choice.get("delta")
                if (
                    type(delta) is dict
                    and delta.keys() <= _TEXT_ONLY
                    and choice.get("logprobs") is None
                    and not choice.get("finish_reason")
                    and not choice.get("index")
                ):
                    content = delta.get("content")
                    usage = chunk.get("usage")
                    if usage is not None and not self.usage_seen:
                        self._note_usage(usage)
                    return [TextDelta(text=str(content))] if content else []
        return self._feed(chunk)

    def _feed(self, chunk: Any) -> list[EngineDelta]:
        out: list[EngineDelta] = []
        for choice in _get(chunk, "choices") or ():
            if (_get(choice, "index") or 0) != 0:
                continue  # we never ask for n > 1
            delta = _get(choice, "delta")
            if delta is not None:
                self._delta(delta, _get(choice, "logprobs"), out)
            reason = _get(choice, "finish_reason")
            if reason and not self.finished:
                self.finished = True
                out.append(Finish(reason=self._finish_reason(reason)))
        usage = _get(chunk, "usage")
        if usage is not None and not self.usage_seen:
            # Every chunk carries the usage so far (continuous_usage_stats): kept as progress;
            # the Usage delta comes once, from the final usage-only chunk (no choices), or from
            # the last one seen when the stream ends (usage_final).
            self._note_usage(usage)
            if not _get(chunk, "choices"):
                out.append(self.usage_final())
        return out

    def _note_usage(self, usage: Any) -> None:
        self.last_usage = usage
        progress = self.progress
        progress.input_tokens = int(_get(usage, "prompt_tokens") or 0)
        progress.output_tokens = int(_get(usage, "completion_tokens") or 0)
        progress.reported = True

    def usage_final(self) -> Usage:
        self.usage_seen = True
        usage = self.last_usage
        prompt_details = _get(usage, "prompt_tokens_details")
        completion_details = _get(usage, "completion_tokens_details")
        cached = int(_get(prompt_details, "cached_tokens") or 0)
        self.progress.cached_tokens = cached
        return Usage(
            input_tokens=int(_get(usage, "prompt_tokens") or 0),
            output_tokens=int(_get(usage, "completion_tokens") or 0),
            cached_tokens=cached,
            reasoning_tokens=int(_get(completion_details, "reasoning_tokens") or 0),
        )

    def _delta(self, delta: Any, logprobs: Any, out: list[EngineDelta]) -> None:
        # vLLM renamed ``reasoning_content`` to ``reasoning``; some versions send both with the
        # same text, so take one.
        reasoning = _get(delta, "reasoning")
        if reasoning is None:
            reasoning = _get(delta, "reasoning_content")
        if reasoning:
            out.append(ReasoningDelta(text=str(reasoning)))
        content = _get(delta, "content")
        if content:
            out.append(TextDelta(text=str(content), logprobs=self._logprobs(logprobs)))
        for call in _get(delta, "tool_calls") or ():
            index = int(_get(call, "index") or 0)
            function = _get(call, "function")
            if index not in self.started_calls:
                name = _get(function, "name")
                if not name:
                    raise EngineProtocolError(
                        f"Engine streamed tool call {index} without a function name."
                    )
                call_id = _get(call, "id") or f"call_{uuid.uuid4().hex[:24]}"
                self.started_calls.add(index)
                out.append(ToolCallStart(index=index, call_id=str(call_id), name=str(name)))
            arguments = _get(function, "arguments")
            if arguments:
                out.append(ToolCallArgumentsDelta(index=index, delta=str(arguments)))

    @staticmethod
    def _logprobs(logprobs: Any) -> list[TokenLogprob]:
        content = _get(logprobs, "content")
        if not content:
            return []
        tokens = []
        for item in content:
            tops = [
                TopLogprob(
                    token=str(_get(top, "token")),
                    logprob=float(_get(top, "logprob")),
                    bytes=_get(top, "bytes"),
                )
                for top in _get(item, "top_logprobs") or ()
            ]
            tokens.append(
                TokenLogprob(
                    token=str(_get(item, "token")),
                    logprob=float(_get(item, "logprob")),
                    bytes=_get(item, "bytes"),
                    top_logprobs=tops,
                )
            )
        return tokens

    @staticmethod
    def _finish_reason(reason: str) -> FinishReason:
        if reason == "error":
            raise EngineError("The engine failed while generating (finish_reason=error).")
        return _FINISH_REASONS.get(reason, "stop")


class VllmEngine:
    """:class:`~engines.runtime.types.Engine` backed by vLLM replicas."""

    def __init__(
        self,
        *,
        upstream_model: str,
        pool: ReplicaPool,
        cache_salt: Callable[[str], str],
        max_attempts: int = 3,
    ) -> None:
        self.upstream_model = upstream_model
        self.pool = pool
        self._cache_salt = cache_salt
        self.max_attempts = max(1, max_attempts)

    # --- plumbing -------------------------------------------------------------------------
    def build_params(self, request: GenerationRequest) -> dict[str, Any]:
        """The ``/v1/chat/completions`` body for ``request``, in the ``openai`` SDK's keyword
        form (``extra_body``, ``extra_headers``): public for tests and debugging, and what
        :meth:`request_body` flattens into the JSON actually sent."""
        params: dict[str, Any] = {
            "model": self.upstream_model,
            "messages": request.messages,
            "stream": True,
        }
        if request.tools:
            params["tools"] = request.tools
            # vLLM refuses tool_choice without tools, so both go together.
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                params["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            params["response_format"] = request.response_format
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.max_tokens is not None:
            params["max_completion_tokens"] = request.max_tokens
        if request.logprobs or request.top_logprobs:
            params["logprobs"] = True
            if request.top_logprobs is not None:
                params["top_logprobs"] = request.top_logprobs
        if request.reasoning_effort is not None:
            params["reasoning_effort"] = request.reasoning_effort
        params["extra_body"] = {
            # Defaults a caller may override through extra_body (e.g. a derived request id for a
            # second generation within one API request: vLLM wants in-flight ids unique).
            "request_id": request.request_id,
            # Usage on every chunk (a few bytes each): a stream cut short by a disconnect still
            # knows what was processed and generated, which is what is billed.
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            **request.extra_body,
            # Policy, never overridable: scheduling priority from the service tier and the tenant's
            # prefix-cache isolation.
            "priority": TIER_PRIORITY.get(request.service_tier, TIER_PRIORITY["default"]),
            "cache_salt": self._cache_salt(request.organization_id),
        }
        params["extra_headers"] = {"X-Request-Id": request.request_id}
        return params

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = self.build_params(request)
        params.pop("extra_headers", None)
        return params | params.pop("extra_body", {})

    # --- Engine ------------------------------------------------------------------------------
    async def stream(self, request: GenerationRequest) -> AsyncGenerator[EngineDelta, None]:
        """The deltas of :meth:`stream_into`, as an async generator (the Engine protocol)."""
        queue = DeltaQueue(_ITERATOR_QUEUE)
        end = object()

        async def run() -> None:
            try:
                await self.stream_into(request, queue)
            finally:
                queue.put_nowait(end)

        task = asyncio.create_task(run())
        try:
            while True:
                item = await queue.get()
                if item is end:
                    break
                yield item  # type: ignore[misc]  # the queue holds deltas and the end marker
            await task  # its error, if it failed
        finally:
            # Closed early or cancelled: stop the request (closing its connection aborts it).
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, EngineError):
                await task

    async def stream_into(self, request: GenerationRequest, queue: DeltaQueue) -> None:
        """Put the request's deltas on ``queue`` as the engine's bytes arrive, from the
        connection's callback (no task wakes up per token); return at the end of the stream.
        Cancelling it aborts the request. A failure before the first delta was put is retried
        on another replica; after it, it propagates."""
        tried: list[Replica] = []
        last_error: EngineError | None = None
        while True:
            try:
                replica = self.pool.select(
                    organization_id=request.organization_id,
                    prompt_cache_key=request.prompt_cache_key,
                    exclude=tried,
                )
            except EngineUnavailable:
                if last_error is not None:
                    raise last_error from None
                raise
            tried.append(replica)
            put = _Counter(queue)
            try:
                with self.pool.lease(replica):
                    await self._attempt(replica, request, put)
                return
            except EngineError as exc:
                if put.count or exc.permanent or len(tried) >= self.max_attempts:
                    raise
                last_error = exc
                logger.warning(
                    "engine attempt failed, retrying on another replica: request_id=%s "
                    "replica=%s error=%s",
                    request.request_id,
                    replica.base_url,
                    exc,
                )

    async def _attempt(self, replica: Replica, request: GenerationRequest, put: _Counter) -> None:
        """One try against one replica; raises EngineError subclasses only.

        Not the ``openai`` SDK, and not httpx either: vLLM's protocol here is one JSON POST
        answered by an SSE stream, and every token of every stream goes through this reader, so
        it has a purpose-built HTTP client (:mod:`engines.runtime.event_stream`,
        docs/performance.md)."""
        connections = self.pool.stream_connections(replica)
        headers = [
            (b"Authorization", f"Bearer {replica.api_key or 'EMPTY'}".encode("latin-1")),
            (b"Accept", b"text/event-stream"),
            (b"X-Request-Id", request.request_id.encode("latin-1")),
        ]
        try:
            response = await connections.post_stream(
                "/chat/completions",
                body=request_json(self.request_body(request)),
                headers=headers,
                read_timeout=self.pool.read_timeout,
            )
        except ConnectTimeout as exc:
            self.pool.mark_failed(replica, reason="connect timeout")
            raise EngineTimeout(f"Engine replica timed out: {replica.base_url}") from exc
        except ReadTimeout as exc:
            raise EngineTimeout(f"Engine replica timed out: {replica.base_url}") from exc
        except (ConnectFailed, ConnectionLost) as exc:
            self.pool.mark_failed(replica, reason=f"connection failed: {exc}")
            raise EngineUnavailable(f"Engine replica unreachable: {replica.base_url}") from exc
        # Closing the response, whatever the reason (end, error, cancellation), closes the
        # connection unless the answer was read to its end: that makes vLLM abort.
        try:
            if response.status_code != 200:
                try:
                    body = await response.read()
                except ReadTimeout as exc:
                    raise EngineTimeout(f"Engine replica timed out: {replica.base_url}") from exc
                except ConnectionLost as exc:
                    self.pool.mark_failed(replica, reason=f"connection lost: {exc}")
                    raise EngineUnavailable(
                        f"Engine replica closed the connection: {replica.base_url}"
                    ) from exc
                raise _status_error(
                    response.status_code, _error_message(response.status_code, body)
                )
            await self._read_stream(replica, response, request.progress, put)
        finally:
            response.close()

    async def _read_stream(
        self,
        replica: Replica,
        response: EngineResponse,
        progress: EngineProgress | None,
        put: _Counter,
    ) -> None:
        """Parse vLLM's SSE body into deltas, as it arrives.

        Why not the SDK's ``AsyncStream``: it builds a pydantic model per chunk, which costs about
        four times the rest of the path (~160 µs of ~200 µs per token here); vLLM's SSE is simple
        (one ``data:`` line per event), and the mapper reads plain dicts.
        """
        mapper = _ChunkMapper(progress)
        state = _StreamState()
        queue = put.queue

        def on_events(events: list[bytes]) -> bool:
            # Runs in the connection's callback, once per arrival of the engine's bytes.
            for data in events:
                if state.done:
                    continue
                if data == b"[DONE]":
                    # Keep reading to the end of the body (a few bytes) so the connection
                    # can go back to the pool instead of being closed.
                    state.done = True
                    continue
                state.chunks += 1
                payload = _loads(data)
                if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
                    raise self._stream_error(payload["error"])
                try:
                    deltas = mapper.feed(payload)
                except EngineError:
                    raise
                except (TypeError, ValueError, AttributeError, KeyError) as exc:
                    raise EngineProtocolError(
                        f"Engine sent a malformed chunk: {type(exc).__name__}: {exc}"
                    ) from exc
                for delta in deltas:
                    put(delta)
            if queue.engine_full():
                queue.when_drained(response.resume)
                return False
            return True

        try:
            await response.pump(on_events)
        except ReadTimeout as exc:
            raise EngineTimeout(f"Engine replica stopped sending data: {replica.base_url}") from exc
        except ConnectionLost as exc:
            self.pool.mark_failed(replica, reason=f"connection lost: {exc}")
            if state.chunks == 0:
                raise EngineUnavailable(
                    f"Engine replica closed the connection: {replica.base_url}"
                ) from exc
            raise EngineProtocolError(
                f"Engine stream was cut off after {state.chunks} chunks: {replica.base_url}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise EngineProtocolError(f"Engine sent invalid JSON in its stream: {exc}") from exc
        if mapper.last_usage is not None and not mapper.usage_seen:
            put(mapper.usage_final())  # no usage-only chunk at the end: the last one seen
        if not mapper.finished:
            raise EngineProtocolError(
                f"Engine stream ended without a finish_reason after {state.chunks} chunks."
            )

    @staticmethod
    def _stream_error(error: Any) -> EngineError:
        """vLLM's in-stream error event: ``data: {"error": {"message": ..., "code": ...}}``."""
        message = error.get("message") if isinstance(error, dict) else None
        message = str(message or error or "unknown error")
        if _is_context_length(message):
            return ContextLengthExceeded(message)
        return EngineError(f"Engine failed mid-stream: {message}")

    async def count_tokens(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
    ) -> int:
        """Prompt tokens for ``messages`` (+ ``tools``) with the model's chat template, via
        vLLM's ``POST /tokenize``. ``model`` is the public name; the upstream name is used."""
        payload: dict[str, Any] = {
            "model": self.upstream_model,
            "messages": messages,
            "add_generation_prompt": True,
        }
        if tools:
            payload["tools"] = tools
        try:
            return await self._count_tokens(payload)
        except EngineUnavailable as exc:
            exc.retry_after_ms = exc.retry_after_ms or self.retry_hint_ms()
            raise

    async def _count_tokens(self, payload: dict[str, Any]) -> int:
        tried: list[Replica] = []
        while True:
            replica = self.pool.select(organization_id="", exclude=tried)
            tried.append(replica)
            try:
                with self.pool.lease(replica):
                    return await self._tokenize(replica, payload)
            except EngineError as exc:
                if exc.permanent or len(tried) >= self.max_attempts:
                    raise

    async def _tokenize(self, replica: Replica, payload: dict[str, Any]) -> int:
        http = self.pool.http_client(replica)
        try:
            response = await http.post(f"{replica.root_url}/tokenize", json=payload)
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"Engine replica timed out: {replica.base_url}") from exc
        except (httpx.HTTPError, OSError) as exc:
            self.pool.mark_failed(replica, reason=f"connection failed: {exc}")
            raise EngineUnavailable(f"Engine replica unreachable: {replica.base_url}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error", body) if isinstance(body, dict) else None
        message = (
            str(error.get("message"))
            if isinstance(error, dict) and error.get("message")
            else response.text[:500]
        )
        if response.status_code in (400, 413, 422):
            if _is_context_length(message):
                raise ContextLengthExceeded(message)
            raise EngineBadRequest(message)
        if response.status_code in (429, 503):
            raise EngineUnavailable(f"Engine replica unavailable ({response.status_code})")
        if response.status_code != 200:
            raise EngineError(f"Engine tokenize answered {response.status_code}: {message}")
        if not isinstance(body, dict) or not isinstance(body.get("count"), int):
            raise EngineProtocolError("Engine tokenize answer has no integer 'count'.")
        return body["count"]

    def retry_hint_ms(self) -> int:
        """When a request refused for want of a healthy replica may be retried."""
        return self.pool.next_check_in_ms()

    async def aclose(self) -> None:
        await self.pool.aclose()
