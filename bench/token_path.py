"""Micro-benchmark of the per-token path, in one process, without sockets or other processes.

    .venv/bin/python -m bench.token_path                  # µs per token and a cProfile top-20
    .venv/bin/python -m bench.token_path --tokens 1024 --repeat 20 --no-profile

What one streamed token costs the platform between the engine's bytes and the client's socket,
measured with ``time.process_time`` so that the other work on a loaded machine does not count.
Everything on the way is the real code: the vLLM client (its HTTP client, SSE reader and chunk
mapper), the queue and token loop of :func:`responses.services.generation.generate_events`,
the stream builder, the ``openai`` dialect's encoder, :func:`responses.sse.sse_response` and
Django's ``ASGIHandler.send_response``. Only the two ends are simulated:

* the engine's socket: a transport that answers the request with the bytes a vLLM replica sends
  (one HTTP chunk per SSE event, usage on every chunk as with ``continuous_usage_stats``), and
  hands over the next token only after the previous one has been sent to the client, as a paced
  engine does (each token is its own wake-up, nothing is batched);
* the client's socket: an ASGI ``send`` that counts bytes and messages.

The response is stored (``record_pk`` set), so every event is also kept for the stored event log;
what storing does per event before ``COPY`` (one ``json.dumps``) is counted too. The database
writes themselves, the cancel watcher and quota settlement are per response and left out.

Per token = (CPU of an N-token response − CPU of a 64-token response) / (N − 64): the per-response
set-up (request body, connection, first and last events) cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import hashlib
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

BASE_TOKENS = 64


def _django_setup() -> None:
    # The embedded settings shape: nothing here touches a database or Redis.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("PLATFORM_DATA_DIR", tempfile.mkdtemp(prefix="token-path-"))
    import django

    django.setup()


# --- the engine's side: vLLM's bytes -------------------------------------------------------------

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"date: Sun, 30 Nov 2026 00:00:00 GMT\r\n"
    b"server: uvicorn\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n"
    b"\r\n"
)

_HEALTHY = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "the",
    "engine",
    "streams",
    "one",
    "token",
    "at",
    "a",
    "time,",
    "each",
    "with",
    "its",
    "own",
    "chunk,",
    "usage",
    "and",
    "finish",
    "fields;",
    "café",
    "naïve",
    "—",
    "fin.",
]


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(payload: dict[str, Any] | str) -> bytes:
    # What vLLM (and the fake replica) sends: compact JSON after "data: ", one event per chunk.
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return _http_chunk(f"data: {text}\n\n".encode())


@functools.cache
def engine_chunks(tokens: int, *, prompt_tokens: int = 12) -> list[bytes]:
    """The engine's answer in the groups it arrives in: the head with the role chunk and the
    first token, then one token per group, and the finish, usage and ``[DONE]`` with the last
    token (they leave vLLM at the same moment)."""
    base = {
        "id": "chatcmpl-9f1c2d3e4b5a69788796a5b4c3d2e1f0",
        "object": "chat.completion.chunk",
        "created": 1796083200,
        "model": "bench-model",
    }

    def chunk(delta: dict[str, Any], produced: int, finish: str | None = None) -> bytes:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish,
        }
        if finish is not None:
            choice["stop_reason"] = None
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + produced,
            "completion_tokens": produced,
        }
        return _sse(base | {"choices": [choice], "usage": usage})

    groups = [_HEAD + chunk({"role": "assistant", "content": ""}, 0)]
    for index in range(tokens):
        word = _WORDS[index % len(_WORDS)]
        groups.append(chunk({"content": " " + word if index else word}, index + 1))
    final_usage = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + tokens,
        "completion_tokens": tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    groups[-1] += (
        chunk({"content": ""}, tokens, finish="stop")
        + _sse(base | {"choices": [], "usage": final_usage})
        + _sse("[DONE]")
        + b"0\r\n\r\n"
    )
    # The head arrives with the first token.
    return [groups[0] + groups[1], *groups[2:]]


class _EngineTransport(asyncio.Transport):
    """The engine's end of the connection: takes the request, then plays ``groups`` back, one
    group per call of :meth:`release`."""

    def __init__(self, protocol: asyncio.Protocol, backend: _Backend) -> None:
        super().__init__()
        self._protocol = protocol
        self.backend = backend
        self._groups: list[bytes] = []
        self._request = bytearray()
        self._closing = False
        self.loop = asyncio.get_running_loop()

    # The request: once it is complete, the first group (head, role chunk, first token) comes.
    def write(self, data: bytes) -> None:
        self._request += data
        head, sep, body = bytes(self._request).partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) >= length:
            self._request.clear()
            if head.startswith(b"GET /health"):
                self.loop.call_soon(self._protocol.data_received, _HEALTHY)
            else:
                request_id = next(
                    line.partition(b":")[2].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"x-request-id:")
                )
                self.backend.by_request[request_id] = self
                self._groups = list(reversed(self.backend.groups))
                self.release()

    def release(self) -> None:
        """The next group arrives on the socket (in a later turn of the loop, like a read)."""
        if self._groups and not self._closing:
            self.loop.call_soon(self._protocol.data_received, self._groups.pop())

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self.loop.call_soon(self._protocol.connection_lost, None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Backend:
    """Where the engine client's connections come from: :class:`_EngineTransport`\\ s, for
    httpx (an httpcore network backend: health probes) and for the streaming client."""

    def __init__(self) -> None:
        self.groups: list[bytes] = []
        self.by_request: dict[str, _EngineTransport] = {}  # the connection of each request

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ASYNC109
        from engines.runtime.network import AsyncioStream, _Protocol

        protocol = _Protocol()
        transport = _EngineTransport(protocol, self)
        protocol.connection_made(transport)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def connect_stream(self, protocol_factory: Callable[[], asyncio.Protocol]):
        async def connect():
            protocol = protocol_factory()
            protocol.connection_made(_EngineTransport(protocol, self))
            return protocol

        return connect


# --- the client's side ----------------------------------------------------------------------------


class _Client:
    """An ASGI ``send`` that counts; a body holding a text delta lets the engine send its next
    token (the paced engine: token N+1 leaves after token N reached the client)."""

    def __init__(self, backend: _Backend, request_id: str, *, keep: bool) -> None:
        self.backend = backend
        self.request_id = request_id
        self.messages = 0
        self.bytes = 0
        self.keep = keep
        self.body = bytearray()

    async def send(self, message: dict[str, Any]) -> None:
        self.messages += 1
        body = message.get("body", b"")
        if body:
            self.bytes += len(body)
            if self.keep:
                self.body += body
            if b"response.output_text.delta" in body:
                self.backend.by_request[self.request_id].release()


# --- one response ---------------------------------------------------------------------------------


class Path:
    """The platform's per-token path, set up once (engine client, handler) like a web process."""

    def __init__(self) -> None:
        from django.core.handlers.asgi import ASGIHandler

        from engines.runtime.pool import ReplicaPool
        from engines.runtime.vllm import VllmEngine
        from responses.services import generation as generation_module

        self.backend = _Backend()
        self.pool = ReplicaPool(["http://engine.bench:8000/v1"], name="bench", health_interval=3600)
        replica = self.pool.replicas[0]
        client = self.pool.http_client(replica)
        # The sockets are the only swapped part.
        client._transport._pool._network_backend = self.backend
        if hasattr(self.pool, "stream_connections"):  # the engine stream's own client
            from engines.runtime.event_stream import _Connection

            streams = self.pool.stream_connections(replica)
            streams._connect = self.backend.connect_stream(_Connection)
        self.engine = VllmEngine(
            upstream_model="bench-model", pool=self.pool, cache_salt=lambda org: "salt"
        )
        self.handler = ASGIHandler.__new__(ASGIHandler)  # send_response needs no middleware
        self.stored_events = 0
        # The database writes are per response; what storing costs per event before COPY is its
        # JSON serialization, which is kept (see lifecycle.events_store).
        generation_module._store_outcome = self._store_outcome
        generation_module.cancellation.watch = _no_watch

    async def _store_outcome(self, generation, *, disconnected: bool = False) -> None:
        generation.builder.snapshot()
        for event in generation.events:
            json.dumps(event)
        self.stored_events += len(generation.events)

    async def run(self, tokens: int, *, keep: bool = False, streams: int = 1) -> _Client:
        """``streams`` responses at once, each paced by its own client (their tokens
        interleave, as at a web process with that many open streams)."""
        clients = await asyncio.gather(
            *(self._one(tokens, keep=keep, request_id=f"req_bench_{n}") for n in range(streams))
        )
        return clients[0]

    async def _one(self, tokens: int, *, keep: bool, request_id: str) -> _Client:
        from engines.runtime.types import GenerationRequest
        from responses.services.generation import (
            KEEPALIVE,
            Generation,
            generate_events,
            generation_abandon,
            generation_prestart,
        )
        from responses.sse import sse_response
        from responses.streaming.builder import StreamBuilder
        from responses.streaming.objects import ResponseEcho

        self.backend.groups = engine_chunks(tokens)
        client = _Client(self.backend, request_id, keep=keep)
        builder = StreamBuilder(
            echo=ResponseEcho(model="bench-model"),
            response_id="resp_" + "0" * 48,
            created_at=1796083200,
            new_id=_ids(),
            clock=lambda: 1796083260.0,
        )
        generation = Generation(
            engine=self.engine,
            engine_request=GenerationRequest(
                request_id=request_id,
                model="bench-model",
                messages=[{"role": "user", "content": "Say something."}],
                organization_id="org_bench",
            ),
            builder=builder,
            record_pk=1,
            keepalive_seconds=15.0,
        )
        generation_prestart(generation)
        response = sse_response(
            generate_events(generation),
            request_id=request_id,
            keepalive_marker=KEEPALIVE,
            dialect="openai",
            on_close=lambda: generation_abandon(generation),
        )
        await self.handler.send_response(response, client.send)
        response.close()
        self.backend.by_request.pop(request_id, None)
        return client

    async def aclose(self) -> None:
        await self.pool.aclose()


