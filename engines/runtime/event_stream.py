"""The engine's token stream: a purpose-built HTTP/1.1 client for ``POST /v1/chat/completions``
with ``stream=True``, and the SSE framing of its body.

Every streamed token crosses this code once, so it is built for that one request instead of
going through httpx: there, each chunk passed through h11's Python parser and four nested
async iterators (bytes, text, lines) before the SSE reader saw it, about 45 µs of the ~80 µs
the platform spent per token in process (``python -m bench.token_path``, docs/performance.md).
Here the socket's bytes go to an :class:`asyncio.Protocol` that feeds them to httptools'
parser (llhttp, in C; chunked decoding included), the decoded body accumulates in one buffer,
and every complete SSE event is handed on from that same callback
(:meth:`EngineResponse.pump`): no task wakes up between the socket and the consumer's queue.

The rest of the engine client (health probes, ``/tokenize``) stays on httpx: those are per
request or per replica, not per token.

What the vLLM client relies on (:mod:`engines.runtime.vllm`):

* connections to one replica are kept alive and reused (:class:`StreamConnections`), at most
  ``max_connections`` in use at once (more requests wait for one);
* :class:`ConnectTimeout`, :class:`ConnectFailed`, :class:`ReadTimeout` and
  :class:`ConnectionLost` are the only errors, each with the moment it happened (a reused
  connection that the engine closed while it was idle is retried once on a new one, which is
  not a failure of the replica);
* closing an :class:`EngineResponse` before its body ended closes the connection, which is how
  vLLM learns to abort the sequence;
* a consumer that is full stops the reading (the socket is paused, and the read timeout does
  not run) until :meth:`EngineResponse.resume`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools
import httpx

_HIGH_WATER = 256 * 1024  # body bytes buffered before the engine's socket is paused
_LOW_WATER = _HIGH_WATER // 4


class StreamError(Exception):
    """The request could not be sent or its answer could not be read."""


class ConnectTimeout(StreamError):
    pass


class ConnectFailed(StreamError):
    pass


class ReadTimeout(StreamError):
    pass


class ConnectionLost(StreamError):
    """The connection closed (or the engine sent something that is not HTTP) before the answer
    ended."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to a replica; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: str | None = None
        self.waiter: asyncio.Future | None = None
        self.waiting_since = 0.0
        self.watchdog: asyncio.TimerHandle | None = None
        self.paused = False
        self.idle_since = 0.0
        self.sink: Callable[[], None] | None = None
        """Push mode (:meth:`EngineResponse.pump`): called instead of waking a reader."""
        self.held = False
        """Push mode: the consumer is full; the socket is paused until it has room."""
        self.reset()

    def reset(self) -> None:
        """Ready for the next request's answer."""
        self.parser = httptools.HttpResponseParser(self)
        self.received = False  # any byte of this answer yet
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.framed = False  # chunked or with a length: an early close is then a cut
        self.keep_alive = False
        self.complete = False
        self.body = bytearray()
        self.carry_cr = False
        self.held = False

    # --- asyncio.Protocol ---

    def live_transport(self) -> asyncio.Transport:
        """The transport of a connection that is made (every caller runs after that)."""
        assert self.transport is not None
        return self.transport

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = f"the engine's answer is not valid HTTP: {exc}"
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if (
            len(self.body) > _HIGH_WATER
            and not self.paused
            and not self.closed
            and self.transport is not None
        ):
            self.paused = True
            self.transport.pause_reading()
        sink = self.sink
        if sink is not None:
            self.waiting_since = self.loop.time()
            sink()
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self.error is None:
            self.error = str(exc) or type(exc).__name__
        if self.sink is not None:
            self.sink()
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.framed = any(
            name in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if self.carry_cr or b"\r" in body:
            body = self._normalize(body)
        self.body += body

    def on_message_complete(self) -> None:
        if self.carry_cr:
            self.carry_cr = False
            self.body += b"\n"
        self.complete = True

    def _normalize(self, body: bytes) -> bytes:
        # SSE lines may end in CRLF or CR too; the reader splits on LF only. A CR at the end of
        # a piece may be the first half of a CRLF, so it waits for the next piece.
        if self.carry_cr:
            body = b"\r" + body
            self.carry_cr = False
        if body.endswith(b"\r"):
            body = body[:-1]
            self.carry_cr = True
        return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    # --- waiting ---

    async def wait(self, timeout: float | None) -> None:  # noqa: ASYNC109 - see below
        """Until more bytes arrive, the connection closes or ``timeout`` passes.

        Not a timer per wait (one per token): one watchdog per connection, re-armed only when
        it fires while this connection is still waiting."""
        loop = asyncio.get_running_loop()
        self.waiting_since = loop.time()
        self.waiter = waiter = loop.create_future()
        self.arm(timeout)
        try:
            await waiter
        finally:
            self.waiter = None

    def arm(self, timeout: float | None) -> None:
        if timeout is not None and self.watchdog is None:
            self.watchdog = self.loop.call_later(timeout, self._watch, timeout)

    def _watch(self, timeout: float) -> None:
        self.watchdog = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # not waiting now: the next wait arms it again
        loop = asyncio.get_running_loop()
        if self.held:  # paused by us for a slow consumer: the engine is not late
            self.waiting_since = loop.time()
        left = self.waiting_since + timeout - loop.time()
        if left <= 0:
            waiter.set_exception(TimeoutError())
        else:
            self.watchdog = loop.call_later(left, self._watch, timeout)

    def stop_watching(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def abort(self) -> None:
        self.closed = True
        self.stop_watching()
        if self.transport is not None:
            self.transport.close()


class EngineResponse:
    """The engine's answer: status and headers now, the body as it arrives."""

    def __init__(
        self, owner: StreamConnections, connection: _Connection, read_timeout: float | None
    ) -> None:
        self._owner = owner
        self._connection = connection
        self._read_timeout = read_timeout
        self._released = False
        self._on_events: Callable[[list[bytes]], bool] = lambda events: True
        self.status_code = connection.status
        self.headers = {name.decode("latin-1"): value for name, value in connection.headers}

    async def read(self) -> bytes:
        """The whole body (for an error answer)."""
        connection = self._connection
        while not connection.complete and not connection.closed:
            await self._wait()
        if not connection.complete and connection.framed:
            raise ConnectionLost(connection.error or "the engine closed the connection")
        body = bytes(connection.body)
        connection.body.clear()
        return body

    async def pump(self, on_events: Callable[[list[bytes]], bool]) -> None:
        """Hand the ``data`` of every complete SSE event to ``on_events`` as it arrives, from
        the connection's own callback: no task wakes up per event. ``on_events`` returns False
        when its consumer is full: reading stops (the socket is paused) until :meth:`resume`.
        Returns when the body ended; raises :class:`ReadTimeout`, :class:`ConnectionLost`, or
        what ``on_events`` raised."""
        connection = self._connection
        loop = asyncio.get_running_loop()
        connection.waiter = done = loop.create_future()
        self._on_events = on_events

        def sink() -> None:
            if done.done():
                return
            try:
                ended = self._drain()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                done.set_exception(exc)
                return
            if ended:
                done.set_result(None)

        connection.sink = sink
        connection.waiting_since = loop.time()
        connection.arm(self._read_timeout)
        try:
            sink()  # what arrived with the head
            await done
        except TimeoutError:
            raise ReadTimeout("timed out reading from the engine") from None
        finally:
            connection.sink = None
            connection.waiter = None

    def resume(self) -> None:
        """The consumer has room again: go on reading."""
        connection = self._connection
        if not connection.held:
            return
        connection.held = False
        if not connection.closed and not connection.paused:
            connection.live_transport().resume_reading()
        if connection.sink is not None:
            connection.waiting_since = asyncio.get_running_loop().time()
            connection.sink()

    def _drain(self) -> bool:
        """Pass on what is complete; True when the body ended."""
        connection = self._connection
        buffer = connection.body
        while not connection.held:
            end = buffer.rfind(b"\n\n")
            if end >= 0:
                block = bytes(buffer[:end])
                del buffer[: end + 2]
                if connection.paused and len(buffer) <= _LOW_WATER and not connection.closed:
                    connection.paused = False
                    connection.live_transport().resume_reading()
                events = _sse_data(block)
                if events and self._on_events(events) is False:
                    connection.held = True
                    if not connection.closed and not connection.paused:
                        connection.live_transport().pause_reading()
                continue
            if connection.complete:
                return True  # an unterminated last event is dropped, as the SSE rules say
            if connection.closed:
                if connection.framed or connection.error is not None:
                    raise ConnectionLost(connection.error or "the engine closed the connection")
                return True  # a body delimited by the end of the connection
            return False
        return False

    async def _wait(self) -> None:
        try:
            await self._connection.wait(self._read_timeout)
        except TimeoutError:
            raise ReadTimeout("timed out reading from the engine") from None

    def close(self) -> None:
        """Give the connection back for reuse if its answer was read to the end; else close it
        (the engine stops generating). Idempotent."""
        if self._released:
            return
        self._released = True
        self._owner._release(self._connection)  # noqa: SLF001 (the pool that lent it)


def _sse_data(block: bytes) -> list[bytes]:
    """The data of the complete SSE events in ``block`` (LF line ends, without the final blank
    line)."""
    out = []
    for event in block.split(b"\n\n"):
        if event[:6] == b"data: " and b"\n" not in event:
            out.append(event[6:])  # vLLM's shape: one "data: " line per event
            continue
        data: list[bytes] = []
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and data:  # more than one blank line between events
                out.append(b"\n".join(data))
                data = []
            # comments (":…"), event:, id: and retry: carry nothing for us
        if data:
            out.append(b"\n".join(data))
    return out


class StreamConnections:
    """Keep-alive HTTP/1.1 connections to one replica, for its streaming requests."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float | None,
        max_connections: int = 1024,
        max_idle: int = 128,
        idle_expiry: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported engine URL scheme: {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = (443 if self.tls else 80) == self.port
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self.path = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def post_stream(
        self,
        path: str,
        *,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        read_timeout: float | None,
    ) -> EngineResponse:
        """Send ``POST {base path}{path}`` and wait for the answer's status and headers. The
        caller must :meth:`EngineResponse.close` what it gets."""
        head = [
            b"POST %s HTTP/1.1\r\nHost: %s\r\n" % ((self.path + path).encode(), self.host_header),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
        ]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
        request = b"".join(head) + b"\r\n" + body
        await self._slots.acquire()
        try:
            while True:
                connection, reused = self._idle_connection(), True
                if connection is None:
                    connection, reused = await self._connect(), False
                connection.reset()
                connection.live_transport().write(request)
                try:
                    while not connection.head_done:
                        if connection.closed:
                            raise ConnectionLost(
                                connection.error or "the engine closed the connection"
                            )
                        await connection.wait(read_timeout)
                except ConnectionLost:
                    if reused and not connection.received:
                        continue  # closed by the engine while idle: not the replica's failure
                    raise
                except TimeoutError:
                    connection.abort()
                    raise ReadTimeout("timed out waiting for the engine's answer") from None
                except BaseException:
                    connection.abort()  # cancelled: the engine must not go on generating
                    raise
                return EngineResponse(self, connection, read_timeout)
        except BaseException:
            self._slots.release()
            raise

    def _idle_connection(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if (
                connection.closed
                or connection.received
                or now - connection.idle_since > (self.idle_expiry)
            ):
                connection.abort()  # received while idle: the engine closed or broke it
                continue
            return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        kwargs = {}
        if self.tls:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()  # httpx's defaults (certifi), as before
            kwargs = {"ssl": self._ssl, "server_hostname": self.host}
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    **kwargs,  # type: ignore[call-overload]  # ssl options only when TLS
                )
        except TimeoutError:
            raise ConnectTimeout("timed out connecting to the engine") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        return connection

    def _release(self, connection: _Connection) -> None:
        self._slots.release()
        if (
            connection.complete
            and connection.keep_alive
            and not connection.closed
            and not connection.paused
            and not connection.held
            and not self._closed
            and len(self._idle) < self.max_idle
        ):
            connection.stop_watching()
            connection.reset()
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            connection.abort()

    def close(self) -> None:
        """Close the idle connections; connections in use close when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()


def request_json(body: object) -> bytes:
    """The request body as httpx's ``json=`` encoded it."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
