"""Stream dialects (L3) through the whole stack: golden sequences per dialect, how a request
chooses its dialect, ``[DONE]`` (L5), and replays that speak the reader's dialect.

The golden sequences come from one scripted turn that exercises every renamed event: raw
reasoning with a generated summary (H2, H3), text, a function call (C2), encrypted reasoning
(H4) and, for legacy, the rate-limit events (H5). Failures (C4) have their own golden."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient

from engines.runtime.types import EngineError
from responses.streaming.encoder import DIALECTS
from tenants.models import STREAM_DIALECTS
from testsupport.conformance import check_stream
from testsupport.scripted_engine import ScriptedEngine, build_script
from testsupport.sse import parse_sse, streamed_body

pytestmark = pytest.mark.django_db(transaction=True)

LOOKUP = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}

# Every event type of the Open Responses specification (schema/events.tsp, release
# 2026-04-24; the reasoning summary events' enum values are reasoning_summary_text.*).
OPEN_RESPONSES_EVENTS = frozenset(
    {
        "response.created", "response.queued", "response.in_progress", "response.completed",
        "response.failed", "response.incomplete", "response.output_item.added",
        "response.output_item.done", "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done", "response.content_part.added",
        "response.content_part.done", "response.output_text.delta", "response.output_text.done",
        "response.refusal.delta", "response.refusal.done", "response.reasoning.delta",
        "response.reasoning.done", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.output_text.annotation.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "error",
    }
)  # fmt: skip

GOLDEN_OPENAI = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.reasoning_text.delta",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
    "response.content_part.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]

GOLDEN_OPEN_RESPONSES = [
    {
        "response.reasoning_text.delta": "response.reasoning.delta",
        "response.reasoning_text.done": "response.reasoning.done",
    }.get(name, name)
    for name in GOLDEN_OPENAI
]

GOLDEN_LEGACY = [
    "response.created",
    "response.in_progress",
    "response.rate_limits.updated",
    "response.output_item.added",
    "response.content_part.added",
    "response.reasoning.delta",
    "response.reasoning.delta",
    "response.reasoning.done",
    "response.content_part.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.tool_call.delta",
    "response.tool_call.delta",
    "response.reasoning.summary.added",
    "response.reasoning.summary.delta",
    "response.reasoning.summary.delta",
    "response.reasoning.summary.delta",
    "response.reasoning.summary.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
    "response.additional_context",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
    "response.rate_limits.updated",
]


def _script(request):
    if request.request_id.endswith("-summary"):
        return build_script(text="Weighed both options.")
    return build_script(
        reasoning="Compare first.", text="Yes.", tool_calls=[("lookup", '{"q": "x"}')]
    )


@pytest.fixture
def turn_engine(scripted_model):
    from engines.runtime.registry import engine_override

    engine = ScriptedEngine(_script)
    with engine_override(scripted_model.name, engine):
        yield engine


async def _create(persona, *, headers=None, **body):
    body = {
        "model": "scripted",
        "input": "Which one?",
        "stream": True,
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [LOOKUP],
    } | body
    return await AsyncClient().post(
        "/v1/responses",
        json.dumps(body),
        content_type="application/json",
        headers={**persona.headers, **(headers or {})},
    )


async def _raw(response) -> bytes:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    return await streamed_body(response)


def _types(events):
    return [event["type"] for event in events]


def test_the_organization_choices_are_the_registered_dialects():
    assert set(STREAM_DIALECTS) == set(DIALECTS)


@pytest.mark.compliance("L1")
@pytest.mark.compliance("L3")
@pytest.mark.compliance("H2")
async def test_openai_golden_sequence_validates_against_the_sdk(
    transactional_cast, turn_engine, reasoning_keys
):
    raw = await _raw(await _create(transactional_cast.alice))
    events = parse_sse(raw)
    assert _types(events) == GOLDEN_OPENAI
    check_stream(events)  # every event against the SDK's types (L1)
    assert not raw.endswith(b"data: [DONE]\n\n")  # never by default (L5)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


@pytest.mark.compliance("L3")
@pytest.mark.compliance("L5")
async def test_open_responses_golden_sequence_follows_the_specification(
    transactional_cast, turn_engine, reasoning_keys
):
    raw = await _raw(
        await _create(transactional_cast.alice, headers={"X-Responses-Dialect": "open-responses"})
    )
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")  # "The terminal event MUST be [DONE]"
    events = parse_sse(raw)
    assert _types(events) == GOLDEN_OPEN_RESPONSES
    assert set(_types(events)) <= OPEN_RESPONSES_EVENTS
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e for e in events if e["type"] == "response.reasoning.delta"]
    assert "".join(e["delta"] for e in deltas) == "Compare first."
    assert {"item_id", "output_index", "content_index"} <= set(deltas[0])


@pytest.mark.compliance("L3")
@pytest.mark.compliance("C2")
@pytest.mark.compliance("H2")
@pytest.mark.compliance("H3")
@pytest.mark.compliance("H4")
@pytest.mark.compliance("H5")
@pytest.mark.compliance("L5")
async def test_legacy_golden_sequence_uses_the_report_names(
    transactional_cast, turn_engine, reasoning_keys
):
    raw = await _raw(
        await _create(transactional_cast.alice, headers={"X-Responses-Dialect": "legacy"})
    )
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = parse_sse(raw)
    assert _types(events) == GOLDEN_LEGACY
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    (context,) = [e for e in events if e["type"] == "response.additional_context"]
    reasoning_done = events[events.index(context) - 1]
    assert context["encrypted_content"] == reasoning_done["item"]["encrypted_content"]
    assert context["item_id"] == reasoning_done["item"]["id"]
    limits = [e["rate_limits"] for e in events if e["type"] == "response.rate_limits.updated"]
    assert [r["name"] for r in limits[0]] == ["requests", "tokens"]  # on without the opt-in


async def _failing_turn(persona, dialect):
    from engines.runtime.registry import engine_override

    engine = ScriptedEngine(
        build_script(text="one two three"), fail_after=2, error=EngineError("boom")
    )
    with engine_override("scripted", engine):
        return parse_sse(
            await _raw(
                await _create(
                    persona, headers={"X-Responses-Dialect": dialect}, reasoning=None, include=[]
                )
            )
        )


@pytest.mark.compliance("C4")
@pytest.mark.compliance("L3")
async def test_a_failure_is_an_error_event_then_response_failed_in_every_dialect(
    transactional_cast, scripted_model
):
    alice = transactional_cast.alice
    # The engine's own words ("boom") stay in the logs; the client reads the platform's.
    shown = "The model's engine failed while generating this response."
    openai = await _failing_turn(alice, "openai")
    check_stream(openai)
    assert _types(openai)[-2:] == ["error", "response.failed"]
    assert openai[-2]["message"] == shown and "error" not in openai[-2]  # flat

    nested = await _failing_turn(alice, "open-responses")
    assert _types(nested)[-2:] == ["error", "response.failed"]
    assert nested[-2]["error"] == {
        "type": "server_error",
        "code": "server_error",
        "message": shown,
        "param": None,
    }

    legacy = await _failing_turn(alice, "legacy")
    assert _types(legacy)[-3:] == [
        "response.error",
        "response.failed",
        "response.rate_limits.updated",
    ]
    assert legacy[-3]["message"] == shown


@pytest.mark.compliance("L3")
@pytest.mark.compliance("L6")
async def test_a_stored_stream_replays_and_resumes_in_the_readers_dialect(
    transactional_cast, turn_engine, reasoning_keys
):
    alice = transactional_cast.alice
    created = parse_sse(await _raw(await _create(alice)))
    rid = created[0]["response"]["id"]

    async def replay(dialect, query=""):
        return await _raw(
            await AsyncClient().get(
                f"/v1/responses/{rid}?stream=true{query}",
                headers={**alice.headers, "X-Responses-Dialect": dialect},
            )
        )

    assert parse_sse(await replay("openai")) == created
    legacy_raw = await replay("legacy")
    assert legacy_raw.endswith(b"data: [DONE]\n\n")
    legacy = parse_sse(legacy_raw)
    # Generation and numbering are the openai stream's; only the names differ (and no event
    # that was never generated, such as H5's, appears in a replay).
    assert [e["sequence_number"] for e in legacy] == [e["sequence_number"] for e in created]
    assert "response.tool_call.delta" in _types(legacy)
    resumed = parse_sse(await replay("open-responses", "&starting_after=4"))
    assert [e["sequence_number"] for e in resumed] == list(range(5, len(created)))
    assert _types(resumed) == GOLDEN_OPEN_RESPONSES[5:]


@pytest.mark.compliance("L3")
@pytest.mark.compliance("L5")
async def test_the_header_wins_over_the_organization_default_which_wins_over_the_server(
    transactional_cast, turn_engine, reasoning_keys, settings
):
    alice = transactional_cast.alice
    settings.RESPONSES_DIALECT = "open-responses"
    assert "response.reasoning.delta" in _types(parse_sse(await _raw(await _create(alice))))

    await sync_to_async(call_command)("setdialect", "acme", "legacy")
    assert "response.tool_call.delta" in _types(parse_sse(await _raw(await _create(alice))))

    raw = await _raw(await _create(alice, headers={"X-Responses-Dialect": "openai"}))
    assert _types(parse_sse(raw)) == GOLDEN_OPENAI and not raw.endswith(b"[DONE]\n\n")

    # [DONE] on request in the openai dialect (L5).
    raw = await _raw(
        await _create(alice, headers={"X-Responses-Dialect": "openai", "X-Responses-Done": "true"})
    )
    assert raw.endswith(b"\n\ndata: [DONE]\n\n") and _types(parse_sse(raw)) == GOLDEN_OPENAI

    await sync_to_async(call_command)("setdialect", "acme", "default")
    settings.RESPONSES_DIALECT = "openai"
    assert _types(parse_sse(await _raw(await _create(alice)))) == GOLDEN_OPENAI


@pytest.mark.compliance("L3")
async def test_an_unknown_dialect_header_is_a_400_on_every_endpoint(
    transactional_cast, turn_engine, reasoning_keys
):
    alice = transactional_cast.alice
    bad = {**alice.headers, "X-Responses-Dialect": "klingon"}
    answers = [
        await _create(alice, headers={"X-Responses-Dialect": "klingon"}),
        await AsyncClient().get("/v1/responses/resp_abc?stream=true", headers=bad),
        await AsyncClient().post(
            "/v1/responses/resp_abc/tool_outputs",
            "{}",
            content_type="application/json",
            headers=bad,
        ),
    ]
    for answer in answers:
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "X-Responses-Dialect" and "klingon" in error["message"]


# --- over a real socket ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def thinking_upstream():
    from testsupport.fake_vllm import FakeBehavior, FakeVllm

    fake = FakeVllm(behavior=FakeBehavior(reasoning="Think it over.", text="Done."))
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.compliance("L3")
@pytest.mark.compliance("L5")
def test_every_dialect_end_to_end_on_a_live_server(
    live_daphne, transactional_cast, thinking_upstream
):
    import httpx
    from openai._streaming import SSEDecoder

    from engines.models import EngineReplica, ServedModel

    model = ServedModel.objects.create(
        name=f"dialect-{thinking_upstream.port}", upstream_model="up", reasoning_parser="qwen3"
    )
    EngineReplica.objects.create(model=model, base_url=thinking_upstream.base_url)
    expected_reasoning = {
        "openai": "response.reasoning_text.delta",
        "open-responses": "response.reasoning.delta",
        "legacy": "response.reasoning.delta",
    }
    for dialect, reasoning_delta in expected_reasoning.items():
        with httpx.stream(
            "POST",
            f"{live_daphne}/v1/responses",
            json={"model": model.name, "input": "hi", "stream": True},
            headers={**transactional_cast.alice.headers, "X-Responses-Dialect": dialect},
            timeout=30,
        ) as answer:
            assert answer.status_code == 200
            raw = b"".join(answer.iter_bytes())
        frames = list(SSEDecoder().iter_bytes(iter([raw])))  # the SDK's own decoder
        assert (frames[-1].data == "[DONE]") is (dialect != "openai")
        data_frames = [frame for frame in frames if frame.data != "[DONE]"]
        events = [frame.json() for frame in data_frames]
        assert all(
            frame.event == event["type"] for frame, event in zip(data_frames, events, strict=True)
        )
        assert reasoning_delta in _types(events)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        if dialect == "openai":
            check_stream(events)
