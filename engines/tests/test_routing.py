"""Replica routing (H1) with three local upstreams that speak vLLM's streaming protocol."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from engines.runtime.pool import ReplicaPool, hrw_score
from engines.runtime.types import (
    EngineBadRequest,
    EngineDelta,
    EngineProtocolError,
    EngineUnavailable,
    GenerationRequest,
    TextDelta,
    Usage,
)
from engines.runtime.vllm import VllmEngine, cache_salt_factory
from testsupport.fake_vllm import FakeBehavior, FakeVllm

HEALTH_INTERVAL = 0.05


@pytest.fixture
def replicas() -> Iterator[list[FakeVllm]]:
    servers = [FakeVllm(behavior=FakeBehavior(text="hi there")) for _ in range(3)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
async def engine(replicas: list[FakeVllm]) -> AsyncIterator[VllmEngine]:
    pool = ReplicaPool(
        [r.base_url for r in replicas],
        connect_timeout=1.0,
        read_timeout=5.0,
        health_interval=HEALTH_INTERVAL,
        name="routing",
    )
    engine = VllmEngine(upstream_model="m", pool=pool, cache_salt=cache_salt_factory("s"))
    yield engine
    await engine.aclose()


def request(*, org: str = "org_a", key: str | None = None, **extra: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "request_id": "req_routing",
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "organization_id": org,
        "prompt_cache_key": key,
    }
    fields.update(extra)
    return GenerationRequest(**fields)


async def run(engine: VllmEngine, req: GenerationRequest) -> list[EngineDelta]:
    return [d async for d in engine.stream(req)]


def served_by(replicas: list[FakeVllm]) -> list[int]:
    """How many chat requests each replica received."""
    return [len(r.chat_requests()) for r in replicas]


def reset(replicas: list[FakeVllm]) -> None:
    for replica in replicas:
        replica.reset()


def owner(replicas: list[FakeVllm], *, org: str, key: str, among: list[FakeVllm] | None = None):
    candidates = among if among is not None else replicas
    return max(
        candidates,
        key=lambda r: hrw_score(organization_id=org, prompt_cache_key=key, replica_id=r.base_url),
    )


async def eventually(predicate: Callable[[], bool], within: float = 3.0) -> bool:
    for _ in range(int(within / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


@pytest.mark.compliance("H1")
async def test_same_org_and_key_always_land_on_the_same_replica(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    for _ in range(100):
        deltas = await run(engine, request(key="conversation-42"))
        assert isinstance(deltas[-1], Usage)

    counts = served_by(replicas)
    assert sorted(counts) == [0, 0, 100]
    expected = owner(replicas, org="org_a", key="conversation-42")
    assert counts[replicas.index(expected)] == 100


@pytest.mark.compliance("H1")
async def test_sticky_routing_makes_prefix_cache_hits(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    prompt = [{"role": "user", "content": " ".join(f"w{i}" for i in range(64))}]
    usages = []
    for _ in range(5):
        deltas = await run(engine, request(key="doc-summary", messages=prompt))
        usages.append(deltas[-1])
    assert usages[0].cached_tokens == 0
    assert all(u.cached_tokens == 64 for u in usages[1:])


async def test_the_same_key_in_other_organizations_spreads_over_replicas(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    orgs = [f"org_{n}" for n in range(30)]
    for org in orgs:
        for _ in range(3):
            await run(engine, request(org=org, key="shared-key"))

    counts = served_by(replicas)
    assert sum(counts) == 90
    assert sum(1 for c in counts if c) >= 2
    salt = cache_salt_factory("s")
    for org in orgs:
        # Each organization's requests all went to its own HRW owner.
        home = owner(replicas, org=org, key="shared-key")
        mine = [q for q in home.chat_requests() if q.body["cache_salt"] == salt(org)]
        assert len(mine) == 3
    per_salt = Counter(
        (q.body["cache_salt"], r.base_url) for r in replicas for q in r.chat_requests()
    )
    assert len(per_salt) == len(orgs)  # one replica per organization, three requests each
    assert set(per_salt.values()) == {3}


async def test_without_a_key_requests_are_spread_evenly(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    for _ in range(30):
        await run(engine, request())
    assert served_by(replicas) == [10, 10, 10]


async def test_without_a_key_the_least_loaded_replica_is_chosen(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    for replica in replicas:
        replica.behavior = FakeBehavior(text="slow " * 50, delay=0.01)
    busy = [asyncio.create_task(run(engine, request())) for _ in range(3)]
    assert await eventually(lambda: sum(r.active_streams for r in replicas) == 3)
    assert [r.active_streams for r in replicas] == [1, 1, 1]
    assert [r.in_flight for r in engine.pool.replicas] == [1, 1, 1]
    await asyncio.gather(*busy)
    assert [r.in_flight for r in engine.pool.replicas] == [0, 0, 0]


async def test_killed_replica_is_ejected_traffic_continues_and_it_comes_back(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    key = "sticky"
    home = owner(replicas, org="org_a", key=key)
    others = [r for r in replicas if r is not home]
    fallback = owner(replicas, org="org_a", key=key, among=others)

    await run(engine, request(key=key))
    assert len(home.chat_requests()) == 1

    home.stop()
    reset(replicas)
    for _ in range(20):
        deltas = await run(engine, request(key=key))
        assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "hi there"
    assert engine.pool.get(home.base_url).healthy is False
    # The key moved to its second HRW choice, as a whole; keyless traffic uses the survivors.
    assert len(fallback.chat_requests()) == 20
    for _ in range(10):
        await run(engine, request())
    assert sum(len(r.chat_requests()) for r in others) == 30

    home.start()  # same port: the replica comes back at its address
    assert await eventually(lambda: engine.pool.get(home.base_url).healthy)
    reset(replicas)
    for _ in range(10):
        await run(engine, request(key=key))
    assert len(home.chat_requests()) == 10


async def test_failed_health_probe_ejects_and_passing_probe_readmits(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    await run(engine, request())  # starts the health checker
    sick = replicas[1]
    sick.healthy = False
    assert await eventually(lambda: not engine.pool.get(sick.base_url).healthy)
    reset(replicas)
    for _ in range(12):
        await run(engine, request())
    assert len(sick.chat_requests()) == 0
    assert sum(served_by(replicas)) == 12

    sick.healthy = True
    assert await eventually(lambda: engine.pool.get(sick.base_url).healthy)
    reset(replicas)
    for _ in range(12):
        await run(engine, request())
    assert served_by(replicas) == [4, 4, 4]


async def test_retry_on_another_replica_when_the_first_fails_before_streaming(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    key = "retry-me"
    home = owner(replicas, org="org_a", key=key)
    home.behavior = FakeBehavior(status=500, error_message="boom")

    deltas = await run(engine, request(key=key))

    assert isinstance(deltas[-1], Usage)
    assert len(home.chat_requests()) == 1
    assert sum(served_by(replicas)) == 2
    # A 500 is not a connection failure: the replica stays in rotation.
    assert engine.pool.get(home.base_url).healthy is True


async def test_no_retry_after_the_first_delta(engine: VllmEngine, replicas: list[FakeVllm]) -> None:
    key = "no-retry"
    home = owner(replicas, org="org_a", key=key)
    home.behavior = FakeBehavior(text="one two three four", die_after_chunks=3)

    received: list[EngineDelta] = []
    with pytest.raises(EngineProtocolError):
        async for delta in engine.stream(request(key=key)):
            received.append(delta)

    assert received == [TextDelta(text="one "), TextDelta(text="two ")]
    assert served_by(replicas) == [1 if r is home else 0 for r in replicas]  # nobody else was asked


async def test_client_errors_are_not_retried(engine: VllmEngine, replicas: list[FakeVllm]) -> None:
    for replica in replicas:
        replica.behavior = FakeBehavior(status=400, error_message="bad temperature")
    with pytest.raises(EngineBadRequest):
        await run(engine, request())
    assert sum(served_by(replicas)) == 1


async def test_no_healthy_replica_is_engine_unavailable(
    engine: VllmEngine, replicas: list[FakeVllm]
) -> None:
    for replica in replicas:
        replica.stop()
    with pytest.raises(EngineUnavailable):
        await run(engine, request(key="k"))
    assert engine.pool.healthy_replicas == []
    # Every replica ejected: they are still tried (panic mode), and still refuse.
    with pytest.raises(EngineUnavailable):
        await run(engine, request())


def test_hrw_is_stable_and_minimal_on_removal() -> None:
    urls = [f"http://10.0.0.{n}:8000/v1" for n in range(4)]

    def pick(pool_urls: list[str], org: str, key: str) -> str:
        return max(
            pool_urls,
            key=lambda u: hrw_score(organization_id=org, prompt_cache_key=key, replica_id=u),
        )

    keys = [f"k{n}" for n in range(400)]
    before = {k: pick(urls, "org", k) for k in keys}
    assert before == {k: pick(list(reversed(urls)), "org", k) for k in keys}  # order-independent
    after = {k: pick(urls[1:], "org", k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    # Only the keys that lived on the removed replica move.
    assert all(before[k] == urls[0] for k in moved)
    assert 50 < len(moved) < 150


async def test_a_probe_on_a_connection_the_engine_closed_while_idle_does_not_eject() -> None:
    """vLLM closes an idle keep-alive connection after a few seconds. A probe that sends on a
    pooled connection as the engine closes it gets no answer; that says nothing of the engine, so
    the probe tries a fresh connection instead of ejecting a healthy replica."""
    connections = 0

    async def answer_once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")  # keep-alive
        await writer.drain()
        # The next request on this connection meets the idle timeout: closed, unanswered.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(answer_once_then_hang_up, "127.0.0.1", 0)
    base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    pool = ReplicaPool([base_url], connect_timeout=1.0, read_timeout=5.0, name="idle")
    replica = pool.get(base_url)
    try:
        assert await pool.check_replica(replica)
        assert await pool.check_replica(replica)
        assert replica.healthy
        assert connections == 2
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
