"""``POST /v1/responses/{id}/tool_outputs`` and response sessions (C1, C3, E2, E3, E6, E8), in
process with the scripted engine: partial and concurrent submissions, 409/400/410, idempotent
retries (a streamed first answer is replayed as SSE), and a continuation that fails or cannot
start reopening the session for the outputs. Deadlines through a real worker are in
test_background and test_redis_restart; submitters in two processes, and a continuation lost
with its web process, in test_tool_outputs_multiprocess."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient
from django.utils import timezone

from responses.models import ResponseSession, StoredResponse
from responses.services.sessions import session_expire
from testsupport.scripted_engine import build_script
from testsupport.sse import streamed_events

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
]


async def create(persona, **body):
    body.setdefault("model", "scripted")
    return await AsyncClient().post(
        "/v1/responses", json.dumps(body), content_type="application/json", headers=persona.headers
    )


async def submit(persona, response_id, outputs, *, stream=False, key=None):
    headers = dict(persona.headers)
    if key:
        headers["Idempotency-Key"] = key
    return await AsyncClient().post(
        f"/v1/responses/{response_id}/tool_outputs",
        json.dumps({"tool_outputs": outputs, "stream": stream}),
        content_type="application/json",
        headers=headers,
    )


async def two_calls(engine, persona) -> dict:
    engine.script = build_script(
        tool_calls=[
            ("get_weather", '{"city": "Paris"}', "call_paris"),
            ("get_weather", '{"city": "Oslo"}', "call_oslo"),
        ]
    )
    first = (await create(persona, input="Weather in Paris and Oslo?", tools=TOOLS)).json()
    engine.script = build_script(text="Sunny in Paris, snowing in Oslo.")
    return first


def out(call_id: str, output: str = "ok") -> dict:
    return {"call_id": call_id, "output": output}


@pytest.mark.compliance("C1", "C3")
async def test_partial_submissions_then_the_completing_one_gets_the_continuation(
    transactional_cast, engine
):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    session = await sync_to_async(ResponseSession.objects.get)(head_response__public_id=first["id"])
    assert session.status == "awaiting_tool_outputs"
    assert session.pending_call_ids == ["call_paris", "call_oslo"]

    partial = await submit(alice, first["id"], [out("call_oslo", "snow")])
    assert partial.status_code == 202
    assert partial.json()["pending_call_ids"] == ["call_paris"]
    assert partial.json()["status"] == "awaiting_tool_outputs"

    done = await submit(alice, first["id"], [out("call_paris", "sun")])
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["status"] == "completed" and body["previous_response_id"] == first["id"]
    assert body["output"][0]["content"][0]["text"] == "Sunny in Paris, snowing in Oslo."
    messages = engine.last_request.messages
    assert [m for m in messages if m["role"] == "tool"] == [
        {"role": "tool", "tool_call_id": "call_paris", "content": "sun"},
        {"role": "tool", "tool_call_id": "call_oslo", "content": "snow"},
    ]
    assert engine.last_request.tools  # the tools were carried over
    session = await sync_to_async(ResponseSession.objects.get)(pk=session.pk)
    assert session.status == "completed" and session.head_response_id != first["id"]
    assert session.token_footprint > 0


@pytest.mark.compliance("C1")
async def test_the_continuation_can_stream(transactional_cast, engine):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    response = await submit(alice, first["id"], [out("call_paris"), out("call_oslo")], stream=True)
    events = await streamed_events(response)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["previous_response_id"] == first["id"]


@pytest.mark.compliance("C1", "E6")
async def test_unknown_duplicate_and_idempotent_retry(transactional_cast, engine):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    unknown = await submit(alice, first["id"], [out("call_nope")])
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "tool_outputs[0].call_id"

    accepted = await submit(alice, first["id"], [out("call_paris")], key="k-1")
    assert accepted.status_code == 202
    duplicate = await submit(alice, first["id"], [out("call_paris")])
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "duplicate_tool_output"
    retried = await submit(alice, first["id"], [out("call_paris")], key="k-1")
    assert retried.status_code == 202 and retried.json() == accepted.json()

    completed = await submit(alice, first["id"], [out("call_oslo")], key="k-2")
    assert completed.status_code == 200
    again = await submit(alice, first["id"], [out("call_oslo")], key="k-2")
    assert again.status_code == 200 and again.json()["id"] == completed.json()["id"]
    count = await sync_to_async(
        StoredResponse.objects.filter(previous_response__public_id=first["id"]).count
    )()
    assert count == 1  # the retry did not run a second continuation


@pytest.mark.compliance("E3", "C3")
async def test_concurrent_submitters_are_both_recorded_and_one_continuation_runs(
    transactional_cast, engine
):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    answers = await asyncio.gather(
        submit(alice, first["id"], [out("call_paris")]),
        submit(alice, first["id"], [out("call_oslo")]),
    )
    assert sorted(a.status_code for a in answers) == [200, 202]
    continuations = await sync_to_async(list)(
        StoredResponse.objects.filter(previous_response__public_id=first["id"])
    )
    assert len(continuations) == 1
    tool_messages = [m for m in engine.last_request.messages if m["role"] == "tool"]
    assert {m["tool_call_id"] for m in tool_messages} == {"call_paris", "call_oslo"}


@pytest.mark.compliance("E2", "C3")
async def test_after_the_deadline_submissions_are_gone_and_the_chain_stays_readable(
    transactional_cast, engine
):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    await sync_to_async(
        ResponseSession.objects.filter(head_response__public_id=first["id"]).update
    )(deadline=timezone.now() - timedelta(seconds=1))
    assert await sync_to_async(session_expire)() == 1
    gone = await submit(alice, first["id"], [out("call_paris")])
    assert gone.status_code == 410
    readable = await AsyncClient().get(f"/v1/responses/{first['id']}", headers=alice.headers)
    assert readable.status_code == 200


async def test_another_organization_cannot_submit(transactional_cast, engine):
    first = await two_calls(engine, transactional_cast.alice)
    response = await submit(transactional_cast.charlie, first["id"], [out("call_paris")])
    assert response.status_code == 404


@pytest.mark.compliance("E8")
async def test_chain_length_cap_is_a_clear_400(transactional_cast, engine):
    alice = transactional_cast.alice
    org = alice.organization
    org.max_chain_length = 2
    await sync_to_async(org.save)()
    first = (await create(alice, input="one")).json()
    second = (await create(alice, input="two", previous_response_id=first["id"])).json()
    third = await create(alice, input="three", previous_response_id=second["id"])
    assert third.status_code == 400
    assert third.json()["error"]["code"] == "chain_length_exceeded"


@pytest.mark.compliance("E8")
async def test_stored_bytes_cap_is_a_clear_400(transactional_cast, engine):
    import json

    from responses.models import StoredResponse as Row

    alice = transactional_cast.alice
    org = alice.organization
    first = (await create(alice, input="one")).json()
    # What counts against the cap: the stored input items and the final body.
    row = await Row.objects.aget(public_id=first["id"])
    assert row.stored_bytes == len(json.dumps(row.input_items)) + len(json.dumps(row.body))
    org.max_stored_bytes = 10
    await sync_to_async(org.save)()
    refused = await create(alice, input="two")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "storage_limit_exceeded"
    assert (await create(alice, input="two", store=False)).status_code == 200


def test_purge_responses_honours_retention_and_dry_run(transactional_cast, capsys):
    from responses.models import StoredResponse as Row

    org = transactional_cast.alice.organization
    old = Row.objects.create(
        public_id="resp_old",
        organization=org,
        model="m",
        status="completed",
        body={},
        created_at=timezone.now() - timedelta(days=31),
    )
    Row.objects.create(
        public_id="resp_new", organization=org, model="m", status="completed", body={}
    )
    Row.objects.create(
        public_id="resp_running",
        organization=org,
        model="m",
        status="in_progress",
        body={},
        created_at=timezone.now() - timedelta(days=31),
    )
    call_command("purge_responses", "--dry-run")
    assert "Would delete 1 responses" in capsys.readouterr().out
    assert Row.objects.filter(pk=old.pk).exists()
    call_command("purge_responses")
    assert set(Row.objects.values_list("public_id", flat=True)) == {"resp_new", "resp_running"}


@pytest.mark.compliance("E6")
async def test_an_idempotent_retry_of_a_streamed_completion_replays_the_stream(
    transactional_cast, engine
):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    both = [out("call_paris"), out("call_oslo")]
    streamed = await submit(alice, first["id"], both, stream=True, key="k-s")
    assert streamed["content-type"].startswith("text/event-stream")
    events = await streamed_events(streamed)
    assert events[-1]["type"] == "response.completed"

    retried = await submit(alice, first["id"], both, stream=True, key="k-s")
    assert retried.status_code == 200
    assert retried["content-type"].startswith("text/event-stream")
    assert await streamed_events(retried) == events
    # Another body under the same key is refused, not answered with the first answer.
    as_json = await submit(alice, first["id"], both, key="k-s")
    assert as_json.status_code == 422
    assert as_json.json()["error"]["code"] == "idempotency_key_reused"
    assert engine.started == 2  # the first turn and one continuation: nothing ran again
    continuations = StoredResponse.objects.filter(previous_response__public_id=first["id"])
    assert await sync_to_async(continuations.count)() == 1


async def test_a_failed_continuation_reopens_the_session_for_the_outputs(
    transactional_cast, engine
):
    alice = transactional_cast.alice
    first = await two_calls(engine, alice)
    engine.fail_after = 2  # the engine fails mid-answer
    outputs = [out("call_paris", "sun"), out("call_oslo", "snow")]
    failed = await submit(alice, first["id"], outputs, key="k-f")
    assert failed.status_code == 502, failed.content
    assert failed.json()["error"]["type"] == "server_error"

    session = await sync_to_async(ResponseSession.objects.get)(root_response__public_id=first["id"])
    head = await sync_to_async(lambda: session.head_response.public_id)()
    assert (session.status, head) == ("awaiting_tool_outputs", first["id"])
    assert session.submitted_outputs == {} and session.continuation_id is None
    assert session.deadline > timezone.now()
    lost = await sync_to_async(StoredResponse.objects.get)(previous_response__public_id=first["id"])
    assert lost.status == "failed"  # kept, readable

    again = await submit(alice, first["id"], outputs, key="k-f")
    assert (again.status_code, again.json()) == (502, failed.json())  # the first answer, again
    other = await submit(alice, first["id"], [out("call_paris"), out("call_oslo")], key="k-f")
    assert other.status_code == 422  # another body under a used key

    engine.fail_after = None
    partial = await submit(alice, first["id"], [out("call_oslo", "snow")])
    assert partial.status_code == 202 and partial.json()["pending_call_ids"] == ["call_paris"]
    done = await submit(alice, first["id"], [out("call_paris", "sun")])
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "completed"
    session = await sync_to_async(ResponseSession.objects.get)(pk=session.pk)
    assert session.status == "completed" and session.head_response_id != lost.pk


async def test_a_continuation_that_cannot_start_reopens_the_session_and_frees_the_key(
    transactional_cast, engine
):
    alice = transactional_cast.alice
    org = alice.organization
    first = await two_calls(engine, alice)
    org.max_chain_length = 1  # the continuation would be turn 2: refused before it starts
    await sync_to_async(org.save)()
    refused = await submit(alice, first["id"], [out("call_paris"), out("call_oslo")], key="k-c")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "chain_length_exceeded"
    session = await sync_to_async(ResponseSession.objects.get)(root_response__public_id=first["id"])
    assert session.status == "awaiting_tool_outputs" and session.submitted_outputs == {}

    org.max_chain_length = 10
    await sync_to_async(org.save)()
    # Nothing happened the first time: the same key runs the request anew (not 409 forever).
    done = await submit(alice, first["id"], [out("call_paris"), out("call_oslo")], key="k-c")
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "completed"
