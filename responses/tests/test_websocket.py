"""WebSocket mode in-process: the ASGI application (config.asgi) driven by Channels'
WebsocketCommunicator, with the scripted engine behind the model."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator

from quotas.models import UsageRecord
from responses.models import StoredResponse
from testsupport.conformance import check_stream
from testsupport.scripted_engine import build_script
from testsupport.stored_responses import wait_for_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("R8")]


def application():
    from config.asgi import application

    return application


async def connected(persona, path="/v1/responses", header="authorization"):
    value = f"Bearer {persona.secret}" if header == "authorization" else persona.secret
    communicator = WebsocketCommunicator(
        application(), path, headers=[(header.encode(), value.encode())]
    )
    accepted, _ = await communicator.connect(timeout=10)
    assert accepted
    return communicator


async def send(communicator, **body):
    body.setdefault("model", "scripted")
    await communicator.send_to(text_data=json.dumps({"type": "response.create", **body}))


async def receive(communicator) -> dict:
    return json.loads(await communicator.receive_from(timeout=10))


async def turn(communicator) -> list[dict]:
    """Frames until the terminal event (or a top-level error frame)."""
    events = []
    while True:
        event = await receive(communicator)
        events.append(event)
        if event["type"] in ("response.completed", "response.incomplete", "response.failed"):
            return events
        if event["type"] == "error" and "sequence_number" not in event:
            return events


async def test_the_handshake_needs_a_valid_key(transactional_cast):
    for headers in ([], [(b"authorization", b"Bearer sk-rp-wrong")]):
        communicator = WebsocketCommunicator(application(), "/v1/responses", headers=headers)
        accepted, _ = await communicator.connect(timeout=10)
        assert not accepted
    # Read-only keys cannot create responses: refused before accept too.
    communicator = WebsocketCommunicator(
        application(),
        "/v1/responses",
        headers=[(b"authorization", f"Bearer {transactional_cast.bob.secret}".encode())],
    )
    assert not (await communicator.connect(timeout=10))[0]
    # Any other path is refused.
    communicator = WebsocketCommunicator(
        application(),
        "/v1/models",
        headers=[(b"authorization", f"Bearer {transactional_cast.alice.secret}".encode())],
    )
    assert not (await communicator.connect(timeout=10))[0]


async def test_turns_stream_the_sse_events_and_chain_without_storage(transactional_cast, engine):
    communicator = await connected(transactional_cast.alice, "/openai/v1/responses", "api-key")
    engine.script = lambda request: build_script(text=f"turn {len(request.messages)}")
    previous = None
    for number in range(3):
        await send(communicator, input=f"question {number}", store=False,
                   previous_response_id=previous)  # fmt: skip
        events = await turn(communicator)
        check_stream(events)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        final = events[-1]["response"]
        assert final["status"] == "completed"
        assert final["store"] is False
        previous = final["id"]
    # The third turn saw the whole connection-local chain: 2 earlier turns of 2 messages + 1.
    assert [m["content"] for m in engine.last_request.messages] == [
        "question 0",
        "turn 1",
        "question 1",
        "turn 3",
        "question 2",
    ]
    assert not await StoredResponse.objects.aexists()
    # Usage is settled per turn, exactly like over HTTP.
    assert await UsageRecord.objects.acount() == 3
    # A store=false id that is not the connection's last response is unknown.
    await send(communicator, input="x", store=False, previous_response_id="resp_unknown")
    error = await receive(communicator)
    assert error["type"] == "error" and error["status"] == 404
    assert error["error"]["code"] == "previous_response_not_found"
    await communicator.disconnect()


async def test_stored_turns_and_a_warm_up(transactional_cast, engine):
    communicator = await connected(transactional_cast.alice)
    await send(communicator, instructions="Be brief.", input="context only", generate=False)
    warm = await turn(communicator)
    assert [e["type"] for e in warm] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert warm[-1]["response"]["output"] == []
    assert engine.started == 0  # nothing was generated
    warm_id = warm[-1]["response"]["id"]
    await send(communicator, input="now answer", previous_response_id=warm_id)
    answer = await turn(communicator)
    assert answer[-1]["response"]["status"] == "completed"
    assert [m["content"] for m in engine.last_request.messages] == ["context only", "now answer"]
    stored = await wait_for_status(answer[-1]["response"]["id"], {"completed"}, within=10)
    assert stored.previous_response_id is not None
    await communicator.disconnect()


async def test_errors_are_error_events_and_the_connection_stays_usable(transactional_cast, engine):
    communicator = await connected(transactional_cast.alice)
    await communicator.send_to(text_data="not json")
    assert (await receive(communicator))["error"]["code"] == "invalid_json"
    await communicator.send_to(text_data=json.dumps({"type": "session.update"}))
    unknown = await receive(communicator)
    assert unknown["status"] == 400 and unknown["error"]["code"] == "unknown_event_type"
    await send(communicator, input="x", temperature=9)
    invalid = await receive(communicator)
    assert invalid["status"] == 400
    assert invalid["error"]["param"] == "temperature"
    assert invalid["error"]["type"] == "invalid_request_error"
    await send(communicator, input="x", background=True)
    assert (await receive(communicator))["error"]["param"] == "background"
    await send(communicator, model="nope", input="x")
    assert (await receive(communicator))["error"]["code"] == "model_not_found"
    # A failure inside the stream: the WebSocket error shape, then response.failed.
    engine.fail_after = 1
    await send(communicator, input="x")
    events = await turn(communicator)
    error = next(e for e in events if e["type"] == "error")
    assert error["error"]["message"] and isinstance(error["sequence_number"], int)
    assert events[-1]["type"] == "response.failed"
    engine.fail_after = None
    await send(communicator, input="x", stream=True, stream_id="lane-1")
    events = await turn(communicator)
    assert events[-1]["type"] == "response.completed"
    assert {e["stream_id"] for e in events} == {"lane-1"}
    await communicator.disconnect()


async def test_one_response_in_flight_and_disconnect_cancels_it(transactional_cast, engine):
    engine.script = build_script(text=" ".join(f"w{i}" for i in range(400)))
    engine.delay = 0.02
    communicator = await connected(transactional_cast.alice)
    await send(communicator, input="long")
    first = await receive(communicator)
    assert first["type"] == "response.created"
    await send(communicator, input="second")
    while True:  # events of the running turn keep coming; the refusal is among them
        event = await receive(communicator)
        if event["type"] == "error":
            break
    assert event["status"] == 409 and event["error"]["code"] == "concurrent_request"
    await communicator.disconnect()
    assert await engine.wait_until(lambda e: e.cancelled == 1, within=1.0)  # E5
    await wait_for_status(first["response"]["id"], {"incomplete"}, within=10)
    assert engine.started == 1


async def test_the_connection_warns_then_closes_at_its_maximum_lifetime(
    transactional_cast, engine, settings
):
    settings.WEBSOCKET_MAX_LIFETIME_SECONDS = 1.0
    settings.WEBSOCKET_EXPIRY_WARNING_SECONDS = 0.5
    communicator = await connected(transactional_cast.alice)
    warning = await receive(communicator)
    assert warning["type"] == "error" and warning["error"]["code"] == "connection_expiring"
    closed = await communicator.receive_output(timeout=10)
    assert closed["type"] == "websocket.close" and closed["code"] == 1000
    await communicator.disconnect()


async def test_a_turn_on_a_conversation(transactional_cast, engine):
    from asgiref.sync import sync_to_async

    from conversations.models import ConversationItem
    from conversations.services import conversation_create
    from tenants.principal import ApiPrincipal

    alice = transactional_cast.alice
    principal = ApiPrincipal(api_key=alice.api_key, organization=alice.organization, project=None)
    conversation = await sync_to_async(conversation_create)(
        principal=principal, metadata={},
        items=({"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Remember 42."}]},),
    )  # fmt: skip
    communicator = await connected(alice)
    await send(communicator, input="What number?", conversation=conversation.public_id)
    events = await turn(communicator)
    assert events[-1]["response"]["conversation"] == {"id": conversation.public_id}
    assert [m["content"] for m in engine.last_request.messages] == ["Remember 42.", "What number?"]
    await communicator.disconnect()  # waits for the turn to be stored
    assert await ConversationItem.objects.filter(conversation=conversation).acount() == 3
