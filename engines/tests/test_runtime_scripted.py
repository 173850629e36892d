"""The scripted engine: deterministic playback and honest bookkeeping of how streams ended."""

from __future__ import annotations

import asyncio

import pytest

from engines.runtime.types import (
    Engine,
    EngineDelta,
    EngineError,
    EngineUnavailable,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStart,
    Usage,
)
from testsupport.scripted_engine import ScriptedEngine, build_script, text_script


def request(**overrides: object) -> GenerationRequest:
    fields: dict[str, object] = {
        "request_id": "req_1",
        "model": "scripted",
        "messages": [{"role": "user", "content": "one two three"}],
        "organization_id": "org_1",
    }
    fields.update(overrides)
    return GenerationRequest(**fields)  # type: ignore[arg-type]


async def collect(engine: Engine, req: GenerationRequest) -> list[EngineDelta]:
    return [d async for d in engine.stream(req)]


def test_is_an_engine() -> None:
    assert isinstance(ScriptedEngine(), Engine)


async def test_plays_the_script_and_records_requests() -> None:
    engine = ScriptedEngine(text_script("Hello brave world", input_tokens=7))
    req = request()
    deltas = await collect(engine, req)

    assert deltas == [
        TextDelta(text="Hello "),
        TextDelta(text="brave "),
        TextDelta(text="world"),
        Finish(reason="stop"),
        Usage(input_tokens=7, output_tokens=3),
    ]
    assert engine.requests == [req]
    assert (engine.started, engine.finished, engine.cancelled, engine.failed) == (1, 1, 0, 0)
    assert engine.active == 0
    assert engine.yielded == 5


def test_build_script_covers_reasoning_and_tool_calls() -> None:
    script = build_script(
        reasoning="Need weather.",
        tool_calls=[("get_weather", '{"city": "Paris"}', "call_w")],
        input_tokens=12,
        cached_tokens=8,
    )
    assert script[:2] == [ReasoningDelta(text="Need "), ReasoningDelta(text="weather.")]
    assert script[2] == ToolCallStart(index=0, call_id="call_w", name="get_weather")
    args = [d for d in script if isinstance(d, ToolCallArgumentsDelta)]
    assert "".join(a.delta for a in args) == '{"city": "Paris"}'
    assert script[-2] == Finish(reason="tool_calls")
    usage = script[-1]
    assert isinstance(usage, Usage)
    assert (usage.input_tokens, usage.cached_tokens, usage.reasoning_tokens) == (12, 8, 2)


async def test_callable_script_sees_the_request() -> None:
    engine = ScriptedEngine(lambda req: text_script(f"tier={req.service_tier}"))
    deltas = await collect(engine, request(service_tier="flex"))
    assert deltas[0] == TextDelta(text="tier=flex")


async def test_fail_after_n_deltas() -> None:
    engine = ScriptedEngine(
        text_script("a b c d"), fail_after=2, error=EngineUnavailable("replica gone")
    )
    received: list[EngineDelta] = []
    with pytest.raises(EngineUnavailable, match="replica gone"):
        async for delta in engine.stream(request()):
            received.append(delta)
    assert received == [TextDelta(text="a "), TextDelta(text="b ")]
    assert (engine.started, engine.finished, engine.failed, engine.cancelled) == (1, 0, 1, 0)

    # The same engine fails the same way again (a fresh error each time).
    with pytest.raises(EngineUnavailable):
        await collect(engine, request())
    assert engine.failed == 2


async def test_fail_before_anything_and_after_everything() -> None:
    before = ScriptedEngine(text_script("x"), fail_after=0)
    with pytest.raises(EngineError):
        await collect(before, request())
    assert before.yielded == 0

    script = text_script("x y")
    after = ScriptedEngine(script, fail_after=len(script))
    received: list[EngineDelta] = []
    with pytest.raises(EngineError):
        async for delta in after.stream(request()):
            received.append(delta)
    assert received == script


async def test_closing_the_stream_counts_as_cancelled() -> None:
    engine = ScriptedEngine(text_script("a b c d e f"))
    stream = engine.stream(request())
    async for _ in stream:
        break
    await stream.aclose()
    assert (engine.started, engine.finished, engine.cancelled) == (1, 0, 1)


async def test_cancelling_a_slow_stream_counts_as_cancelled() -> None:
    engine = ScriptedEngine(text_script("word " * 100), delay=0.05)

    async def consume() -> None:
        async for _ in engine.stream(request()):
            pass

    task = asyncio.create_task(consume())
    assert await engine.wait_until(lambda e: e.yielded >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await engine.wait_until(lambda e: e.cancelled == 1)
    assert engine.finished == 0
    assert engine.active == 0


async def test_delays_are_applied() -> None:
    engine = ScriptedEngine(text_script("a b c"), first_delay=0.05, delay=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await collect(engine, request())
    assert loop.time() - started >= 0.05 + 4 * 0.02 - 0.005


async def test_count_tokens_is_deterministic() -> None:
    engine = ScriptedEngine()
    messages = [{"role": "user", "content": "one two three"}]
    assert await engine.count_tokens(model="m", messages=messages) == 4
    assert await engine.count_tokens(model="m", messages=messages) == 4
    with_tools = await engine.count_tokens(
        model="m",
        messages=messages,
        tools=[{"type": "function", "function": {"name": "f"}}],
    )
    assert with_tools > 4
    assert await ScriptedEngine(token_count=99).count_tokens(model="m", messages=messages) == 99
    assert len(engine.token_requests) == 3


async def test_reset_clears_counters() -> None:
    engine = ScriptedEngine()
    await collect(engine, request())
    engine.reset()
    assert (engine.started, engine.finished, engine.requests) == (0, 0, [])
