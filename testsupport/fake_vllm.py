"""A small, fast stand-in for vLLM's OpenAI-compatible server.

It speaks the parts of vLLM's HTTP API the platform uses, byte for byte in the shapes vLLM sends:
streaming ``POST /v1/chat/completions`` (SSE over chunked HTTP/1.1, role chunk first, the usage
chunk with empty ``choices`` last, then ``[DONE]``), non-streaming chat completions,
``POST /tokenize``, ``GET /health`` and ``GET /v1/models``.

Why write an HTTP server by hand: the test tier must not grow dependencies, it has to be fast
(hundreds of streams per second for routing tests and the benchmark), and it must be able to
misbehave in exactly the ways a real engine does: die mid-stream, send garbage, stall, refuse.
It also has to *notice* what clients do: a client that closes its connection before the end of a
stream is counted as an abort, which is how tests prove that cancellation reaches the engine.

Use it in-process::

    with FakeVllm(behavior=FakeBehavior(text="Hello there")) as upstream:
        base_url = upstream.base_url          # http://127.0.0.1:<port>/v1
        ...
        assert upstream.aborted_streams == 1

or inside a running event loop with ``await upstream.astart()`` / ``await upstream.astop()``, or as a
process for benchmarks: ``python -m testsupport.fake_vllm --port 8100``.

Nothing here imports Django.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FakeBehavior",
    "FakeToolCall",
    "FakeVllm",
    "RecordedRequest",
    "count_prompt_tokens",
    "split_tokens",
]

_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")
_MAX_HEAD_BYTES = 64 * 1024
_STREAM_LIMIT = 64 * 1024 * 1024  # request bodies are read with readexactly; this caps the head


@dataclass
class FakeToolCall:
    name: str
    arguments: str = "{}"
    call_id: str | None = None
    """Defaults to ``chatcmpl-tool-<hex>`` like vLLM's tool parsers."""


@dataclass
class FakeBehavior:
    """What the fake engine answers. Mutable: tests may change it between requests."""

    text: str = "Hello from the fake engine."
    chunk_tokens: int = 1
    """Whitespace tokens per content chunk."""
    delay: float = 0.0
    """Seconds between chunks (after the first)."""
    first_chunk_delay: float = 0.0
    """Seconds between the response headers and the first chunk (time to first token)."""
    headers_delay: float = 0.0
    """Seconds before the response headers are sent (a stalled or queued engine)."""

    reasoning: str | None = None
    reasoning_field: str = "reasoning"
    """Delta field for reasoning text: vLLM's current ``reasoning`` or the older
    ``reasoning_content``."""
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    tool_argument_chunk_chars: int = 8
    finish_reason: str | None = None
    """Defaults to ``tool_calls`` when tool calls are scripted, ``length`` when max_tokens cut
    the text short, else ``stop``."""

    prompt_tokens: int | None = None
    """Override the prompt token count (default: whitespace tokens of the messages)."""
    cached_tokens: int | None = None
    """Override cached prompt tokens (default: simulated prefix cache, see ``prefix_cache``)."""
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    prefix_cache: bool = True
    """Simulate vLLM's automatic prefix caching: full blocks of ``block_size`` prompt tokens seen
    before *with the same cache_salt* count as cached (never the whole prompt, like vLLM)."""
    block_size: int = 16
    max_model_len: int = 4096

    status: int = 200
    """Non-200: answer every chat request with this status and an error body."""
    error_message: str = "fake engine error"
    die_after_chunks: int | None = None
    """Reset the connection after this many SSE events (an engine crash)."""
    malformed_after_chunks: int | None = None
    """Send an event that is not valid JSON after this many events, then end the body."""
    truncate_after_chunks: int | None = None
    """End the body cleanly after this many events: no finish_reason, no usage, no [DONE]."""
    error_event_after_chunks: int | None = None
    """Send vLLM's in-stream ``{"error": {...}}`` event after this many events, then end."""
    send_done: bool = True


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased header names."""
    body: Any
    received_at: float = field(default_factory=time.monotonic)
    outcome: str = "pending"
    """For streams: ``completed``, ``aborted`` (client left early), ``killed`` (die_after),
    ``truncated``, ``malformed``, ``error_event``; ``served`` for plain answers."""
    events_sent: int = 0


def split_tokens(text: str) -> list[str]:
    """Whitespace "tokens" that concatenate back to ``text`` exactly."""
    return _TOKEN_RE.findall(text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def _prompt_words(messages: Any, tools: Any) -> list[str]:
    words: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        # A role marker per message so that an empty message still costs a token, as with a real
        # chat template.
        words.append(f"<|{message.get('role', 'user')}|>")
        words.extend(_content_text(message.get("content")).split())
        for call in message.get("tool_calls") or []:
            words.extend(json.dumps(call, sort_keys=True).split())
    if tools:
        words.extend(json.dumps(tools, sort_keys=True).split())
    return words


def count_prompt_tokens(*, messages: Any, tools: Any = None) -> int:
    """The fake's token count for a chat prompt; ``/tokenize`` and ``usage`` agree on it."""
    return len(_prompt_words(messages, tools))


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

