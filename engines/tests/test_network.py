"""The engine client's asyncio network backend (engines.runtime.network) under httpx."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from engines.runtime.network import engine_transport

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@contextlib.asynccontextmanager
async def server(handle):
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.close()


def client(base_url: str, *, read: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        transport=engine_transport(limits=httpx.Limits(max_connections=4)),
        timeout=httpx.Timeout(read, connect=2.0),
    )


async def wait_for(predicate) -> None:
    async with asyncio.timeout(5):
        while not predicate():  # noqa: ASYNC110 - no event signals what the kernel delivers
            await asyncio.sleep(0.01)


async def test_streams_a_chunked_body_and_reuses_the_connection():
    connections = []

    async def handle(reader, writer):
        connections.append(writer)
        while True:
            with contextlib.suppress(asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for part in (b"data: 1\n\n", b"data: 2\n\n"):
                    writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                continue
            break

    async with server(handle) as url, client(url) as http:
        for _ in range(3):
            async with http.stream("POST", "/chat", json={}) as response:
                lines = [line async for line in response.aiter_lines() if line]
            assert lines == ["data: 1", "data: 2"]
    assert len(connections) == 1  # kept alive and reused


async def test_a_pooled_connection_the_engine_closed_is_not_reused():
    connections = []

    async def handle(reader, writer):
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)  # keep-alive by default, then closed anyway
        await writer.drain()
        writer.close()

    async with server(handle) as url, client(url) as http:
        assert (await http.get("/a")).json() == {}
        pool = http._transport._pool

        def noticed() -> bool:  # dropped already, or its stream knows it was closed
            return not pool.connections or pool.connections[
                0
            ]._connection._network_stream.get_extra_info("is_readable")

        await wait_for(noticed)
        # Without noticing the close, this request would be written to a dead socket.
        assert (await http.get("/b")).json() == {}
    assert len(connections) == 2


async def test_a_silent_engine_is_a_read_timeout():
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await reader.read()  # sends nothing more until the client leaves

    async with server(handle) as url, client(url, read=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            async with http.stream("POST", "/chat", json={}) as response:
                async for _ in response.aiter_bytes():
                    pass


async def test_nobody_listening_is_a_connect_error():
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    async with client(f"http://127.0.0.1:{port}") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")