def _ids() -> Callable[[str], str]:
    counter = iter(range(1_000_000))
    return lambda prefix: f"{prefix}_{next(counter):048x}"


@contextlib.contextmanager
def _no_watch(**kwargs):
    yield


# --- measuring ------------------------------------------------------------------------------------


async def _measure(path: Path, tokens: int, repeat: int, streams: int = 1) -> list[float]:
    """CPU seconds per response (of ``streams`` run at once)."""
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        await path.run(tokens, streams=streams)
        samples.append((time.process_time() - started) / streams)
    return samples


async def _wire_digest(path: Path, tokens: int) -> tuple[str, int, int]:
    client = await path.run(tokens, keep=True)
    return hashlib.sha256(bytes(client.body)).hexdigest()[:16], client.messages, len(client.body)


async def main_async(args) -> None:
    path = Path()
    try:
        digest, messages, size = await _wire_digest(path, args.tokens)
        # Warm-up: imports, caches, the pooled connections.
        await _measure(path, args.tokens, 2, args.streams)
        base = await _measure(path, BASE_TOKENS, args.repeat, args.streams)
        long = await _measure(path, args.tokens, args.repeat, args.streams)
        per_token = (statistics.median(long) - statistics.median(base)) / (
            args.tokens - BASE_TOKENS
        )
        best = (min(long) - min(base)) / (args.tokens - BASE_TOKENS)
        print(
            f"per-token path, openai dialect, stored response, {args.streams} stream(s) at "
            f"once, Python {sys.version.split()[0]}\n"
            f"  {BASE_TOKENS}-token response: {statistics.median(base) * 1e3:.2f} ms CPU (median "
            f"of {args.repeat})\n"
            f"  {args.tokens}-token response: {statistics.median(long) * 1e3:.2f} ms CPU\n"
            f"  per additional token: {per_token * 1e6:.1f} µs (median), "
            f"{best * 1e6:.1f} µs (best runs)\n"
            f"  wire: {size} bytes in {messages} ASGI messages for {args.tokens} tokens, "
            f"sha256 {digest}"
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.profile_runs):
                await path.run(args.tokens, streams=args.streams)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats(args.sort).print_stats(args.top)
            total_tokens = args.tokens * args.profile_runs * args.streams
            print(
                f"\ncProfile over {args.profile_runs} × {args.streams} × {args.tokens} tokens "
                f"({total_tokens} tokens), sorted by {args.sort}, top {args.top}:"
            )
            print(_trim(out.getvalue()))
    finally:
        await path.aclose()


def _trim(report: str) -> str:
    lines = report.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[max(index - 4, 0) :]).rstrip()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--streams", type=int, default=1, help="responses at once (their tokens interleave)"
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--profile-runs", type=int, default=5)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    if args.tokens <= BASE_TOKENS:
        parser.error(f"--tokens must be more than {BASE_TOKENS}")
    _django_setup()
    import uvloop

    # The web process runs on uvloop (manage.py serve); so does this.
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
