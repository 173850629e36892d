"""VllmEngine against the fake vLLM server: the wire protocol, error mapping and cancellation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engines.runtime.pool import ReplicaPool
from engines.runtime.types import (
    ContextLengthExceeded,
    Engine,
    EngineBadRequest,
    EngineDelta,
    EngineError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStart,
    Usage,
)
from engines.runtime.vllm import (
    VllmEngine,
    _loads,
    cache_salt_factory,
    organization_cache_salt,
)
from testsupport.fake_vllm import FakeBehavior, FakeToolCall, FakeVllm, count_prompt_tokens
from testsupport.fixtures import fake_vllm_fixture

SECRET = "test-secret"
LONG_PROMPT = " ".join(f"word{i}" for i in range(40))


def make_engine(*urls: str, read_timeout: float = 5.0, health_interval: float = 0.05) -> VllmEngine:
    pool = ReplicaPool(
        list(urls),
        connect_timeout=1.0,
        read_timeout=read_timeout,
        health_interval=health_interval,
        name="fake",
    )
    return VllmEngine(
        upstream_model="fake-upstream", pool=pool, cache_salt=cache_salt_factory(SECRET)
    )


upstream = fake_vllm_fixture(scope="function")


@pytest.fixture
async def engine(upstream: FakeVllm) -> AsyncIterator[VllmEngine]:
    engine = make_engine(upstream.base_url)
    yield engine
    await engine.aclose()


def request(**overrides: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "request_id": "req_test",
        "model": "public-model",
        "messages": [{"role": "user", "content": "Say hello"}],
        "organization_id": "org_a",
    }
    fields.update(overrides)
    return GenerationRequest(**fields)


async def collect(engine: Engine, req: GenerationRequest) -> list[EngineDelta]:
    return [delta async for delta in engine.stream(req)]


def text_of(deltas: list[EngineDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def test_vllm_engine_satisfies_the_engine_protocol() -> None:
    assert isinstance(make_engine("http://127.0.0.1:1/v1"), Engine)


async def test_streams_text_then_finish_then_usage(engine: VllmEngine, upstream: FakeVllm) -> None:
    upstream.behavior = FakeBehavior(text="Hello there, world!")
    deltas = await collect(engine, request())

    assert text_of(deltas) == "Hello there, world!"
    assert deltas[-2:] == [
        Finish(reason="stop"),
        Usage(input_tokens=3, output_tokens=3, cached_tokens=0, reasoning_tokens=0),
    ]
    assert all(isinstance(d, TextDelta) for d in deltas[:-2])


@pytest.mark.compliance("H1")
async def test_cached_tokens_come_from_the_prefix_cache_per_organization(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    messages = [{"role": "user", "content": LONG_PROMPT}]

    first = await collect(engine, request(messages=messages))
    second = await collect(engine, request(messages=messages))
    other_org = await collect(engine, request(messages=messages, organization_id="org_b"))

    assert first[-1] == Usage(input_tokens=41, output_tokens=5, cached_tokens=0)
    assert second[-1] == Usage(input_tokens=41, output_tokens=5, cached_tokens=32)
    # Another tenant never hits org_a's cache entries: its cache_salt differs.
    assert other_org[-1] == Usage(input_tokens=41, output_tokens=5, cached_tokens=0)


async def test_usage_maps_cached_and_reasoning_tokens(
    engine: VllmEngine, upstream: FakeVllm
) -> None:
    upstream.behavior = FakeBehavior(
        text="ok",
        prompt_tokens=120,
        cached_tokens=64,
        completion_tokens=9,
        reasoning_tokens=7,
    )
    deltas = await collect(engine, request())
    assert deltas[-1] == Usage(
        input_tokens=120, output_tokens=9, cached_tokens=64, reasoning_tokens=7
    )


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_deltas_from_either_vllm_field(
    engine: VllmEngine,
    upstream: FakeVllm,
    field: str,
) -> None:
    upstream.behavior = FakeBehavior(reasoning="Let me think.", reasoning_field=field, text="Yes.")
    deltas = await collect(engine, request())

    reasoning = [d for d in deltas if isinstance(d, ReasoningDelta)]
    assert "".join(d.text for d in reasoning) == "Let me think."
    assert deltas.index(reasoning[-1]) < deltas.index(
        next(d for d in deltas if isinstance(d, TextDelta))
    )
    assert deltas[-1] == Usage(input_tokens=3, output_tokens=4, cached_tokens=0, reasoning_tokens=3)


async def test_parallel_tool_calls_stream_as_start_then_argument_deltas(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    upstream.behavior = FakeBehavior(
        text="",
        tool_calls=[
            FakeToolCall(name="get_weather", arguments='{"city": "Paris"}', call_id="call_1"),
            FakeToolCall(name="get_time", arguments='{"tz": "Europe/Paris"}', call_id="call_2"),
        ],
    )
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ]
    deltas = await collect(
        engine, request(tools=tools, tool_choice="auto", parallel_tool_calls=True)
    )

    starts = [d for d in deltas if isinstance(d, ToolCallStart)]
    assert starts == [
        ToolCallStart(index=0, call_id="call_1", name="get_weather"),
        ToolCallStart(index=1, call_id="call_2", name="get_time"),
    ]
    for start, expected in zip(
        starts, ['{"city": "Paris"}', '{"tz": "Europe/Paris"}'], strict=True
    ):
        pieces = [
            d for d in deltas if isinstance(d, ToolCallArgumentsDelta) and d.index == start.index
        ]
        assert len(pieces) > 1  # really streamed, not one blob
        assert "".join(p.delta for p in pieces) == expected
        assert deltas.index(start) < deltas.index(pieces[0])
    assert Finish(reason="tool_calls") in deltas

    body = upstream.chat_requests()[-1].body
    assert body["tools"] == tools
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True


async def test_logprobs_with_bytes_and_top_logprobs(engine: VllmEngine, upstream: FakeVllm) -> None:
    upstream.behavior = FakeBehavior(text="héllo world")
    deltas = await collect(engine, request(logprobs=True, top_logprobs=2))

    texts = [d for d in deltas if isinstance(d, TextDelta)]
    assert [d.text for d in texts] == ["héllo ", "world"]
    first = texts[0].logprobs[0]
    assert first.token == "héllo "
    assert first.bytes == list("héllo ".encode())
    assert first.logprob < 0
    assert [t.token for t in first.top_logprobs] == ["héllo ", "alt1"]
    assert first.top_logprobs[1].bytes == list(b"alt1")

    body = upstream.chat_requests()[-1].body
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 2


async def test_without_logprobs_none_are_requested(engine: VllmEngine, upstream: FakeVllm) -> None:
    deltas = await collect(engine, request())
    assert all(not d.logprobs for d in deltas if isinstance(d, TextDelta))
    assert "logprobs" not in upstream.chat_requests()[-1].body


@pytest.mark.parametrize(("tier", "priority"), [("priority", 0), ("default", 1), ("flex", 2)])
async def test_upstream_sees_request_id_priority_and_cache_salt(
    engine: VllmEngine,
    upstream: FakeVllm,
    tier: str,
    priority: int,
) -> None:
    await collect(
        engine,
        request(
            request_id="req_abc123",
            service_tier=tier,
            max_tokens=50,
            temperature=0.2,
            top_p=0.9,
            response_format={"type": "json_object"},
            reasoning_effort="low",
            extra_body={"top_k": 5},
        ),
    )
    recorded = upstream.chat_requests()[-1]
    body = recorded.body

    assert recorded.headers["x-request-id"] == "req_abc123"
    assert body["request_id"] == "req_abc123"
    assert body["model"] == "fake-upstream"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["priority"] == priority
    expected_salt = hmac.new(SECRET.encode(), b"org_a", hashlib.sha256).hexdigest()
    assert body["cache_salt"] == expected_salt
    assert body["cache_salt"] == organization_cache_salt(secret=SECRET, organization_id="org_a")
    assert body["max_completion_tokens"] == 50
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["response_format"] == {"type": "json_object"}
    assert body["reasoning_effort"] == "low"
    assert body["top_k"] == 5
    assert "tools" not in body and "tool_choice" not in body


async def test_extra_body_cannot_override_priority_or_cache_salt(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    await collect(
        engine,
        request(service_tier="flex", extra_body={"priority": -100, "cache_salt": "stolen"}),
    )
    body = upstream.chat_requests()[-1].body
    assert body["priority"] == 2
    assert body["cache_salt"] == organization_cache_salt(secret=SECRET, organization_id="org_a")


@pytest.mark.compliance("H1")
def test_cache_salts_differ_per_organization_and_secret() -> None:
    salt = cache_salt_factory("one")
    assert salt("org_a") != salt("org_b")
    assert salt("org_a") == salt("org_a")
    assert cache_salt_factory("two")("org_a") != salt("org_a")
    with pytest.raises(ValueError):
        cache_salt_factory("")


async def test_connections_are_pooled(engine: VllmEngine, upstream: FakeVllm) -> None:
    for n in range(10):
        await collect(engine, request(request_id=f"req_{n}"))
    assert len(upstream.chat_requests()) == 10
    # One keep-alive connection for the streams, at most one more for a concurrent health probe.
    assert upstream.connections <= 2


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("malformed_after_chunks", EngineProtocolError, "invalid JSON"),
        ("truncate_after_chunks", EngineProtocolError, "without a finish_reason"),
        ("die_after_chunks", EngineProtocolError, "cut off"),
        ("error_event_after_chunks", EngineError, "fake engine error"),
    ],
)
@pytest.mark.compliance("E1")
async def test_broken_streams_raise_engine_errors_after_partial_output(
    engine: VllmEngine,
    upstream: FakeVllm,
    mode: str,
    error: type[EngineError],
    message: str,
) -> None:
    upstream.behavior = FakeBehavior(text="one two three four five", **{mode: 3})
    received: list[EngineDelta] = []
    with pytest.raises(error, match=message) as caught:
        async for delta in engine.stream(request()):
            received.append(delta)

    assert type(caught.value) is error
    assert text_of(received) == "one two "  # role chunk + two words, then the failure
    assert len(upstream.chat_requests()) == 1  # never retried after output was streamed


@pytest.mark.compliance("E1")
async def test_upstream_killed_mid_stream(upstream: FakeVllm) -> None:
    upstream.behavior = FakeBehavior(text="word " * 200, delay=0.01)
    engine = make_engine(upstream.base_url, health_interval=60)
    received: list[EngineDelta] = []
    try:
        with pytest.raises(EngineProtocolError):
            async for delta in engine.stream(request()):
                received.append(delta)
                if len(received) == 3:
                    await asyncio.to_thread(upstream.stop)
        assert len(received) >= 3
        # The connection failure ejects the replica until a health probe passes again.
        assert engine.pool.healthy_replicas == []
        with pytest.raises(EngineUnavailable):
            await collect(engine, request())
    finally:
        await engine.aclose()


async def test_refused_connection_is_engine_unavailable() -> None:
    with FakeVllm() as dead:
        url = dead.base_url
    engine = make_engine(url, health_interval=60)
    try:
        with pytest.raises(EngineUnavailable):
            await collect(engine, request())
        assert engine.pool.replicas[0].healthy is False
    finally:
        await engine.aclose()


async def test_stalled_upstream_is_engine_timeout(upstream: FakeVllm) -> None:
    upstream.behavior = FakeBehavior(headers_delay=3.0)
    engine = make_engine(upstream.base_url, read_timeout=0.3, health_interval=60)
    engine.max_attempts = 1
    try:
        started = time.monotonic()
        with pytest.raises(EngineTimeout):
            await collect(engine, request())
        assert time.monotonic() - started < 2.0
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (400, "This model's maximum context length is 4096 tokens.", ContextLengthExceeded),
        (400, "temperature must be non-negative", EngineBadRequest),
        (500, "engine crashed", EngineError),
        (503, "overloaded", EngineUnavailable),
    ],
)
async def test_upstream_status_errors_are_classified(
    engine: VllmEngine,
    upstream: FakeVllm,
    status: int,
    message: str,
    error: type[EngineError],
) -> None:
    upstream.behavior = FakeBehavior(status=status, error_message=message)
    with pytest.raises(EngineError) as caught:
        await collect(engine, request())
    assert type(caught.value) is error
    assert message in caught.value.message


async def test_too_long_prompt_is_context_length_exceeded(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    upstream.behavior = FakeBehavior(max_model_len=16)
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(engine, request(messages=[{"role": "user", "content": LONG_PROMPT}]))
    assert caught.value.status == 400
    assert caught.value.code == "context_length_exceeded"


async def _wait_for_aborts(fake: FakeVllm, count: int) -> float:
    # The promise is one second (E5); the bound is doubled because the fake runs in a thread of
    # this same 2-core process and is starved when CI runs other work beside it.
    started = time.monotonic()
    assert await fake.await_until(lambda f: f.aborted_streams >= count, within=2.0)
    return time.monotonic() - started


async def test_closing_the_stream_aborts_upstream_within_a_second(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    upstream.behavior = FakeBehavior(text="tick " * 1000, delay=0.02)
    stream = engine.stream(request())
    async for _ in stream:
        break
    await stream.aclose()

    await _wait_for_aborts(upstream, 1)
    assert upstream.completed_streams == 0
    assert upstream.chat_requests()[-1].outcome == "aborted"
    assert engine.pool.replicas[0].in_flight == 0


async def test_cancelling_the_consumer_aborts_upstream_within_a_second(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    upstream.behavior = FakeBehavior(text="tick " * 1000, delay=0.02)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.stream(request()):
            first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _wait_for_aborts(upstream, 1)
    assert upstream.completed_streams == 0
    assert engine.pool.replicas[0].in_flight == 0


async def test_cancelling_while_waiting_for_the_first_token_aborts_upstream(
    engine: VllmEngine,
    upstream: FakeVllm,
) -> None:
    upstream.behavior = FakeBehavior(first_chunk_delay=5.0)
    task = asyncio.create_task(collect(engine, request()))
    assert await upstream.await_until(lambda f: f.active_streams == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for_aborts(upstream, 1)


async def test_count_tokens_uses_vllm_tokenize(engine: VllmEngine, upstream: FakeVllm) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]

    count = await engine.count_tokens(model="public-model", messages=messages, tools=tools)

    assert count == count_prompt_tokens(messages=messages, tools=tools)
    recorded = [r for r in upstream.requests if r.path == "/tokenize"][-1]
    assert recorded.body == {
        "model": "fake-upstream",
        "messages": messages,
        "tools": tools,
        "add_generation_prompt": True,
    }


async def test_count_tokens_on_a_dead_replica_is_engine_unavailable() -> None:
    with FakeVllm() as dead:
        url = dead.base_url
    engine = make_engine(url, health_interval=60)
    try:
        with pytest.raises(EngineUnavailable):
            await engine.count_tokens(model="m", messages=[{"role": "user", "content": "x"}])
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    "data",
    [
        b'{"choices":[],"usage":{"prompt_tokens":3}}',
        b'{"x":NaN,"y":-Infinity}',  # refused by orjson, read by the standard library
        b'{"t":"\\ud800 lone"}',  # a lone surrogate escape, likewise
        '{"t":"caf\u00e9 \u2014 \U0001f600"}'.encode(),
    ],
)
def test_chunk_json_reads_like_the_standard_library(data: bytes) -> None:
    parsed, expected = _loads(data), json.loads(data)
    if "x" in expected:
        assert math.isnan(parsed["x"]) and parsed["y"] == expected["y"]
    else:
        assert parsed == expected


def test_chunk_json_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    assert _loads(b'{"t":"a\xffb"}') == {"t": "a\ufffdb"}


def test_broken_chunk_json_is_reported_by_the_standard_library() -> None:
    with pytest.raises(json.JSONDecodeError, match="Unterminated string starting at"):
        _loads(b'{"choices": [{"ind')
