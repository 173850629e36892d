"""WebSocket mode with the official SDK's client (``client.responses.connect()``) against a live
daphne, a fake vLLM replica behind the model: a three-turn ``store=false`` session, a warm-up,
and a client that leaves mid-response (the upstream request is aborted)."""

from __future__ import annotations

import openai
import pytest
from websockets.exceptions import InvalidStatus

from engines.models import EngineReplica, ServedModel
from quotas.models import UsageRecord
from responses.models import StoredResponse
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture
from testsupport.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("R8")]

SLOW = " ".join(f"word{i}" for i in range(400))


def _behavior(body):
    if body.get("model") == "up-slow":
        return FakeBehavior(text=SLOW, delay=0.02)
    return FakeBehavior(text=f"Turn with {len(body.get('messages') or [])} messages.")


upstream = fake_vllm_fixture(behavior_for=_behavior)


@pytest.fixture
def sdk(live_daphne, transactional_cast, upstream):
    names = {}
    for kind in ("text", "slow"):
        model = ServedModel.objects.create(name=f"ws-{kind}-{upstream.port}",
                                           upstream_model=f"up-{kind}")  # fmt: skip
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    client = openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )
    client.models_by_kind = names
    return client


def _settled(count: int) -> None:
    """Wait until the server has settled ``count`` turns: a terminal event reaches the client
    just before the server stores the outcome and settles usage."""
    wait_until(
        lambda: UsageRecord.objects.exclude(status=UsageRecord.Status.RESERVED).count() >= count,
        within=10,
        what="turns are settled",
    )


def _until_terminal(connection) -> list:
    events = []
    for event in connection:
        events.append(event)
        if event.type in ("response.completed", "response.incomplete", "response.failed", "error"):
            return events
    raise AssertionError("connection closed before a terminal event")


def test_three_store_false_turns_over_one_connection(sdk, upstream):
    model = sdk.models_by_kind["text"]
    with sdk.responses.connect() as connection:
        # A warm-up without output, then three turns chained on the connection's cache.
        connection.response.create(model=model, instructions="Be brief.", input="Hi.",
                                   store=False, generate=False)  # fmt: skip
        warm = _until_terminal(connection)
        assert [e.type for e in warm] == [
            "response.created",
            "response.in_progress",
            "response.completed",
        ]
        previous = warm[-1].response.id
        for number in range(3):
            connection.response.create(
                model=model, input=f"Question {number}", store=False,
                previous_response_id=previous,
            )  # fmt: skip
            events = _until_terminal(connection)
            assert events[0].type == "response.created"
            assert [e.sequence_number for e in events] == list(range(len(events)))
            final = events[-1].response
            assert final.status == "completed"
            # "Hi." + 2 messages per earlier turn + this question (instructions are not
            # carried over to a continuation, as over HTTP)
            assert final.output_text == f"Turn with {1 + 2 * number + 1} messages."
            deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            assert deltas == final.output_text
            previous = final.id
    _settled(4)  # billed like HTTP turns: the warm-up and three turns
    assert not StoredResponse.objects.exists()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(previous)


def test_errors_arrive_as_events(sdk):
    with sdk.responses.connect() as connection:
        connection.response.create(model="no-such-model", input="x")
        error = _until_terminal(connection)[-1]
        assert error.type == "error"
        assert error.status == 404 and error.error.code == "model_not_found"
        connection.response.create(model=sdk.models_by_kind["text"], input="x")
        assert _until_terminal(connection)[-1].type == "response.completed"
    _settled(1)


def test_a_bad_key_is_refused_at_the_handshake(live_daphne, transactional_cast):
    client = openai.OpenAI(base_url=f"{live_daphne}/v1", api_key="sk-rp-wrong", max_retries=0)
    with pytest.raises(InvalidStatus) as refused, client.responses.connect(max_retries=0):
        pass
    assert refused.value.response.status_code == 403


def test_leaving_mid_response_aborts_the_engine_request(sdk, upstream):
    upstream.reset()
    model = sdk.models_by_kind["slow"]
    with sdk.responses.connect() as connection:
        connection.response.create(model=model, input="talk for a long time")
        response_id = None
        for event in connection:
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta":
                break
    # E5, as over HTTP: the engine request is closed within a second of the client leaving.
    assert upstream.wait_until(lambda fake: fake.aborted_streams == 1, within=1.0)
    wait_until(
        lambda: StoredResponse.objects.get(public_id=response_id).status != "in_progress",
        within=10,
        what="the turn ends",
    )
    assert StoredResponse.objects.get(public_id=response_id).status == "incomplete"
    _settled(1)
