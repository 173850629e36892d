"""Clients that go away, engines that break, and quiet streams (E5, E1, L4).

Against the real stack (daphne in another process → the platform's vLLM engine → a fake vLLM
replica run by this module), a raw HTTP client proves that:

* closing the connection mid-stream (or during the engine's prefill) aborts the upstream request
  within a second, and the partial output is stored as ``incomplete`` (reliability §8 test 17);
* a client that hangs up before the response headers leaves no response ``in_progress``;
* a thousand such disconnects leave nothing behind: no upstream stream, no file descriptor, no
  database connection or thread, no response stuck ``in_progress`` (test 18);
* an engine that dies, sends garbage, stops short or reports an error mid-stream gives the client
  an ``error`` event and then ``response.failed``, and the stored response is ``failed`` (E1,
  test 24);
* responses are still created and stored after PostgreSQL drops every connection (a restart);
* a web process killed mid-stream leaves its response `failed` (lease + sweeper), not `in_progress`.

Keep-alives (L4, test 19) are tested in-process, where ``SSE_KEEPALIVE_SECONDS`` can be lowered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.db import connection, transaction
from django.db.models import Count
from django.test import AsyncClient

from engines.models import EngineReplica, ServedModel
from engines.runtime.registry import engine_override
from quotas.models import UsageRecord
from responses.models import StoredResponse
from responses.streaming.encoder import KEEPALIVE
from testsupport.conformance import check_response, check_stream
from testsupport.fake_vllm import FakeBehavior, FakeVllm
from testsupport.fixtures import fake_vllm_fixture
from testsupport.live_server import DaphneProcess
from testsupport.scripted_engine import ScriptedEngine, build_script
from testsupport.sse import parse_sse, sse_frames, text_of

pytestmark = pytest.mark.django_db(transaction=True)

LONG_TEXT = " ".join(f"w{i}" for i in range(2000))  # 2000 chunks at 20 ms: 40 s if never stopped

_BEHAVIORS: dict[str, FakeBehavior] = {
    "up-slow": FakeBehavior(text=LONG_TEXT, delay=0.02),
    "up-prefill": FakeBehavior(text="never sent", first_chunk_delay=60),
    "up-die": FakeBehavior(text=LONG_TEXT, die_after_chunks=6),
    "up-malformed": FakeBehavior(text=LONG_TEXT, malformed_after_chunks=6),
    "up-truncated": FakeBehavior(text=LONG_TEXT, truncate_after_chunks=6),
    "up-error-event": FakeBehavior(
        text=LONG_TEXT, error_event_after_chunks=6, error_message="CUDA out of memory"
    ),
    "up-short": FakeBehavior(text="A short answer."),
}


upstream = fake_vllm_fixture(by_model=_BEHAVIORS, max_recorded=5000)


@pytest.fixture
def model_for(transactional_cast, upstream):
    """``model_for["slow"]`` → the public name of a model served by the fake's ``up-slow``.

    One model per behaviour: each gets its own engine and replica pool in daphne, so a replica
    that one test gets ejected (an engine crash) does not affect another test's model. The port
    in the name keeps daphne's engine cache (per model name) from pointing at an older fake.
    """
    names = {}
    for upstream_name in _BEHAVIORS:
        kind = upstream_name.removeprefix("up-")
        model = ServedModel.objects.create(
            name=f"e5-{kind}-{upstream.port}", upstream_model=upstream_name
        )
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    return names


# --- helpers --------------------------------------------------------------------------------------


def create_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": "Tell me a long story.", "stream": True, **extra}


def fake_record(upstream: FakeVllm, request_id: str):
    for record in reversed(upstream.chat_requests()):
        if record.headers.get("x-request-id") == request_id:
            return record
    raise AssertionError(f"the fake never saw request {request_id}")


def upstream_closed(upstream: FakeVllm, record) -> bool:
    """The platform closed its request to the engine: what makes vLLM abort the sequence (the
    fake records EOF and a connection reset alike as ``aborted``)."""
    return upstream.active_streams == 0 and record.outcome == "aborted"


async def stored_when_settled(
    client: httpx.AsyncClient, response_id: str, headers: dict[str, str], *, within: float = 3.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        body = (await client.get(f"/v1/responses/{response_id}", headers=headers)).json()
        if body["status"] != "in_progress" or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def ledger_row_when_settled(response_id: str, *, within: float = 3.0) -> UsageRecord:
    deadline = time.monotonic() + within
    while True:
        row = await UsageRecord.objects.aget(response_id=response_id)
        if row.status != UsageRecord.Status.RESERVED or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.05)


# --- E5: one disconnect -------------------------------------------------------------------------


@pytest.mark.compliance("E5")
async def test_a_client_that_leaves_aborts_the_engine_and_keeps_the_partial_output(
    live_daphne, transactional_cast, upstream, model_for
):
    model = model_for["slow"]
    headers = transactional_cast.alice.headers
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=live_daphne, timeout=10) as client:
        async with client.stream(
            "POST", "/v1/responses", json=create_body(model), headers=headers
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            async for event in sse_frames(response):
                if event is not None:
                    events.append(event)
                if len([e for e in events if e["type"] == "response.output_text.delta"]) == 3:
                    break
        left_at = time.monotonic()  # leaving the block closed the connection mid-body

        record = fake_record(upstream, request_id)
        assert await upstream.await_until(lambda fake: upstream_closed(fake, record), within=1.0)
        assert time.monotonic() - left_at < 1.0
        assert record.events_sent < 200  # it was really stopped, not run to the end

        rid = events[0]["response"]["id"]
        stored = await stored_when_settled(client, rid, headers)
    check_response(stored)
    assert stored["status"] == "incomplete"
    assert stored["error"] is None
    [message] = stored["output"]
    assert message["status"] == "incomplete"
    partial = message["content"][0]["text"]
    received = text_of(events)
    assert received == "w0 w1 w2 "
    assert partial.startswith(received)  # at least what the client got, maybe a little more
    assert LONG_TEXT.startswith(partial) and len(partial) < len(LONG_TEXT) // 4
    # Why it ended and what was really generated (vLLM's running usage), billed as such.
    assert stored["incomplete_details"] is None  # OpenAI's schema has no reason for it…
    record_row = await StoredResponse.objects.aget(public_id=rid)
    assert record_row.end_reason == "client_disconnected"  # …so the row records it
    usage = stored["usage"]
    assert usage is not None and usage["input_tokens"] > 0
    assert 3 <= usage["output_tokens"] <= record.events_sent
    row = await ledger_row_when_settled(rid)
    assert row.status == "incomplete" and not row.usage_estimated
    assert (row.input_tokens, row.output_tokens) == (usage["input_tokens"], usage["output_tokens"])


@pytest.mark.compliance("E5")
async def test_a_client_that_leaves_during_prefill_aborts_the_engine(
    live_daphne, transactional_cast, upstream, model_for
):
    model = model_for["prefill"]
    headers = transactional_cast.alice.headers
    async with httpx.AsyncClient(base_url=live_daphne, timeout=10) as client:
        async with client.stream(
            "POST", "/v1/responses", json=create_body(model), headers=headers
        ) as response:
            request_id = response.headers["x-request-id"]
            frames = sse_frames(response)
            created = await anext(frames)
            in_progress = await anext(frames)
            assert [created["type"], in_progress["type"]] == [
                "response.created",
                "response.in_progress",
            ]
            # Hang up only once the engine is working on it (in its prefill: no token yet).
            assert await upstream.await_until(
                lambda fake: any(
                    r.headers.get("x-request-id") == request_id for r in fake.chat_requests()
                ),
                within=2.0,
            )
            await frames.aclose()
        left_at = time.monotonic()
        record = fake_record(upstream, request_id)
        assert await upstream.await_until(lambda fake: upstream_closed(fake, record), within=1.0)
        assert time.monotonic() - left_at < 1.0
        stored = await stored_when_settled(client, created["response"]["id"], headers)
    check_response(stored)
    assert stored["status"] == "incomplete"
    assert stored["output"] == []


def test_a_client_that_leaves_before_the_headers_leaves_nothing_in_progress(
    live_daphne, transactional_cast, upstream, model_for
):
    """The client hangs up while the view is still storing the new response (a slow database,
    lock contention): the response must still end in a terminal state, not stay in_progress
    with no generation behind it. The table lock makes the view wait there deterministically."""
    model = model_for["slow"]
    host, port = live_daphne.removeprefix("http://").split(":")
    body = json.dumps(create_body(model)).encode()
    head = (
        f"POST /v1/responses HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {transactional_cast.alice.secret}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def send_and_hang_up() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head + body)
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            early = await asyncio.wait_for(reader.read(1), timeout=0.5)
            raise AssertionError(f"the view was not blocked: {early!r}")
        writer.close()  # the view is blocked on the INSERT: hang up before any header
        await writer.wait_closed()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE responses_storedresponse IN SHARE ROW EXCLUSIVE MODE")
        asyncio.run(send_and_hang_up())
        # Give daphne a moment to see the disconnect before the INSERT goes through. Not a wait
        # for a condition (nothing outside daphne shows it), and the assertions below hold
        # either way: a slow daphne only makes this exercise the ordinary path instead.
        time.sleep(0.3)
    assert _settle(lambda: StoredResponse.objects.exists(), within=3)
    assert _settle(
        lambda: not StoredResponse.objects.filter(status="in_progress").exists(), within=3
    ), list(StoredResponse.objects.values_list("public_id", "status"))
    # The engine request starts alongside the INSERT, so it may be open when the client leaves;
    # the abandoned stream closes it shortly after (a condition, not an instant).
    assert _settle(lambda: upstream.active_streams == 0, within=5), upstream.active_streams


# --- E5: a thousand disconnects ----------------------------------------------------------------

CYCLES = int(os.environ.get("E5_DISCONNECT_CYCLES", "1000"))
WARM_UP = 50
CONCURRENCY = 20  # each in-flight request holds a PostgreSQL connection (default max 100)


def daphne_pid(base_url: str) -> int:
    """The live daphne's pid, found by its command line (the fixture only yields the URL)."""
    port = base_url.rsplit(":", 1)[1].encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if b"daphne" in argv and b"-p" in argv and port in argv:
            return int(entry)
    raise AssertionError(f"no daphne process listens on port {port.decode()}")


