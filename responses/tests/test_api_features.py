"""Feature paths of POST /v1/responses through the full stack: structured output, reasoning and
summaries (H2/H3), logprobs (M4), parallel tool calls (E3), bad tool arguments (E7), truncation
(E8), keep-alives (L4)."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from engines.runtime.types import (
    Finish,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from testsupport.conformance import check_response, check_stream
from testsupport.scripted_engine import build_script
from testsupport.sse import parse_sse, streamed_body, streamed_events

pytestmark = pytest.mark.django_db(transaction=True)


async def post(persona, **body):
    body.setdefault("model", "scripted")
    return await AsyncClient().post(
        "/v1/responses", json.dumps(body), content_type="application/json", headers=persona.headers
    )


async def test_json_schema_goes_to_guided_decoding(transactional_cast, engine):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    engine.script = build_script(text='{"city": "Oslo"}')
    body = (
        await post(
            transactional_cast.alice,
            input="Where?",
            text={
                "format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
            },
        )
    ).json()
    assert json.loads(body["output"][0]["content"][0]["text"]) == {"city": "Oslo"}
    assert body["text"]["format"]["type"] == "json_schema"
    assert engine.last_request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }


async def test_json_object_format(transactional_cast, engine):
    await post(transactional_cast.alice, input="x", text={"format": {"type": "json_object"}})
    assert engine.last_request.response_format == {"type": "json_object"}


@pytest.mark.compliance("H2", "H3")
async def test_reasoning_with_a_generated_summary(transactional_cast, engine):
    calls = []

    def script(request):
        calls.append(request)
        if request.request_id.endswith("-summary"):
            return build_script(text="Checked the sum.")
        return build_script(reasoning="two plus two is four", text="4")

    engine.script = script
    response = await post(
        transactional_cast.alice,
        input="2+2?",
        reasoning={"effort": "low", "summary": "auto"},
        stream=True,
    )
    events = await streamed_events(response)
    check_stream(events)
    types = [e["type"] for e in events]
    assert "response.reasoning_text.delta" in types
    assert "response.reasoning_summary_text.delta" in types
    final = events[-1]["response"]
    reasoning = next(item for item in final["output"] if item["type"] == "reasoning")
    assert reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Checked the sum."}]
    assert reasoning["content"][0]["text"] == "two plus two is four"
    # The summary came from a second engine call that was given the reasoning, not a copy of it.
    assert len(calls) == 2
    assert calls[1].messages[-1]["content"] == "two plus two is four"
    assert calls[0].reasoning_effort == "low"
    # The summary call's tokens are part of the response's usage (its three output tokens as
    # reasoning) and so of what the ledger bills.
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 5 + 3
    from quotas.models import UsageRecord

    billed = await UsageRecord.objects.aget(response_id=final["id"])
    assert billed.total_tokens == final["usage"]["total_tokens"]


@pytest.mark.compliance("H2")
async def test_reasoning_without_summary_makes_one_call(transactional_cast, engine):
    engine.script = build_script(reasoning="think", text="done")
    body = (await post(transactional_cast.alice, input="x", reasoning={"effort": "high"})).json()
    check_response(body)
    assert engine.started == 1
    assert body["output"][0]["type"] == "reasoning"
    assert body["output"][0]["summary"] == []


@pytest.mark.compliance("M4")
async def test_logprobs_when_included(transactional_cast, engine):
    logprob = TokenLogprob(token="Hi", logprob=-0.1, top_logprobs=[TopLogprob("Hi", -0.1)])
    engine.script = [TextDelta("Hi", logprobs=[logprob]), Finish("stop"), Usage(3, 1)]
    body = (
        await post(
            transactional_cast.alice,
            input="x",
            include=["message.output_text.logprobs"],
            top_logprobs=1,
        )
    ).json()
    part = body["output"][0]["content"][0]
    assert part["logprobs"][0]["token"] == "Hi"
    assert part["logprobs"][0]["top_logprobs"][0]["token"] == "Hi"
    assert engine.last_request.logprobs is True and engine.last_request.top_logprobs == 1
    plain = (await post(transactional_cast.alice, input="x")).json()
    assert plain["output"][0]["content"][0]["logprobs"] == []
    assert engine.last_request.logprobs is False


@pytest.mark.compliance("E3")
async def test_parallel_tool_calls_stream_as_separate_items(transactional_cast, engine):
    tools = [
        {"type": "function", "name": n, "parameters": {"type": "object"}, "strict": False}
        for n in ("a", "b")
    ]
    engine.script = build_script(tool_calls=[("a", '{"x": 1}'), ("b", '{"y": 2}')])
    events = await streamed_events(
        await post(transactional_cast.alice, input="x", tools=tools, stream=True)
    )
    check_stream(events)
    calls = [i for i in events[-1]["response"]["output"] if i["type"] == "function_call"]
    assert [c["name"] for c in calls] == ["a", "b"]
    assert len({c["call_id"] for c in calls}) == 2
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [e["arguments"] for e in done] == ['{"x": 1}', '{"y": 2}']


@pytest.mark.compliance("E7")
async def test_invalid_tool_arguments_from_the_model_are_kept_well_formed(
    transactional_cast, engine
):
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}]
    engine.script = build_script(tool_calls=[("f", '"just a string')])
    body = (await post(transactional_cast.alice, input="x", tools=tools)).json()
    check_response(body)
    assert body["output"][0]["arguments"] == '"just a string'
    # …and sending that call back as history is accepted too (E7).
    call = body["output"][0]
    follow = await post(
        transactional_cast.alice,
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}],
        previous_response_id=body["id"],
        tools=tools,
    )
    assert follow.status_code == 200


async def test_tool_choice_forms_reach_the_engine(transactional_cast, engine):
    tools = [
        {"type": "function", "name": n, "parameters": {"type": "object"}, "strict": False}
        for n in ("a", "b")
    ]
    await post(
        transactional_cast.alice,
        input="x",
        tools=tools,
        tool_choice={"type": "function", "name": "b"},
    )
    assert engine.last_request.tool_choice == {"type": "function", "function": {"name": "b"}}
    await post(
        transactional_cast.alice,
        input="x",
        tools=tools,
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "a"}],
        },
    )
    assert engine.last_request.tool_choice == "required"
    assert [t["function"]["name"] for t in engine.last_request.tools] == ["a"]
    await post(transactional_cast.alice, input="x", tools=tools, tool_choice="none")
    assert engine.last_request.tool_choice == "none"


@pytest.mark.compliance("E8")
async def test_truncation_disabled_refuses_an_oversized_prompt(
    transactional_cast, engine, scripted_model
):
    scripted_model.context_length = 256
    await scripted_model.asave()
    huge = "word " * 2000
    response = await post(transactional_cast.alice, input=huge)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert engine.started == 0


@pytest.mark.compliance("E8")
async def test_truncation_auto_drops_the_oldest_turns(transactional_cast, engine, scripted_model):
    scripted_model.context_length = 300
    scripted_model.default_max_output_tokens = 50
    await scripted_model.asave()
    turns = []
    for index in range(6):
        turns.append({"role": "user", "content": f"question {index} " + "pad " * 60})
        turns.append({"role": "assistant", "content": f"answer {index}"})
    turns.append({"role": "user", "content": "latest question"})
    response = await post(transactional_cast.alice, input=turns, truncation="auto")
    assert response.status_code == 200, response.content
    sent = engine.last_request.messages
    assert sent[-1]["content"] == "latest question"
    assert len(sent) < len(turns)
    assert sent[0]["content"].startswith("question ")  # a whole turn was dropped, not half


@pytest.mark.compliance("L4")
async def test_keepalive_comments_while_the_engine_is_silent(transactional_cast, engine, settings):
    settings.SSE_KEEPALIVE_SECONDS = 0.1
    engine.first_delay = 0.6
    response = await post(transactional_cast.alice, input="x", stream=True)
    raw = await streamed_body(response)
    before_first_delta = raw.split(b"response.output_item.added")[0]
    assert before_first_delta.count(b": keep-alive\n\n") >= 2
    check_stream(parse_sse(raw))


@pytest.mark.compliance("L8")
async def test_service_tier_actually_used_is_reported(transactional_cast, engine):
    body = (await post(transactional_cast.alice, input="x", service_tier="flex")).json()
    assert body["service_tier"] == "flex"
    assert engine.last_request.service_tier == "flex"
    body = (await post(transactional_cast.alice, input="x", service_tier="auto")).json()
    assert body["service_tier"] == "default"
