"""``Idempotency-Key`` on ``POST /v1/responses`` (reliability issue, item 3): per organization,
the same key and body give the first response again (a stream replays its events), concurrent
duplicates run one generation, another body is refused; on ``…/tool_outputs`` a used key with
another body is refused instead of replaying the first answer."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import AsyncClient

from quotas.models import UsageRecord
from responses.models import StoredResponse
from testsupport.scripted_engine import build_script
from testsupport.sse import parse_sse, streamed_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("E6")]


async def create(persona, *, key: str | None, raw: str | None = None, **body):
    body.setdefault("model", "scripted")
    headers = dict(persona.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await AsyncClient().post(
        "/v1/responses",
        raw if raw is not None else json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


async def body_of(response) -> bytes:
    if response.streaming:
        return await streamed_body(response)
    return response.content


async def test_same_key_and_body_return_the_first_response(transactional_cast, engine):
    alice = transactional_cast.alice
    first = await create(alice, key="k-1", input="hi")
    assert first.status_code == 200
    # Same body, other key order and whitespace: the same request.
    again = await create(alice, key="k-1", raw='{"input":  "hi", "model": "scripted"}')
    assert again.status_code == 200
    assert again.json() == first.json()
    assert engine.started == 1
    assert await StoredResponse.objects.acount() == 1
    assert await UsageRecord.objects.acount() == 1  # billed once


async def test_same_key_with_another_body_is_refused(transactional_cast, engine):
    alice = transactional_cast.alice
    assert (await create(alice, key="k-2", input="hi")).status_code == 200
    other = await create(alice, key="k-2", input="something else")
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["param"] == "Idempotency-Key"
    assert engine.started == 1


async def test_keys_belong_to_one_organization(transactional_cast, engine):
    await create(transactional_cast.alice, key="shared", input="hi")
    theirs = await create(transactional_cast.charlie, key="shared", input="other")
    assert theirs.status_code == 200  # Globex's key space is its own
    assert engine.started == 2


async def test_concurrent_duplicates_run_one_generation(transactional_cast, engine):
    engine.delay = 0.02
    alice = transactional_cast.alice
    answers = await asyncio.gather(*[create(alice, key="k-3", input="hi") for _ in range(8)])
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["id"] for a in answers}) == 1
    assert all(a.json()["status"] == "completed" for a in answers)
    assert engine.started == 1
    assert await StoredResponse.objects.acount() == 1
    assert await UsageRecord.objects.acount() == 1


@pytest.mark.parametrize("store", [True, False])
async def test_a_streamed_first_answer_is_replayed_as_its_events(transactional_cast, engine, store):
    alice = transactional_cast.alice
    first = parse_sse(await body_of(await create(alice, key="k-4", input="hi", stream=True,
                                                 store=store)))  # fmt: skip
    assert first[-1]["type"] == "response.completed"
    again = await create(alice, key="k-4", input="hi", stream=True, store=store)
    assert again["Content-Type"].startswith("text/event-stream")
    replayed = parse_sse(await body_of(again))
    assert replayed == first
    assert engine.started == 1


async def test_store_false_json_is_replayed_from_the_key(transactional_cast, engine):
    alice = transactional_cast.alice
    first = await create(alice, key="k-5", input="hi", store=False)
    again = await create(alice, key="k-5", input="hi", store=False)
    assert again.json() == first.json()
    assert engine.started == 1


async def test_a_refused_request_gives_the_key_back(transactional_cast, engine):
    alice = transactional_cast.alice
    refused = await create(alice, key="k-6", model="no-such-model", input="hi")
    assert refused.status_code == 404
    # Nothing ran, so the key is free: even another body may use it now.
    assert (await create(alice, key="k-6", input="hi")).status_code == 200


async def test_an_engine_failure_is_replayed_as_the_same_error(transactional_cast, engine):
    engine.fail_after = 1
    alice = transactional_cast.alice
    first = await create(alice, key="k-7", input="hi")
    assert first.status_code >= 500
    engine.fail_after = None
    again = await create(alice, key="k-7", input="hi")
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert engine.started == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_a_key_that_cannot_be_a_key_is_a_400(transactional_cast, engine, key):
    response = await create(transactional_cast.alice, key=key, input="hi")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert engine.started == 0


async def test_tool_outputs_refuse_a_used_key_with_another_body(transactional_cast, engine):
    alice = transactional_cast.alice
    engine.script = build_script(tool_calls=[("f", "{}", "call_a"), ("f", "{}", "call_b")])
    created = await create(alice, key=None, input="hi", tools=[{"type": "function", "name": "f"}])
    response_id = created.json()["id"]
    engine.script = build_script(text="Done.")

    async def submit(outputs):
        return await AsyncClient().post(
            f"/v1/responses/{response_id}/tool_outputs",
            json.dumps({"tool_outputs": outputs}),
            content_type="application/json",
            headers={**alice.headers, "Idempotency-Key": "t-1"},
        )

    first = await submit([{"call_id": "call_a", "output": "1"}])
    assert first.status_code == 202
    assert (await submit([{"call_id": "call_a", "output": "1"}])).status_code == 202  # replay
    other = await submit([{"call_id": "call_b", "output": "2"}])
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_concurrent_streamed_duplicates_get_the_same_events(transactional_cast, engine):
    engine.delay = 0.02
    alice = transactional_cast.alice

    async def one():
        answer = await create(alice, key="k-8", input="hi", stream=True)
        return parse_sse(await body_of(answer))

    streams = await asyncio.gather(*[one() for _ in range(4)])
    assert all(events == streams[0] for events in streams)
    assert streams[0][-1]["type"] == "response.completed"
    assert engine.started == 1


async def test_concurrent_duplicates_of_a_failing_request_get_its_error(transactional_cast, engine):
    engine.delay = 0.02
    engine.fail_after = 2
    alice = transactional_cast.alice
    answers = await asyncio.gather(*[create(alice, key="k-9", input="hi") for _ in range(4)])
    assert len({a.status_code for a in answers}) == 1 and answers[0].status_code >= 500
    assert all(a.json() == answers[0].json() for a in answers)
    assert engine.started == 1
