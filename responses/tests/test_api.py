"""The Responses endpoints in-process (AsyncClient through the full middleware stack), with the
scripted engine behind the model: create (JSON and SSE), chains, tools, stored operations."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from engines.runtime.types import EngineUnavailable, Finish, TextDelta, Usage
from responses.models import StoredResponse
from testsupport.conformance import check_response, check_stream
from testsupport.scripted_engine import build_script
from testsupport.sse import streamed_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def create(client, persona, **body):
    body.setdefault("model", "scripted")
    return await client.post(
        "/v1/responses", json.dumps(body), content_type="application/json", headers=persona.headers
    )


async def stream_events(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/event-stream")
    return await streamed_events(response)


async def test_a_text_turn_returns_a_complete_response(client, transactional_cast, engine):
    response = await create(client, transactional_cast.alice, input="Say hello")
    assert response.status_code == 200
    body = response.json()
    check_response(body)
    assert body["status"] == "completed"
    assert body["output"][0]["content"][0]["text"] == "Hello there, friend."
    assert body["usage"]["input_tokens"] == 10
    assert body["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert body["service_tier"] == "default"
    assert response["x-request-id"] == engine.last_request.request_id  # L7
    assert engine.last_request.messages == [{"role": "user", "content": "Say hello"}]


async def test_a_streamed_turn_follows_the_official_sequence(client, transactional_cast, engine):
    response = await create(client, transactional_cast.alice, input="hi", stream=True)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    events = await stream_events(response)
    check_stream(events)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    # The stored copy is the terminal event's response, and replays the same events (L6).
    rid = events[0]["response"]["id"]
    stored = await client.get(f"/v1/responses/{rid}", headers=transactional_cast.alice.headers)
    assert stored.json() == events[-1]["response"]
    replay = await stream_events(
        await client.get(
            f"/v1/responses/{rid}?stream=true", headers=transactional_cast.alice.headers
        )
    )
    assert replay == events
    tail = await stream_events(
        await client.get(
            f"/v1/responses/{rid}?stream=true&starting_after=4",
            headers=transactional_cast.alice.headers,
        )
    )
    assert tail == events[5:]


async def test_instructions_and_parameters_reach_the_engine(client, transactional_cast, engine):
    await create(
        client,
        transactional_cast.alice,
        input=[{"role": "user", "content": "hi"}],
        instructions="Be brief.",
        temperature=0.3,
        top_p=0.9,
        max_output_tokens=64,
        prompt_cache_key="conv-1",
        service_tier="priority",
        metadata={"ticket": "42"},
    )
    sent = engine.last_request
    assert sent.messages[0] == {"role": "system", "content": "Be brief."}
    assert (sent.temperature, sent.top_p, sent.max_tokens) == (0.3, 0.9, 64)
    assert sent.prompt_cache_key == "conv-1"
    assert sent.service_tier == "priority"
    assert sent.organization_id == transactional_cast.alice.organization.public_id


async def test_a_tool_round_trip_via_previous_response_id(client, transactional_cast, engine):
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": False,
        }
    ]
    engine.script = build_script(tool_calls=[("get_weather", '{"city": "Paris"}')])
    first = (await create(client, transactional_cast.alice, input="Weather?", tools=tools)).json()
    call = first["output"][0]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert call["call_id"].startswith("call_") and call["id"].startswith("fc_")
    assert json.loads(call["arguments"]) == {"city": "Paris"}

    engine.script = build_script(text="It is sunny.")
    second = await create(
        client,
        transactional_cast.alice,
        previous_response_id=first["id"],
        tools=tools,
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
    )
    assert second.status_code == 200, second.content
    assert second.json()["previous_response_id"] == first["id"]
    messages = engine.last_request.messages
    assert messages[0] == {"role": "user", "content": "Weather?"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["id"] == call["call_id"]
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"}


async def test_instructions_are_not_carried_along_a_chain(client, transactional_cast, engine):
    first = (await create(client, transactional_cast.alice, input="a", instructions="X")).json()
    await create(client, transactional_cast.alice, input="b", previous_response_id=first["id"])
    assert all(m["role"] != "system" for m in engine.last_request.messages)


@pytest.mark.compliance("M6")
async def test_store_false_is_never_retrievable_or_chainable(client, transactional_cast, engine):
    body = (await create(client, transactional_cast.alice, input="hi", store=False)).json()
    assert body["store"] is False
    missing = await client.get(
        f"/v1/responses/{body['id']}", headers=transactional_cast.alice.headers
    )
    assert missing.status_code == 404
    chained = await create(
        client, transactional_cast.alice, input="x", previous_response_id=body["id"]
    )
    assert chained.status_code == 404
    assert chained.json()["error"]["code"] == "previous_response_not_found"
    assert not await StoredResponse.objects.filter(public_id=body["id"]).aexists()


async def test_max_output_tokens_gives_incomplete(client, transactional_cast, engine):
    engine.script = [TextDelta(text="cut"), Finish(reason="length"), Usage(5, 16)]
    body = (await create(client, transactional_cast.alice, input="hi", max_output_tokens=16)).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_an_engine_failure_is_an_error_and_a_failed_response(
    client, transactional_cast, engine
):
    engine.fail_after = 2
    engine.error = EngineUnavailable("no replica could be reached")
    response = await create(client, transactional_cast.alice, input="hi")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "engine_unavailable"
    stored = await StoredResponse.objects.aget(organization=transactional_cast.alice.organization)
    assert stored.status == "failed"

    events = await stream_events(
        await create(client, transactional_cast.alice, input="hi", stream=True)
    )
    check_stream(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "engine_unavailable"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi"}, "model", "missing_required_parameter"),
        ({"model": "scripted", "input": "hi", "temperature": 3}, "temperature", None),
        ({"model": "scripted", "input": "hi", "bogus": 1}, "bogus", "unknown_parameter"),
        (
            {"model": "scripted", "input": "hi", "tools": [{"type": "web_search"}]},
            "tools[0].type",
            None,
        ),
        ({"model": "scripted", "input": [{"type": "nope"}]}, "input[0].type", None),
        ({"model": "scripted", "input": "hi", "include": ["nope"]}, "include[0]", None),
        (
            {"model": "scripted", "input": "hi", "background": True, "store": False},
            "background",
            None,
        ),
        ({"model": "scripted", "input": "hi", "service_tier": "gold"}, "service_tier", None),
    ],
)
async def test_invalid_requests_are_400_naming_the_param(
    client, transactional_cast, engine, body, param, code
):
    response = await client.post(
        "/v1/responses",
        json.dumps(body),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert not await StoredResponse.objects.aexists()  # nothing half-written


@pytest.mark.compliance("L8")
async def test_a_tier_the_organization_may_not_use_is_refused(client, transactional_cast, engine):
    organization = transactional_cast.alice.organization
    organization.allowed_service_tiers = ["auto", "default", "flex"]
    await organization.asave()
    response = await create(client, transactional_cast.alice, input="hi", service_tier="priority")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "service_tier"


async def test_unknown_model_is_model_not_found(client, transactional_cast, engine):
    response = await create(client, transactional_cast.alice, model="gpt-nope", input="hi")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_malformed_json_body(client, transactional_cast, engine):
    response = await client.post(
        "/v1/responses",
        b'{"model":',
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


async def test_delete_removes_it_everywhere(client, transactional_cast, engine):
    headers = transactional_cast.alice.headers
    rid = (await create(client, transactional_cast.alice, input="hi")).json()["id"]
    deleted = await client.delete(f"/v1/responses/{rid}", headers=headers)
    assert deleted.json() == {"id": rid, "object": "response", "deleted": True}
    for path in (f"/v1/responses/{rid}", f"/v1/responses/{rid}/input_items"):
        assert (await client.get(path, headers=headers)).status_code == 404
    assert (await client.delete(f"/v1/responses/{rid}", headers=headers)).status_code == 404
    chained = await create(client, transactional_cast.alice, input="x", previous_response_id=rid)
    assert chained.status_code == 404


async def test_input_items_paginate(client, transactional_cast, engine):
    headers = transactional_cast.alice.headers
    items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    rid = (await create(client, transactional_cast.alice, input=items)).json()["id"]
    page = (
        await client.get(f"/v1/responses/{rid}/input_items?limit=2&order=asc", headers=headers)
    ).json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["m0", "m1"]
    assert page["has_more"] is True and page["object"] == "list"
    after = page["last_id"]
    rest = (
        await client.get(
            f"/v1/responses/{rid}/input_items?limit=10&order=asc&after={after}", headers=headers
        )
    ).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["m2", "m3", "m4"]
    assert rest["has_more"] is False
    default = (await client.get(f"/v1/responses/{rid}/input_items", headers=headers)).json()
    assert default["data"][0]["content"][0]["text"] == "m4"  # desc by default
    bad = await client.get(f"/v1/responses/{rid}/input_items?limit=101", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_input_tokens_are_counted_by_the_engine(client, transactional_cast, engine):
    engine.token_count = 42
    response = await client.post(
        "/v1/responses/input_tokens",
        json.dumps({"model": "scripted", "input": "count me"}),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert response.json() == {"object": "response.input_tokens", "input_tokens": 42}


async def test_cancel_a_finished_foreground_response_is_refused(client, transactional_cast, engine):
    rid = (await create(client, transactional_cast.alice, input="hi")).json()["id"]
    response = await client.post(
        f"/v1/responses/{rid}/cancel", headers=transactional_cast.alice.headers
    )
    assert response.status_code == 400


async def test_cancel_a_running_response(client, transactional_cast, engine):
    import asyncio

    engine.script = build_script(text=" ".join(["word"] * 200))
    engine.delay = 0.02
    headers = transactional_cast.alice.headers
    running = asyncio.create_task(create(client, transactional_cast.alice, input="go"))
    assert await engine.wait_until(lambda e: e.yielded >= 3, within=5)
    stored = await StoredResponse.objects.aget(organization=transactional_cast.alice.organization)
    cancelled = await client.post(f"/v1/responses/{stored.public_id}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    await running
    assert await engine.wait_until(lambda e: e.cancelled == 1, within=2)
    again = await client.post(f"/v1/responses/{stored.public_id}/cancel", headers=headers)
    assert again.json()["status"] == "cancelled"  # idempotent


async def test_another_organization_sees_nothing(client, transactional_cast, engine):
    """Tenant isolation on every endpoint: Charlie (Globex) probes Alice's (Acme) response."""
    rid = (await create(client, transactional_cast.alice, input="secret")).json()["id"]
    charlie = transactional_cast.charlie.headers
    probes = [
        await client.get(f"/v1/responses/{rid}", headers=charlie),
        await client.get(f"/v1/responses/{rid}?stream=true", headers=charlie),
        await client.get(f"/v1/responses/{rid}/input_items", headers=charlie),
        await client.post(f"/v1/responses/{rid}/cancel", headers=charlie),
        await client.delete(f"/v1/responses/{rid}", headers=charlie),
        await create(client, transactional_cast.charlie, input="x", previous_response_id=rid),
        await client.post(
            "/v1/responses/input_tokens",
            json.dumps({"model": "scripted", "input": "x", "previous_response_id": rid}),
            content_type="application/json",
            headers=charlie,
        ),
    ]
    assert [p.status_code for p in probes] == [404] * len(probes)
    assert all("secret" not in p.content.decode() for p in probes)
    still = await client.get(f"/v1/responses/{rid}", headers=transactional_cast.alice.headers)
    assert still.status_code == 200


async def test_a_read_only_key_can_read_but_not_create(client, transactional_cast, engine):
    rid = (await create(client, transactional_cast.alice, input="hi")).json()["id"]
    bob = transactional_cast.bob
    assert (await create(client, bob, input="hi")).status_code == 403
    assert (await client.get(f"/v1/responses/{rid}", headers=bob.headers)).status_code == 200
    assert (await client.delete(f"/v1/responses/{rid}", headers=bob.headers)).status_code == 403