@dataclass(frozen=True)
class ProcessSample:
    fds: dict[str, int]
    """Open file descriptors by kind: ``client`` (sockets to daphne's port, the listener
    included), ``upstream`` (to the fake vLLM), ``postgres``, ``redis``, ``other``."""
    threads: int
    rss_kib: int
    db_connections: int


def _tcp_peers() -> dict[str, tuple[int, int]]:
    """socket inode → (local port, remote port), from the kernel's TCP tables."""
    peers = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                peers[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return peers


def open_fds(pid: int, *, server_port: int, upstream_port: int) -> dict[str, int]:
    from django.conf import settings

    postgres_port = int(settings.DATABASES["default"]["PORT"] or 5432)
    redis_port = urlsplit(settings.REDIS_URL or "redis://127.0.0.1:6379").port or 6379
    peers = _tcp_peers()
    kinds = {"client": 0, "upstream": 0, "postgres": 0, "redis": 0, "other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
        local, remote = peers.get(inode, (None, None)) if inode else (None, None)
        if local == server_port:
            kinds["client"] += 1
        elif remote == upstream_port:
            kinds["upstream"] += 1
        elif remote == postgres_port:
            kinds["postgres"] += 1
        elif remote == redis_port:
            kinds["redis"] += 1
        else:
            kinds["other"] += 1  # files, pipes, the event poll, unix sockets
    return kinds


def sample(pid: int, *, server_port: int, upstream_port: int) -> ProcessSample:
    status = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    with connection.cursor() as cursor:
        # Everyone connected to the test database but this test's own connection: that is
        # daphne's (the suite's other connections are idle and constant).
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        db_connections = cursor.fetchone()[0]
    return ProcessSample(
        fds=open_fds(pid, server_port=server_port, upstream_port=upstream_port),
        threads=int(status["Threads"]),
        rss_kib=int(status["VmRSS"].split()[0]),
        db_connections=db_connections,
    )


def _leaks(baseline: ProcessSample, current: ProcessSample) -> list[str]:
    """What is still held beyond the baseline (and the allowed slack)."""
    # Idle keep-alive connections to the engine may stay in the engine's connection pool (at
    # most its 128 keep-alive slots); a stream still in flight would show in the fake's
    # active_streams, which the test checks separately.
    # Likewise the database pool and the database executor grow on demand up to their bounds
    # (core/db.py): more connections or threads than after the warm-up, within those bounds, is
    # a busier moment, not a leak; a leak grows with the number of streams (1,000 here).
    from django.conf import settings

    pool_max = settings.DATABASES["default"].get("OPTIONS", {}).get("pool", {}).get("max_size", 2)
    # Redis: one process-wide pool (core/cache.py), used by the database executor's threads, the
    # loop's default executor (cancel flags) and the thread async views share for Django's
    # bookkeeping (api/handler.py): at most one connection per such thread.
    redis_max = settings.DATABASE_THREADS + 8
    slack = {"client": 2, "upstream": 128, "postgres": pool_max, "redis": redis_max, "other": 2}
    found = [
        f"{kind} fds {baseline.fds[kind]} → {current.fds[kind]}"
        for kind in slack
        if current.fds[kind] > baseline.fds[kind] + slack[kind]
    ]
    pooled = current.fds["upstream"] - baseline.fds["upstream"]
    pooled += max(current.fds["postgres"] - baseline.fds["postgres"], 0)
    pooled += max(current.fds["redis"] - baseline.fds["redis"], 0)
    if sum(current.fds.values()) - max(pooled, 0) > sum(baseline.fds.values()) + 5:
        found.append(f"fds {sum(baseline.fds.values())} → {sum(current.fds.values())}")
    if current.db_connections > baseline.db_connections + pool_max:
        found.append(f"db connections {baseline.db_connections} → {current.db_connections}")
    # Threads: the database executor's and the request threads the ASGI handler keeps for reuse
    # (api/handler.py) are bounded pools too.
    bounded_threads = settings.DATABASE_THREADS + settings.ASGI_IDLE_REQUEST_THREADS
    if current.threads > baseline.threads + bounded_threads:
        found.append(f"threads {baseline.threads} → {current.threads}")
    return found


async def _disconnect_cycles(
    base_url: str, headers: dict[str, str], model: str, *, cycles: int, concurrency: int
) -> list[str]:
    """``cycles`` streams opened and abandoned, ``concurrency`` at a time; each leaves at a
    different point (right after the headers, after the first event, after some text)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(cycles):
        queue.put_nowait(index)
    seen_ids: list[str] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            leave_after = (0, 1, 3, 8)[index % 4]  # events read before hanging up
            try:
                async with client.stream(
                    "POST", "/v1/responses", json=create_body(model), headers=headers
                ) as response:
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {(await response.aread())[:200]}")
                        continue
                    if leave_after == 0:
                        continue
                    read = 0
                    async for event in sse_frames(response):
                        if event is None:
                            continue
                        if event["type"] == "response.created":
                            seen_ids.append(event["response"]["id"])
                        read += 1
                        if read >= leave_after:
                            break
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    assert not errors, errors[:5]
    return seen_ids


def _settle(predicate, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.timeout(900)
def test_a_thousand_disconnects_leave_nothing_behind(
    live_daphne, transactional_cast, upstream, model_for
):
    model = model_for["slow"]
    headers = transactional_cast.alice.headers
    pid = daphne_pid(live_daphne)
    ports = {"server_port": int(live_daphne.rsplit(":", 1)[1]), "upstream_port": upstream.port}
    # Warm up first: daphne's worker threads, the engine's connection pool, the DB connections.
    asyncio.run(
        _disconnect_cycles(live_daphne, headers, model, cycles=WARM_UP, concurrency=CONCURRENCY)
    )
    assert _settle(lambda: upstream.active_streams == 0, within=5)
    assert _settle(
        lambda: not StoredResponse.objects.filter(status="in_progress").exists(), within=5
    )
    baseline = sample(pid, **ports)
    started = upstream.started_streams

    ids = asyncio.run(
        _disconnect_cycles(live_daphne, headers, model, cycles=CYCLES, concurrency=CONCURRENCY)
    )

    # Nothing keeps running upstream: every stream the platform opened, it closed.
    assert _settle(lambda: upstream.active_streams == 0, within=5), upstream.stats()
    # (a client that hangs up right after the headers may leave before the engine is called)
    assert CYCLES // 2 <= upstream.started_streams - started <= CYCLES
    # Every response was stored and reached a terminal state: none is left in progress.
    assert _settle(
        lambda: not StoredResponse.objects.filter(status="in_progress").exists(), within=5
    ), StoredResponse.objects.filter(status="in_progress").count()
    assert StoredResponse.objects.count() == WARM_UP + CYCLES
    assert len(ids) == sum(1 for index in range(CYCLES) if index % 4)  # read response.created
    statuses = dict(
        StoredResponse.objects.filter(public_id__in=ids)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    assert set(statuses) == {"incomplete"}, statuses
    # No leaked file descriptors (client, upstream, database or Redis sockets, files),
    # database connections or threads; no memory growth beyond allocator noise.
    after = sample(pid, **ports)
    deadline = time.monotonic() + 10  # closing sockets and idle connections may lag a little
    while _leaks(baseline, after) and time.monotonic() < deadline:
        time.sleep(0.25)
        after = sample(pid, **ports)
    assert not _leaks(baseline, after), (_leaks(baseline, after), baseline, after)
    # ~120 KiB per open stream (docs/performance.md): a leak of 1,000 would be ~1.9×; allocator
    # noise and the bounded pools above stay well under 1.25×.
    assert after.rss_kib <= baseline.rss_kib * 1.25, (baseline, after)


# --- E1: the engine breaks mid-stream ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        ("die", "killed"),
        ("malformed", "malformed"),
        ("truncated", "truncated"),
        ("error-event", "error_event"),
    ],
)
@pytest.mark.compliance("C4", "E1")
async def test_an_engine_failure_mid_stream_ends_in_response_failed(
    live_daphne, transactional_cast, upstream, model_for, kind, outcome
):
    model = model_for[kind]
    headers = transactional_cast.alice.headers
    async with httpx.AsyncClient(base_url=live_daphne, timeout=10) as client:
        async with client.stream(
            "POST", "/v1/responses", json=create_body(model), headers=headers
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            raw = await response.aread()
        events = check_stream(parse_sse(raw))
        assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
        error = events[-2]
        assert error["message"] and error["code"]
        assert "Traceback" not in error["message"]
        failed = events[-1]["response"]
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == error["code"]
        # What was streamed before the failure is part of the failed response.
        received = text_of(events)
        assert received == "w0 w1 w2 w3 w4 "  # 6 upstream chunks: the role chunk + 5 words
        assert failed["output"][0]["content"][0]["text"] == received
        assert failed["output"][0]["status"] == "incomplete"
        stored = await stored_when_settled(client, failed["id"], headers)
    assert stored == failed
    assert fake_record(upstream, request_id).outcome == outcome


# --- the database drops its connections ------------------------------------------------------


@contextlib.contextmanager
def own_daphne(env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A daphne of this test's own: the session's ``live_daphne`` must not inherit the broken
    connections (or the death) this test inflicts."""
    daphne = DaphneProcess(env).start()
    try:
        yield daphne.base_url, daphne.process.pid
    finally:
        daphne.stop()


def _postgres_client_ports(pid: int) -> set[int]:
    """Local ports of ``pid``'s TCP connections to PostgreSQL (pg_stat_activity.client_port)."""
    from django.conf import settings

    postgres_port = int(settings.DATABASES["default"]["PORT"] or 5432)
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return {
        local
        for inode, (local, remote) in _tcp_peers().items()
        if inode in inodes and remote == postgres_port
    }


def test_responses_are_still_stored_after_the_database_drops_every_connection(
    transactional_cast, upstream, model_for
):
    """PostgreSQL restarts, or a pooler recycles its server connections: daphne's open
    connections die. Responses streamed afterwards must still reach a terminal state; a
    connection kept by a long-lived worker thread must be noticed as broken and replaced."""
    model = model_for["short"]
    headers = transactional_cast.alice.headers

    async def stream_some(base_url: str, count: int) -> list[str]:
        ids = []
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            for _ in range(count):
                async with client.stream(
                    "POST", "/v1/responses", json=create_body(model), headers=headers
                ) as response:
                    assert response.status_code == 200
                    events = parse_sse(await response.aread())
                assert events[-1]["type"] == "response.completed"
                ids.append(events[0]["response"]["id"])
        return ids

    with own_daphne() as (base_url, pid):
        before = asyncio.run(stream_some(base_url, 12))  # every worker thread used its connection
        assert _settle(
            lambda: not StoredResponse.objects.filter(status="in_progress").exists(), within=5
        )
        # Drop this daphne's connections only (not the session's live_daphne's). A daphne that
        # keeps none between requests has nothing to lose here, which is fine too.
        ports = _postgres_client_ports(pid)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND client_port = ANY(%s)",
                [sorted(ports)],
            )
            assert cursor.fetchone()[0] == len(ports)
        after = asyncio.run(stream_some(base_url, 12))
        assert _settle(
            lambda: not StoredResponse.objects.filter(status="in_progress").exists(), within=5
        ), list(StoredResponse.objects.filter(status="in_progress").values_list("public_id"))
    stored = dict(StoredResponse.objects.values_list("public_id", "status"))
    assert {stored[rid] for rid in before + after} == {"completed"}


# --- L4: keep-alives while the engine is silent ------------------------------------------------


@pytest.mark.compliance("L4")
async def test_keep_alive_comments_while_the_engine_is_silent(
    transactional_cast, scripted_model, settings
):
    settings.SSE_KEEPALIVE_SECONDS = 0.1
    engine = ScriptedEngine(build_script(text="Finally, an answer."), first_delay=1.0)
    client = AsyncClient()
    with engine_override(scripted_model.name, engine):
        response = await client.post(
            "/v1/responses",
            json.dumps({"model": scripted_model.name, "input": "think first", "stream": True}),
            content_type="application/json",
            headers=transactional_cast.alice.headers,
        )
        assert response.status_code == 200
        chunks: list[tuple[float, bytes]] = []
        async for chunk in response.streaming_content:
            chunks.append((time.monotonic(), chunk))
    raw = b"".join(chunk for _, chunk in chunks)
    events = check_stream(parse_sse(raw))
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Finally, an answer."

    # The keep-alives are comment frames, come between response.in_progress and the first
    # output event (the engine's silence), and keep coming while it lasts.
    # One write per batch of ready events: created and in_progress leave together.
    kinds = [
        ["keepalive"] if chunk == KEEPALIVE else [e["type"] for e in parse_sse(chunk)]
        for _, chunk in chunks
    ]
    first_output = next(i for i, chunk in enumerate(kinds) if "response.output_item.added" in chunk)
    assert kinds[0] == ["response.created", "response.in_progress"]
    assert all(chunk == ["keepalive"] for chunk in kinds[1:first_output]), kinds
    assert first_output - 1 >= 3, kinds
    assert ["keepalive"] not in kinds[first_output:]
    times = [at for at, chunk in chunks[: first_output + 1]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < 0.5, gaps


# --- a web process that dies mid-stream --------------------------------------------------------


def test_a_web_process_killed_mid_stream_leaves_the_response_failed_not_in_progress(
    model_for, transactional_cast
):
    """SIGKILL of the daphne that streams: no finally runs, so nothing there can store the
    outcome. Its lease (renewed by the process's cancel watcher while it streamed) runs out and
    the sweeper fails the row."""
    from django.utils import timezone

    from responses.services.background import SERVER_LOST_MESSAGE, background_sweep

    lease = 1.5
    daphne = DaphneProcess({"BACKGROUND_LEASE_SECONDS": str(lease)}).start()
    alice = transactional_cast.alice
    try:
        with (
            httpx.Client(base_url=daphne.base_url, timeout=30) as client,
            client.stream(
                "POST", "/v1/responses", json=create_body(model_for["slow"]), headers=alice.headers
            ) as response,
        ):
            lines = response.iter_lines()
            response_id = None
            for line in lines:
                if line.startswith("data: ") and response_id is None:
                    response_id = json.loads(line[len("data: ") :])["response"]["id"]
                    break
            started = time.monotonic()
            for _ in lines:  # keep reading for longer than one lease
                if time.monotonic() - started > 2 * lease:
                    break
            row = StoredResponse.objects.get(public_id=response_id)
            assert row.status == "in_progress"
            assert row.lease_expires_at > timezone.now(), "the lease was not renewed"
            assert background_sweep() == 0  # a live stream is never swept
            daphne.kill()
        deadline = time.monotonic() + 10 * lease
        while time.monotonic() < deadline and background_sweep() == 0:
            time.sleep(0.2)
        row.refresh_from_db()
        assert row.status == "failed"
        assert row.body["status"] == "failed"
        assert row.body["error"]["message"] == SERVER_LOST_MESSAGE
        # Its stored stream ends like any failed one, for a reader replaying it.
        replay = [e.data["type"] for e in row.events.order_by("sequence_number")]
        assert replay == ["response.created", "error", "response.failed"], replay
    finally:
        daphne.stop()