_ERROR_TYPES = {
    400: "BadRequestError",
    401: "Unauthorized",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class _Connection:
    """One client connection; keeps a pushed-back byte from the disconnect watcher."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pushback = b""

    async def read_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip() and not self.pushback:
                return None  # the client closed an idle keep-alive connection
            raise
        head = self.pushback + head
        self.pushback = b""
        if len(head) > _MAX_HEAD_BYTES:
            raise _HttpError(431, "request head too large")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _HttpError(400, "malformed request line") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            length = int(headers.get("content-length") or 0)
            body = await self.reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0]
        return method.upper(), path, headers, body

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers (none expected) end with an empty line.
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)


def _response_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class FakeVllm:
    """A fake vLLM replica. State (recorded requests, counters, prefix cache) survives restarts."""

    def __init__(
        self,
        *,
        behavior: FakeBehavior | None = None,
        model: str | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        max_recorded: int = 10_000,
    ) -> None:
        self.behavior = behavior or FakeBehavior()
        self.behavior_for: Callable[[dict[str, Any]], FakeBehavior | None] | None = None
        """Optional per-request override: called with the JSON body of each chat request."""
        self.model = model
        """Served model name; ``None`` accepts any name."""
        self.api_key = api_key
        self.host = host
        self.port = port
        self.healthy = True
        self.record = record
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._cache: dict[str, set[bytes]] = {}
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # --- addresses -------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # --- counters ---------------------------------------------------------------------------
    def _bump(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + by

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    @property
    def started_streams(self) -> int:
        return self.counter("streams_started")

    @property
    def completed_streams(self) -> int:
        return self.counter("streams_completed")

    @property
    def aborted_streams(self) -> int:
        """Streams the client closed before their end: what vLLM turns into an abort."""
        return self.counter("streams_aborted")

    @property
    def killed_streams(self) -> int:
        return self.counter("streams_killed")

    @property
    def active_streams(self) -> int:
        return self.counter("streams_active")

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (shows whether clients pool their connections)."""
        return self.counter("connections")

    @property
    def health_checks(self) -> int:
        return self.counter("health_checks")

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget recorded requests, counters and the prefix cache (keeps the behavior)."""
        with self._lock:
            self._counters.clear()
            self._cache.clear()
        self.requests.clear()

    def wait_until(self, predicate: Callable[[FakeVllm], bool], *, within: float = 2.0) -> bool:
        """Poll ``predicate(self)`` from a plain thread; True once it holds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.005)
        return predicate(self)

    async def await_until(
        self, predicate: Callable[[FakeVllm], bool], *, within: float = 2.0
    ) -> bool:
        """Like :meth:`wait_until`, without blocking the caller's event loop."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            await asyncio.sleep(0.005)
        return predicate(self)

    # --- lifecycle in the current event loop ---------------------------------------------------
    async def astart(self) -> str:
        """Listen in the running loop; returns the base URL (``…/v1``)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, limit=_STREAM_LIMIT, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    async def astop(self) -> None:
        """Stop listening and reset every open connection (like a crashed engine)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # --- lifecycle in a background thread --------------------------------------------------------
    def start(self) -> str:
        """Serve from a daemon thread with its own loop; returns the base URL. Reuses the port
        after a stop, so a restarted replica comes back at the same address."""
        if self._thread is not None:
            raise RuntimeError("already running")
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # noqa: BLE001 - surface bind errors to the caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.astop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name=f"fake-vllm:{self.port}", daemon=True)
        thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        self._thread = thread
        return self.base_url

    def stop(self) -> None:
        """Kill the server: the port stops accepting and open streams are reset."""
        thread, self._thread = self._thread, None
        loop = self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    kill = stop

    def restart(self) -> str:
        self.stop()
        return self.start()

    def __enter__(self) -> FakeVllm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP --------------------------------------------------------------------------------
    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self._bump("connections")
        conn = _Connection(reader, writer)
        try:
            while True:
                try:
                    request = await conn.read_request()
                except _HttpError as exc:
                    await self._send_error(conn, exc.status, exc.message, keep_alive=False)
                    return
                if request is None:
                    return
                if not await self._dispatch(conn, *request):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            return
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(
        self, conn: _Connection, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> bool:
        """Answer one request; False when the connection must be closed afterwards."""
        keep_alive = headers.get("connection", "").lower() != "close"
        if path == "/health":
            self._bump("health_checks")
            status = 200 if self.healthy else 503
            await self._send_raw(conn, status, b"", "text/plain", keep_alive=keep_alive)
            return keep_alive
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            await self._send_error(conn, 400, "request body is not valid JSON", keep_alive)
            return keep_alive
        record = RecordedRequest(method=method, path=path, headers=headers, body=body)
        if self.record:
            self.requests.append(record)
        if (
            self.api_key
            and path.startswith("/v1/")
            and headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            record.outcome = "served"
            await self._send_json(conn, 401, {"error": "Unauthorized"}, keep_alive)
            return keep_alive
        if path == "/v1/models" and method == "GET":
            record.outcome = "served"
            await self._send_json(conn, 200, self._models_body(), keep_alive)
            return keep_alive
        if path == "/tokenize" and method == "POST":
            record.outcome = "served"
            return await self._tokenize(conn, body if isinstance(body, dict) else {}, keep_alive)
        if path == "/v1/chat/completions" and method == "POST":
            if not isinstance(body, dict):
                await self._send_error(conn, 400, "expected a JSON object", keep_alive)
                return keep_alive
            return await self._chat(conn, record, body, headers, keep_alive)
        record.outcome = "served"
        await self._send_error(conn, 404, f"Not Found: {method} {path}", keep_alive)
        return keep_alive

    def _models_body(self) -> dict[str, Any]:
        name = self.model or "fake-model"
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "vllm",
                    "root": name,
                    "max_model_len": self.behavior.max_model_len,
                }
            ],
        }

    async def _tokenize(self, conn: _Connection, body: dict[str, Any], keep_alive: bool) -> bool:
        if "messages" in body:
            count = count_prompt_tokens(messages=body["messages"], tools=body.get("tools"))
        else:
            count = len(str(body.get("prompt", "")).split())
        await self._send_json(
            conn,
            200,
            {
                "count": count,
                "max_model_len": self.behavior.max_model_len,
                "tokens": list(range(count)),
                "token_strs": None,
            },
            keep_alive,
        )
        return keep_alive

    async def _send_raw(
        self, conn: _Connection, status: int, data: bytes, content_type: str, *, keep_alive: bool
    ) -> None:
        head = _response_head(
            status,
            {
                "content-type": content_type,
                "content-length": str(len(data)),
                "connection": "keep-alive" if keep_alive else "close",
            },
        )
        conn.writer.write(head + data)
        await conn.writer.drain()

    async def _send_json(self, conn: _Connection, status: int, obj: Any, keep_alive: bool) -> None:
        await self._send_raw(
            conn, status, json.dumps(obj).encode(), "application/json", keep_alive=keep_alive
        )

    async def _send_error(
        self, conn: _Connection, status: int, message: str, keep_alive: bool
    ) -> None:
        # vLLM's error body: an "error" object with the HTTP status as "code".
        body = {
            "error": {
                "message": message,
                "type": _ERROR_TYPES.get(status, "Error"),
                "param": None,
                "code": status,
            }
        }
        await self._send_json(conn, status, body, keep_alive)

    # --- chat completions ----------------------------------------------------------------------
    async def _chat(
        self,
        conn: _Connection,
        record: RecordedRequest,
        body: dict[str, Any],
        headers: dict[str, str],
        keep_alive: bool,
    ) -> bool:
        behavior = (self.behavior_for(body) if self.behavior_for else None) or self.behavior
        if self.model is not None and body.get("model") != self.model:
            record.outcome = "served"
            message = f"The model `{body.get('model')}` does not exist."
            await self._send_error(conn, 404, message, keep_alive)
            return keep_alive
        if behavior.status != 200:
            record.outcome = "served"
            await self._send_error(conn, behavior.status, behavior.error_message, keep_alive)
            return keep_alive

        words = _prompt_words(body.get("messages"), body.get("tools"))
        prompt_tokens = behavior.prompt_tokens if behavior.prompt_tokens is not None else len(words)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if prompt_tokens + int(max_tokens or 0) > behavior.max_model_len or (
            prompt_tokens >= behavior.max_model_len
        ):
            record.outcome = "served"
            message = (
                f"This model's maximum context length is {behavior.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + int(max_tokens or 0)} tokens "
                f"({prompt_tokens} in the messages, {int(max_tokens or 0)} in the completion). "
                "Please reduce the length of the messages or completion."
            )
            await self._send_error(conn, 400, message, keep_alive)
            return keep_alive

        cached = behavior.cached_tokens
        if cached is None:
            cached = self._prefix_cache_hits(
                words, salt=str(body.get("cache_salt") or ""), behavior=behavior
            )
        request_id = str(body.get("request_id") or headers.get("x-request-id") or uuid.uuid4().hex)
        plan = _Plan(
            body=body,
            behavior=behavior,
            completion_id=f"chatcmpl-{request_id}",
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
        )
        if not body.get("stream"):
            record.outcome = "served"
            await self._send_json(conn, 200, plan.completion(), keep_alive)
            return keep_alive
        return await self._stream(conn, record, plan, request_id)

    def _prefix_cache_hits(self, words: list[str], *, salt: str, behavior: FakeBehavior) -> int:
        if not behavior.prefix_cache or behavior.block_size <= 0:
            return 0
        size = behavior.block_size
        digest = hashlib.sha256(salt.encode())
        hits = 0
        counting = True
        with self._lock:
            blocks = self._cache.setdefault(salt, set())
            if len(blocks) > 200_000:  # bounded: forget everything rather than grow forever
                blocks.clear()
            for start in range(0, len(words) - size + 1, size):
                digest.update("\x00".join(words[start : start + size]).encode() + b"\x01")
                key = digest.copy().digest()
                if counting and key in blocks:
                    hits += size
                else:
                    counting = False
                    blocks.add(key)
        # vLLM always recomputes at least the last prompt token.
        return min(hits, max(len(words) - 1, 0))

    async def _stream(
        self, conn: _Connection, record: RecordedRequest, plan: _Plan, request_id: str
    ) -> bool:
        self._bump("streams_started")
        self._bump("streams_active")
        send = asyncio.ensure_future(self._send_stream(conn, record, plan, request_id))
        # The client sends nothing while it reads a response (no pipelining), so EOF on the read
        # side means it hung up: exactly the signal uvicorn turns into an abort in vLLM.
        watch = asyncio.ensure_future(conn.reader.read(1))
        try:
            done, _ = await asyncio.wait({send, watch}, return_when=asyncio.FIRST_COMPLETED)
            if send not in done:
                try:
                    data = watch.result()
                except (ConnectionError, OSError):
                    # A reset instead of EOF (the client closed with unread bytes): a hang-up too.
                    data = b""
                if not data:
                    send.cancel()
                    with contextlib.suppress(BaseException):
                        await send
                    record.outcome = "aborted"
                    self._bump("streams_aborted")
                    return False
                conn.pushback = data
                await asyncio.wait({send})
            else:
                if watch.done() and not watch.cancelled() and watch.exception() is None:
                    if watch.result():
                        conn.pushback = watch.result()
                else:
                    watch.cancel()
                    with contextlib.suppress(BaseException):
                        await watch
            try:
                outcome = send.result()
            except (ConnectionError, OSError):
                record.outcome = "aborted"
                self._bump("streams_aborted")
                return False
            record.outcome = outcome
            self._bump(f"streams_{outcome}")
            return outcome == "completed"
        finally:
            if not watch.done():
                watch.cancel()
            if not send.done():
                send.cancel()
            self._bump("streams_active", -1)

    async def _send_stream(
        self, conn: _Connection, record: RecordedRequest, plan: _Plan, request_id: str
    ) -> str:
        behavior = plan.behavior
        writer = conn.writer
        if behavior.headers_delay:
            await asyncio.sleep(behavior.headers_delay)
        writer.write(
            _response_head(
                200,
                {
                    "content-type": "text/event-stream; charset=utf-8",
                    "transfer-encoding": "chunked",
                    "connection": "keep-alive",
                    "x-request-id": request_id,
                },
            )
        )
        await writer.drain()
        sent = 0
        for index, event in enumerate(plan.events()):
            if index == 0 and behavior.first_chunk_delay:
                await asyncio.sleep(behavior.first_chunk_delay)
            elif index > 0 and behavior.delay:
                await asyncio.sleep(behavior.delay)
            if behavior.die_after_chunks is not None and sent >= behavior.die_after_chunks:
                writer.transport.abort()
                return "killed"
            if (
                behavior.malformed_after_chunks is not None
                and sent >= behavior.malformed_after_chunks
            ):
                writer.write(_chunk(b'data: {"id": "chatcmpl-broken", "choices": [{"ind\n\n'))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return "malformed"
            if (
                behavior.truncate_after_chunks is not None
                and sent >= behavior.truncate_after_chunks
            ):
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return "truncated"
            if (
                behavior.error_event_after_chunks is not None
                and sent >= behavior.error_event_after_chunks
            ):
                error = {
                    "error": {
                        "message": behavior.error_message,
                        "type": "InternalServerError",
                        "param": None,
                        "code": 500,
                    }
                }
                writer.write(_chunk(_sse(error)))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return "error_event"
            writer.write(_chunk(_sse(event)))
            await writer.drain()
            sent += 1  # noqa: SIM113 - counted after the checks above, which read it first
            record.events_sent = sent
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return "completed"


class _Plan:
    """The chunks one chat request produces, computed from its body and the behavior."""

    def __init__(
        self,
        *,
        body: dict[str, Any],
        behavior: FakeBehavior,
        completion_id: str,
        prompt_tokens: int,
        cached_tokens: int,
    ) -> None:
        self.body = body
        self.behavior = behavior
        self.completion_id = completion_id
        self.created = int(time.time())
        self.model = str(body.get("model", ""))
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        self.reasoning_tokens = split_tokens(behavior.reasoning or "")
        text_tokens = split_tokens(behavior.text)
        self.finish_reason = behavior.finish_reason
        self.tool_calls = list(behavior.tool_calls)
        if limit is not None:
            budget = max(int(limit) - len(self.reasoning_tokens), 0)
            if budget < len(text_tokens):
                text_tokens = text_tokens[:budget]
                self.tool_calls = []
                self.finish_reason = self.finish_reason or "length"
        self.text_tokens = text_tokens
        if self.finish_reason is None:
            self.finish_reason = "tool_calls" if self.tool_calls else "stop"
        self.call_ids = [
            call.call_id or f"chatcmpl-tool-{uuid.uuid4().hex[:16]}" for call in self.tool_calls
        ]

    def _chunk(
        self,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }
        if finish_reason is not None:
            choice["stop_reason"] = None
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def _logprobs(self, tokens: list[str], position: int) -> dict[str, Any]:
        top_n = int(self.body.get("top_logprobs") or 0)
        content = []
        for offset, token in enumerate(tokens):
            # Deterministic, plausible numbers: the chosen token is always the most likely.
            logprob = -round(0.05 * ((position + offset) % 7 + 1), 4)
            alternatives = [
                {"token": token, "logprob": logprob, "bytes": list(token.encode())},
            ]
            for rank in range(1, top_n):
                alt = f"alt{rank}"
                alternatives.append(
                    {"token": alt, "logprob": logprob - rank, "bytes": list(alt.encode())}
                )
            content.append(
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": alternatives[:top_n],
                }
            )
        return {"content": content}

    def _usage(self) -> dict[str, Any]:
        behavior = self.behavior
        reasoning = (
            behavior.reasoning_tokens
            if behavior.reasoning_tokens is not None
            else len(self.reasoning_tokens)
        )
        completion = behavior.completion_tokens
        if completion is None:
            tool_tokens = sum(len(c.arguments) // 4 + 2 for c in self.tool_calls)
            completion = reasoning + len(self.text_tokens) + tool_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return usage

    def events(self) -> list[dict[str, Any] | str]:
        behavior = self.behavior
        events: list[dict[str, Any] | str] = [self._chunk({"role": "assistant", "content": ""})]
        for token in self.reasoning_tokens:
            events.append(self._chunk({behavior.reasoning_field: token}))
        want_logprobs = bool(self.body.get("logprobs"))
        step = max(behavior.chunk_tokens, 1)
        for start in range(0, len(self.text_tokens), step):
            tokens = self.text_tokens[start : start + step]
            events.append(
                self._chunk(
                    {"content": "".join(tokens)},
                    logprobs=self._logprobs(tokens, start) if want_logprobs else None,
                )
            )
        piece = max(behavior.tool_argument_chunk_chars, 1)
        for index, (call, call_id) in enumerate(zip(self.tool_calls, self.call_ids, strict=True)):
            events.append(
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "index": index,
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for start in range(0, len(call.arguments), piece):
                events.append(
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "function": {
                                        "arguments": call.arguments[start : start + piece]
                                    },
                                }
                            ]
                        }
                    )
                )
        events.append(self._chunk({"content": ""}, finish_reason=self.finish_reason))
        options = self.body.get("stream_options") or {}
        if options.get("include_usage") and options.get("continuous_usage_stats"):
            # vLLM's running usage on every chunk: completion tokens so far (one per chunk that
            # carries output), the prompt from the start.
            final = self._usage()
            produced = 0
            for event in events:
                if not isinstance(event, dict):
                    continue  # only chunks carry usage
                delta = event["choices"][0]["delta"]
                if any(delta.get(key) for key in ("content", "tool_calls", "reasoning",
                                                  "reasoning_content")):  # fmt: skip
                    produced += 1
                done = min(produced, final["completion_tokens"])
                event["usage"] = {
                    "prompt_tokens": final["prompt_tokens"],
                    "total_tokens": final["prompt_tokens"] + done,
                    "completion_tokens": done,
                }
        if options.get("include_usage"):
            events.append(
                {
                    "id": self.completion_id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": self._usage(),
                }
            )
        if behavior.send_done:
            events.append("[DONE]")
        return events

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text_tokens)}
        if self.reasoning_tokens:
            message[self.behavior.reasoning_field] = "".join(self.reasoning_tokens)
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call, call_id in zip(self.tool_calls, self.call_ids, strict=True)
            ]
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                    "stop_reason": None,
                }
            ],
            "usage": self._usage(),
        }


# --- command line (benchmarks) -------------------------------------------------------------------
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m testsupport.fake_vllm",
        description="A fake vLLM OpenAI-compatible server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--model", default=None, help="served model name (default: accept any)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--text", default=None, help="text to stream")
    parser.add_argument(
        "--output-tokens", type=int, default=64, help="tokens to stream when --text is not set"
    )
    parser.add_argument("--chunk-tokens", type=int, default=1)
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        default=0.0,
        help="per-stream rate; 0 = as fast as possible",
    )
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--no-record", action="store_true", help="do not keep request bodies")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    text = args.text
    if text is None:
        words = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
        text = " ".join(words[i % len(words)] for i in range(max(args.output_tokens, 1)))
    delay = args.chunk_tokens / args.tokens_per_second if args.tokens_per_second > 0 else 0.0
    behavior = FakeBehavior(
        text=text,
        chunk_tokens=args.chunk_tokens,
        delay=delay,
        first_chunk_delay=args.ttft,
        max_model_len=args.max_model_len,
    )
    server = FakeVllm(
        behavior=behavior,
        model=args.model,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        record=not args.no_record,
        max_recorded=1000,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        url = await server.astart()
        print(f"fake vLLM serving {args.model or '<any model>'} at {url}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.astop()
            print(f"fake vLLM stopped: {json.dumps(server.stats(), sort_keys=True)}", flush=True)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
