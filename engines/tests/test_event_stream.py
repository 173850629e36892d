"""The engine stream's own HTTP/1.1 client (engines.runtime.event_stream) against small asyncio
servers: framing, SSE parsing, connection reuse, timeouts, aborts and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from engines.runtime.event_stream import (
    _HIGH_WATER,
    ConnectFailed,
    ConnectionLost,
    ReadTimeout,
    StreamConnections,
    _sse_data,
    request_json,
)
from testsupport.waiting import await_until

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@contextlib.asynccontextmanager
async def server(handle):
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        srv.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


async def post(connections: StreamConnections, *, read_timeout: float = 5.0):
    return await connections.post_stream(
        "/chat/completions",
        body=request_json({"stream": True}),
        headers=[(b"X-Request-Id", b"req_1")],
        read_timeout=read_timeout,
    )


async def collect(response) -> list[bytes]:
    out: list[bytes] = []
    await response.pump(lambda events: out.extend(events) or True)
    return out


async def test_request_line_headers_and_body():
    seen = []

    async def handle(reader, writer):
        seen.append(await read_request(reader))
        writer.write(HEAD + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections)
        assert response.status_code == 200
        assert response.headers["content-type"] == b"text/event-stream"
        assert await collect(response) == [b"[DONE]"]
        response.close()
        connections.close()
    head, body = seen[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{url.split(':')[2].split('/')[0]}".encode() in head
    assert b"X-Request-Id: req_1\r\n" in head
    assert json.loads(body) == {"stream": True}


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        # vLLM's shape, one event per chunk
        ([b'data: {"a":1}\n\n', b'data: {"b":2}\n\n'], [b'{"a":1}', b'{"b":2}']),
        # events split anywhere, several per chunk
        ([b"data: x", b"1\n\ndata: x2\n", b"\ndata: x3\n\n"], [b"x1", b"x2", b"x3"]),
        # CRLF and CR line ends, a CRLF split between two chunks
        ([b"data: a\r\n\r", b"\ndata: b\r\rdata: c\r\n", b"\r\n"], [b"a", b"b", b"c"]),
        # comments, other fields, a field without its space, multi-line data, extra blank lines
        (
            [b": ping\n\nevent: x\nid: 3\ndata:one\ndata: two\n\n\n\ndata: three\n\n"],
            [b"one\ntwo", b"three"],
        ),
        # an unterminated last event is dropped
        ([b"data: done\n\ndata: half"], [b"done"]),
    ],
)
async def test_sse_framing(pieces: list[bytes], expected: list[bytes]):
    async def handle(reader, writer):
        await read_request(reader)
        writer.write(HEAD)
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections)
        assert await collect(response) == expected
        response.close()
        connections.close()


def test_sse_data_of_a_block():
    assert _sse_data(b"data: 1\n\ndata: 2") == [b"1", b"2"]
    assert _sse_data(b"retry: 10") == []


async def test_connections_are_reused_and_one_closed_while_idle_is_replaced():
    connections_seen = []

    async def handle(reader, writer):
        connections_seen.append(writer)
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            if len(connections_seen) == 1 and handled[0] == 2:
                writer.close()  # the engine drops the idle connection as the request arrives
                return
            handled[0] += 1
            writer.write(HEAD + chunk(b"data: ok\n\n") + b"0\r\n\r\n")
            await writer.drain()

    handled = [0]
    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        for _ in range(3):
            response = await post(connections)
            assert await collect(response) == [b"ok"]
            response.close()
        connections.close()
    # Two requests on the first connection; the third was written to it, the engine closed it
    # without answering, and the request went out again on a new one (no error for the caller).
    assert len(connections_seen) == 2
    assert handled[0] == 3


async def test_stopping_early_closes_the_connection():
    closed = asyncio.Event()

    async def handle(reader, writer):
        await read_request(reader)
        writer.write(HEAD)
        with contextlib.suppress(ConnectionError):
            for n in range(10_000):
                writer.write(chunk(b"data: %d\n\n" % n))
                await writer.drain()
                await asyncio.sleep(0.01)
                if reader.at_eof():
                    break
        closed.set()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections)
        first = asyncio.Event()
        pumping = asyncio.create_task(response.pump(lambda events: first.set() or True))
        await asyncio.wait_for(first.wait(), 5)
        pumping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pumping
        response.close()
        await asyncio.wait_for(closed.wait(), 5)
        assert connections._idle == []
        connections.close()


async def test_a_stalled_body_is_a_read_timeout():
    async def handle(reader, writer):
        await read_request(reader)
        writer.write(HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await reader.read()  # nothing more until the client leaves

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections, read_timeout=0.2)
        received: list[bytes] = []
        with pytest.raises(ReadTimeout):
            await response.pump(lambda events: received.extend(events) or True)
        assert received == [b"1"]
        response.close()
        connections.close()


async def test_a_silent_engine_is_a_read_timeout_before_the_head():
    async def handle(reader, writer):
        await read_request(reader)
        await reader.read()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        with pytest.raises(ReadTimeout):
            await post(connections, read_timeout=0.2)
        connections.close()


@pytest.mark.parametrize(
    "answer",
    [
        HEAD + chunk(b"data: 1\n\n"),  # chunked, cut before the last chunk
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ndata: 1\n\n",  # shorter than announced
        HEAD + b"zz\r\n",  # not HTTP
    ],
)
async def test_a_cut_body_is_connection_lost(answer: bytes):
    async def handle(reader, writer):
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections)
        with pytest.raises(ConnectionLost):
            await collect(response)
        response.close()
        connections.close()


async def test_a_body_ended_by_closing_the_connection_is_complete():
    async def handle(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: 1\n\ndata: 2\n\n")
        await writer.drain()
        writer.close()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections)
        assert await collect(response) == [b"1", b"2"]
        response.close()
        assert connections._idle == []  # not reusable
        connections.close()


async def test_an_error_answer_is_read_whole():
    async def handle(reader, writer):
        await read_request(reader)
        body = b'{"error": {"message": "bad"}}'
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections)
        assert response.status_code == 400
        assert json.loads(await response.read()) == {"error": {"message": "bad"}}
        response.close()
        assert len(connections._idle) == 1  # read to its end: kept for the next request
        connections.close()


async def test_nobody_listening_is_connect_failed():
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    connections = StreamConnections(f"http://127.0.0.1:{port}/v1", connect_timeout=2.0)
    with pytest.raises(ConnectFailed):
        await post(connections)


async def test_a_full_consumer_pauses_the_engine_socket_and_loses_nothing():
    events = 4 * _HIGH_WATER // 1000
    payload = b"x" * 990

    async def handle(reader, writer):
        await read_request(reader)
        writer.write(HEAD)
        for n in range(events):
            writer.write(chunk(b"data: %06d%s\n\n" % (n, payload)))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0)
        response = await post(connections, read_timeout=0.5)
        connection = response._connection
        received: list[bytes] = []
        held = asyncio.Event()

        def take(batch: list[bytes]) -> bool:
            received.extend(batch)
            if len(received) >= 10 and not held.is_set():
                held.set()
                return False  # full: stop reading until resumed
            return True

        pumping = asyncio.create_task(response.pump(take))
        await asyncio.wait_for(held.wait(), 5)
        # Held longer than the read timeout: not a timeout (the engine is not late, we are).
        await await_until(lambda: connection.paused or connection.held, within=5)
        # The read timeout's watchdog fires while we hold the socket, and finds it held.
        fired_while_held = []
        watch = connection._watch

        def watching(timeout: float) -> None:
            if connection.held:
                fired_while_held.append(timeout)
            watch(timeout)

        connection._watch = watching
        await await_until(lambda: fired_while_held, within=5, what="the watchdog while held")
        assert not pumping.done()
        assert len(connection.body) <= 2 * _HIGH_WATER  # bounded while nobody reads
        response.resume()
        await asyncio.wait_for(pumping, 10)
        assert [int(data[:6]) for data in received] == list(range(events))
        response.close()
        connections.close()


async def test_at_most_max_connections_are_in_use():
    async def handle(reader, writer):
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(HEAD + chunk(b"data: ok\n\n") + b"0\r\n\r\n")
            await writer.drain()

    async with server(handle) as url:
        connections = StreamConnections(url, connect_timeout=2.0, max_connections=1)
        first = await post(connections)
        second = asyncio.create_task(post(connections))
        # It waits for the connection the first request holds.
        await await_until(lambda: connections._slots._waiters, within=5, what="waiting")
        assert not second.done()
        assert await collect(first) == [b"ok"]
        first.close()
        response = await asyncio.wait_for(second, 5)
        assert await collect(response) == [b"ok"]
        response.close()
        connections.close()
