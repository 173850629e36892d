"""The engine interface against the real CPU vLLM serving SmolLM2-135M-Instruct.

Everything goes through the platform's own engine (``build_engine`` → VllmEngine + ReplicaPool),
so these tests prove that what the Responses layer asks for is what vLLM does. The model is tiny:
the tests assert the mechanics (tokens stream, JSON parses, a tool call starts, the cache hits, a
cancel aborts), never the quality of what it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import pytest

from engines.runtime.pool import ReplicaSpec
from engines.runtime.registry import EngineConfig, build_engine
from engines.runtime.types import (
    EngineDelta,
    Finish,
    GenerationRequest,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStart,
    Usage,
)

pytestmark = pytest.mark.integration

ACME = "org_acme_integration"
GLOBEX = "org_globex_integration"


@pytest.fixture
async def engine(real_engine):
    engine = build_engine(
        EngineConfig(
            name=real_engine.served_model_name,
            upstream_model=real_engine.served_model_name,
            replicas=(ReplicaSpec(base_url=real_engine.base_url),),
        ),
        secret="integration-tests",
    )
    yield engine
    await engine.aclose()


def generation(prompt: str, **fields) -> GenerationRequest:
    fields.setdefault("messages", [{"role": "user", "content": prompt}])
    fields.setdefault("organization_id", ACME)
    fields.setdefault("max_tokens", 16)
    fields.setdefault("temperature", 0.0)
    return GenerationRequest(
        request_id=f"req_{uuid.uuid4().hex}", model="smollm2-135m-instruct", **fields
    )


async def collect(engine, request: GenerationRequest) -> list[EngineDelta]:
    return [delta async for delta in engine.stream(request)]


def text_of(deltas: list[EngineDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def usage_of(deltas: list[EngineDelta]) -> Usage:
    (usage,) = [d for d in deltas if isinstance(d, Usage)]
    return usage


async def test_streamed_text_is_real_tokens(engine):
    request = generation("Write one sentence about the sea.", max_tokens=24)
    deltas = await collect(engine, request)

    texts = [d for d in deltas if isinstance(d, TextDelta)]
    assert len(texts) > 1, "the text should arrive as a stream of deltas, not in one piece"
    assert text_of(deltas).strip()
    assert [d.reason for d in deltas if isinstance(d, Finish)] in (["stop"], ["length"])
    usage = usage_of(deltas)
    assert usage.input_tokens > 5
    assert 0 < usage.output_tokens <= 24
    # vLLM's running usage (continuous usage stats) was followed chunk by chunk and ends where
    # the final usage does: what a disconnect would have billed.
    progress = request.progress
    assert progress.reported
    assert (progress.input_tokens, progress.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


async def test_a_stream_cut_short_has_the_tokens_generated_so_far(engine):
    request = generation("Count from one to fifty in words.", max_tokens=64)
    seen = 0
    async with contextlib.aclosing(engine.stream(request)) as stream:
        async for delta in stream:
            if isinstance(delta, TextDelta):
                seen += 1
                if seen == 5:
                    break
    progress = request.progress
    assert progress.input_tokens > 5
    assert 5 <= progress.output_tokens < 64


async def test_json_schema_output_parses_and_matches_the_schema(engine):
    schema = {
        "type": "object",
        "properties": {
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["color", "count"],
        "additionalProperties": False,
    }
    request = generation(
        "Pick a color and a count. Answer in JSON.",
        max_tokens=64,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "pick", "schema": schema, "strict": True},
        },
    )

    answer = json.loads(text_of(await collect(engine, request)))

    assert set(answer) == {"color", "count"}
    assert answer["color"] in ("red", "green", "blue")
    assert isinstance(answer["count"], int) and 0 <= answer["count"] <= 9


async def test_a_named_tool_choice_produces_a_tool_call(engine):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    request = generation(
        "What is the weather in Paris?",
        max_tokens=48,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    deltas = await collect(engine, request)

    starts = [d for d in deltas if isinstance(d, ToolCallStart)]
    assert [s.name for s in starts] == ["get_weather"]
    assert starts[0].call_id
    arguments = [d for d in deltas if isinstance(d, ToolCallArgumentsDelta)]
    assert arguments and all(a.index == starts[0].index for a in arguments)
    assert "".join(a.delta for a in arguments).strip()


async def test_logprobs_come_with_every_token(engine):
    deltas = await collect(
        engine, generation("Count to five.", max_tokens=8, logprobs=True, top_logprobs=3)
    )

    tokens = [lp for d in deltas if isinstance(d, TextDelta) for lp in d.logprobs]
    assert len(tokens) == usage_of(deltas).output_tokens
    for token in tokens:
        assert token.logprob <= 0.0
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob >= token.top_logprobs[-1].logprob


@pytest.mark.compliance("H1")
async def test_a_repeated_long_prefix_hits_the_prefix_cache_of_its_organization_only(engine):
    # A fresh nonce first, so no block can match anything cached before this test.
    prefix = f"Session {uuid.uuid4().hex}. " + " ".join(
        f"Rule {i}: answer briefly and politely." for i in range(60)
    )
    messages = [{"role": "system", "content": prefix}, {"role": "user", "content": "Hi"}]
    assert await engine.count_tokens(model="smollm2-135m-instruct", messages=messages) >= 256

    async def cached_tokens(organization_id: str) -> int:
        request = generation("", messages=messages, max_tokens=1, organization_id=organization_id)
        return usage_of(await collect(engine, request)).cached_tokens

    assert await cached_tokens(ACME) == 0
    assert await cached_tokens(ACME) > 0
    # Another organization gets another cache_salt: the same prompt finds nothing of Acme's.
    assert await cached_tokens(GLOBEX) == 0


@pytest.mark.parametrize("tier", ["priority", "default", "flex"])
@pytest.mark.compliance("L8")
async def test_every_service_tier_is_accepted(engine, tier):
    deltas = await collect(engine, generation("Say hi.", max_tokens=4, service_tier=tier))

    assert text_of(deltas)
    assert usage_of(deltas).output_tokens > 0


async def test_cancelling_a_stream_stops_the_generation_in_vllm(engine, real_engine):
    # Seen from vLLM's side, in its Prometheus metrics: the request stops running and no more
    # tokens are generated. (vLLM 0.32 does not count client aborts in request_success_total.)
    model = real_engine.served_model_name

    def metric(name: str) -> float:
        return real_engine.metric(name, model_name=model)

    generated_before = metric("vllm:generation_tokens_total")
    # ignore_eos: left alone, this would generate 2000 tokens (~40 s here).
    request = generation(
        "Tell me a very long story.", max_tokens=2000, extra_body={"ignore_eos": True}
    )
    three_deltas = asyncio.Event()

    async def consume() -> None:
        streamed = 0
        async for delta in engine.stream(request):
            streamed += isinstance(delta, TextDelta)
            if streamed == 3:
                three_deltas.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three_deltas.wait(), timeout=30)
    assert metric("vllm:num_requests_running") == 1

    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    cancelled_at = time.monotonic()
    while metric("vllm:num_requests_running") != 0:
        assert time.monotonic() - cancelled_at < 5, "vLLM still runs the cancelled request"
        await asyncio.sleep(0.1)

    generated = metric("vllm:generation_tokens_total")
    await asyncio.sleep(1.0)  # ~50 tokens' worth of time on this machine
    assert metric("vllm:generation_tokens_total") == generated, "vLLM is still generating"
    assert generated - generated_before < 500, "most of the 2000 tokens should never be made"


def test_the_engine_cold_start_was_measured(real_engine):
    assert 0 < real_engine.cold_start_seconds < 240
