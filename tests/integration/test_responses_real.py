"""The Responses API end to end: the official openai SDK → daphne → the platform → the real CPU
vLLM (SmolLM2-135M). Mechanics only: a 135M model's words are not asserted, its shapes are."""

from __future__ import annotations

import threading

import openai
import pytest

from engines.models import EngineReplica, ServedModel
from responses.models import StoredResponse
from testsupport.conformance import check_response
from testsupport.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": False,
}


@pytest.fixture
def client(real_engine, live_daphne, transactional_cast):
    model = ServedModel.objects.create(
        name=real_engine.served_model_name,
        upstream_model=real_engine.served_model_name,
        context_length=4096,
        tool_call_parser="hermes",
    )
    EngineReplica.objects.create(model=model, base_url=real_engine.base_url)
    return openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )


def test_a_text_turn(client, real_engine):
    response = client.responses.create(
        model=real_engine.served_model_name, input="Say hello.", max_output_tokens=16
    )
    check_response(response.model_dump(mode="json", exclude_unset=True))
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


def test_a_streamed_turn_with_the_stream_helper(client, real_engine):
    # A short question and room to finish: get_final_response() needs response.completed.
    with client.responses.stream(
        model=real_engine.served_model_name,
        input="Answer with one word: is the sky blue?",
        max_output_tokens=400,
        temperature=0,
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response() if deltas else None
    assert deltas, "no text streamed"
    assert final is not None and final.output_text == "".join(deltas)


def test_a_tool_round_trip_then_retrieve_items_and_delete(client, real_engine):
    model = real_engine.served_model_name
    first = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"  # arguments: whatever the tiny model made
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],
        input=[
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}
        ],
        max_output_tokens=32,
    )
    assert second.previous_response_id == first.id
    assert second.status in ("completed", "incomplete")

    assert client.responses.retrieve(second.id).id == second.id
    items = list(client.responses.input_items.list(second.id))
    assert [item.type for item in items] == ["function_call_output"]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_cancel_a_running_response(client, real_engine, live_daphne, transactional_cast):
    model = real_engine.served_model_name
    result: dict = {}

    def run() -> None:
        try:
            result["response"] = client.responses.create(
                model=model,
                input="Write a very long story about a lighthouse.",
                max_output_tokens=1500,
            )
        except openai.APIError as exc:  # pragma: no cover - reported below
            result["error"] = exc

    generated_before = real_engine.metric("vllm:generation_tokens_total")
    worker = threading.Thread(target=run)
    worker.start()
    running = wait_until(
        lambda: StoredResponse.objects.filter(status="in_progress").first(),
        within=60,
        every=0.2,
        what="the response starts",
    )
    wait_until(  # it is generating: a few tokens made
        lambda: real_engine.metric("vllm:generation_tokens_total") >= generated_before + 5,
        within=60,
        every=0.2,
        what="the engine generates",
    )
    cancelled = client.responses.cancel(running.public_id)
    assert cancelled.status == "cancelled"
    worker.join(timeout=30)
    assert not worker.is_alive()
    stored = StoredResponse.objects.get(pk=running.pk)
    assert stored.status == "cancelled"
    # vLLM stopped generating for it: nothing is running upstream any more.
    wait_until(
        lambda: real_engine.metric("vllm:num_requests_running") == 0,
        within=5,
        every=0.2,
        what="vLLM drops the cancelled request",
    )
