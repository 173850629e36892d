"""Compliance over the wire: the official ``openai`` SDK against a live daphne (fake vLLM
replicas behind it), for the feature IDs whose other tests drive the stack in-process. Each test
names its ID; together with the live tests elsewhere every served ID has an SDK-level test."""

from __future__ import annotations

import json
from dataclasses import dataclass

import openai
import pytest
from cryptography.fernet import Fernet
from jsonschema import Draft202012Validator

from api.openapi.document import openapi_document
from engines.models import EngineReplica, ServedModel
from responses.requests.validation import INCLUDABLE
from testsupport.fake_vllm import FakeBehavior, FakeToolCall, FakeVllm
from testsupport.live_server import DaphneProcess

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Plain answer from the fake engine."
REASONING = "two plus two is four"
SUMMARY = "Added the numbers."


def _behavior(body) -> FakeBehavior | None:
    upstream = body.get("model")
    messages = body.get("messages") or []
    if upstream == "c-reason":
        # The summary call is given the reasoning to summarize as its last message.
        if messages and messages[-1].get("content") == REASONING:
            return FakeBehavior(text=SUMMARY)
        return FakeBehavior(reasoning=REASONING, text="4")
    if upstream == "c-tools":
        if any(message.get("role") == "tool" for message in messages):
            return FakeBehavior(text="Done.")
        return FakeBehavior(
            text="",
            tool_calls=[
                FakeToolCall(name="lookup", arguments='{"q": "a"}', call_id="call_c1"),
                FakeToolCall(name="lookup", arguments='{"q": "b"', call_id="call_c2"),  # invalid
            ],
        )
    return FakeBehavior(text=TEXT)


def assert_documented(answer, schema: str = "Response") -> None:
    """The wire body (the SDK keeps exactly the keys that were sent) matches the OpenAPI
    document's schema: bodies with function calls and reasoning, which fuzzing never makes."""
    document = openapi_document()
    validator = Draft202012Validator(
        {"components": document["components"], "$ref": f"#/components/schemas/{schema}"}
    )
    body = answer if isinstance(answer, dict) else answer.to_dict()
    errors = [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(body)
    ]
    assert not errors, errors


@dataclass
class Live:
    base_url: str
    alice: openai.OpenAI
    charlie: openai.OpenAI
    fakes: list[FakeVllm]
    text: str
    reason: str
    tools: str
    small: str


def _sdk(base_url: str, secret: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0, timeout=30,
                         **kwargs)  # fmt: skip


@pytest.fixture
def live(live_daphne, transactional_cast, fake_vllm_factory) -> Live:
    fakes = [fake_vllm_factory(), fake_vllm_factory()]
    for fake in fakes:
        fake.behavior_for = _behavior
    port = fakes[0].port
    names = {}
    for kind, extra in (
        ("text", {}),
        ("reason", {"reasoning_parser": "deepseek_r1"}),
        ("tools", {"tool_call_parser": "hermes"}),
        ("small", {"context_length": 64}),
    ):
        model = ServedModel.objects.create(
            name=f"c-{kind}-{port}", upstream_model=f"c-{kind}", **extra
        )
        replicas = fakes if kind == "text" else fakes[:1]
        for fake in replicas:
            EngineReplica.objects.create(model=model, base_url=fake.base_url)
        names[kind] = model.name
    made = Live(
        base_url=live_daphne,
        alice=_sdk(live_daphne, transactional_cast.alice.secret),
        charlie=_sdk(live_daphne, transactional_cast.charlie.secret),
        fakes=fakes,
        **names,
    )
    yield made
    made.alice.close()
    made.charlie.close()


def _chat_bodies(live: Live, upstream: str | None = None) -> list[dict]:
    return [
        record.body
        for fake in live.fakes
        for record in fake.chat_requests()
        if upstream is None or record.body.get("model") == upstream
    ]


@pytest.mark.compliance("H1")
def test_a_prompt_cache_key_sticks_to_one_replica_and_caches_are_per_organization(live):
    for _ in range(4):
        answer = live.alice.responses.create(model=live.text, input="hi", prompt_cache_key="k-1")
        assert answer.prompt_cache_key == "k-1"
    served = [len(fake.chat_requests()) for fake in live.fakes]
    assert sorted(served) == [0, 4], served
    # Other keys spread over both replicas (so the stickiness above is not one replica being
    # the only one up): 16 keys all hashing to one replica has a chance of 2 in 65,536.
    for index in range(16):
        live.alice.responses.create(model=live.text, input="hi", prompt_cache_key=f"other-{index}")
    assert all(len(fake.chat_requests()) > served[i] for i, fake in enumerate(live.fakes))
    live.charlie.responses.create(model=live.text, input="hi", prompt_cache_key="k-1")
    salts = {body.get("cache_salt") for body in _chat_bodies(live)}
    assert len(salts) == 2 and None not in salts  # one per organization


@pytest.mark.compliance("H2", "H3", "L1")
def test_reasoning_and_a_generated_summary_stream_through_the_sdk(live):
    with live.alice.responses.stream(
        model=live.reason, input="2+2?", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.reasoning_text.delta" in types
    assert "response.reasoning_summary_part.added" in types
    assert "response.reasoning_summary_text.delta" in types
    reasoning = next(item for item in final.output if item.type == "reasoning")
    assert reasoning.id.startswith("rs_")
    assert [part.text for part in reasoning.summary] == [SUMMARY]
    assert final.output_text == "4"
    assert_documented(live.alice.responses.retrieve(final.id))


@pytest.mark.compliance("H5")
def test_rate_limit_events_only_on_opt_in(live, transactional_cast):
    from quotas.services.limits import limits_set

    limits_set(organization=transactional_cast.alice.organization, requests_per_minute=100)

    def event_types(**kwargs):
        stream = live.alice.responses.create(model=live.text, input="hi", stream=True, **kwargs)
        return [event.type for event in stream]

    assert "response.rate_limits.updated" not in event_types()
    opted = event_types(extra_headers={"X-Rate-Limit-Events": "true"})
    assert opted.count("response.rate_limits.updated") == 2, opted


@pytest.mark.compliance("M1")
def test_the_azure_sdk_client_on_the_v1_form(live, transactional_cast):
    azure = openai.AzureOpenAI(
        base_url=f"{live.base_url}/openai/v1",
        api_key=transactional_cast.alice.secret,  # sent as the api-key header
        api_version="preview",
        max_retries=0,
    )
    response = azure.responses.with_raw_response.create(model=live.text, input="hi")
    assert response.http_request.headers["api-key"] == transactional_cast.alice.secret
    assert "authorization" not in response.http_request.headers
    assert response.parse().output_text == TEXT
    assert response.headers["x-request-id"]


@pytest.mark.compliance("M4")
def test_every_include_value_is_accepted_and_logprobs_arrive(live, transactional_cast):
    # reasoning.encrypted_content needs a reasoning encryption key, which a deployment with a
    # database URL (production, and these tests) only has when configured: the shared server
    # has none and refuses it naming the parameter; a server given a key accepts it.
    with pytest.raises(openai.BadRequestError) as no_key:
        live.alice.responses.create(
            model=live.text, input="hi", include=["reasoning.encrypted_content"]
        )
    assert no_key.value.body["param"] == "include"
    keyed = DaphneProcess(env={"REASONING_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    keyed.start()
    try:
        client = _sdk(keyed.base_url, transactional_cast.alice.secret)
        for value in INCLUDABLE:
            assert client.responses.create(model=live.text, input="hi", include=[value]).id
        client.close()
    finally:
        keyed.stop()
    with pytest.raises(openai.BadRequestError) as refused:
        live.alice.responses.create(model=live.text, input="hi", include=["nope"])
    assert refused.value.body["param"] == "include[0]"
    answer = live.alice.responses.create(
        model=live.text, input="hi", include=["message.output_text.logprobs"], top_logprobs=2
    )
    logprobs = answer.output[0].content[0].logprobs
    assert logprobs and all(len(lp.top_logprobs) == 2 for lp in logprobs)


@pytest.mark.compliance("M6")
def test_store_false_is_never_retrievable_nor_chainable(live):
    unstored = live.alice.responses.create(model=live.text, input="hi", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        live.alice.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError) as chained:
        live.alice.responses.create(model=live.text, input="more", previous_response_id=unstored.id)
    assert chained.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as background:
        live.alice.responses.create(model=live.text, input="hi", store=False, background=True)
    assert background.value.body["param"] == "background"
    stored = live.alice.responses.create(model=live.text, input="hi")
    assert stored.store is True and live.alice.responses.retrieve(stored.id).id == stored.id


@pytest.mark.compliance("L8")
def test_service_tiers_map_to_engine_priority_and_are_allowed_per_organization(
    live, transactional_cast
):
    answer = live.alice.responses.create(model=live.text, input="hi", service_tier="flex")
    assert answer.service_tier == "flex"
    priorities = [body.get("priority") for body in _chat_bodies(live)]
    assert priorities[-1] is not None
    acme = transactional_cast.alice.organization
    acme.allowed_service_tiers = ["default"]
    acme.save(update_fields=["allowed_service_tiers"])
    with pytest.raises(openai.BadRequestError) as refused:
        live.alice.responses.create(model=live.text, input="hi", service_tier="priority")
    assert refused.value.body["param"] == "service_tier"


def _tool_outputs(client: openai.OpenAI, response_id: str, outputs, key: str | None = None):
    return client.post(
        f"/responses/{response_id}/tool_outputs",
        body={"tool_outputs": outputs},
        cast_to=dict,
        options={"headers": {"Idempotency-Key": key}} if key else {},
    )


TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]


@pytest.mark.compliance("E6", "E7", "C1")
def test_tool_outputs_duplicates_idempotency_and_invalid_arguments(live):
    waiting = live.alice.responses.create(model=live.tools, input="look up", tools=TOOLS)
    calls = [item for item in waiting.output if item.type == "function_call"]
    # E7: the model's invalid JSON arguments arrive as they are, in a well-formed item.
    assert [call.arguments for call in calls] == ['{"q": "a"}', '{"q": "b"']
    assert_documented(waiting)
    first = _tool_outputs(live.alice, waiting.id, [{"call_id": "call_c1", "output": "A"}], key="k1")
    assert first["status"] == "awaiting_tool_outputs" and first["pending_call_ids"] == ["call_c2"]
    assert_documented(first, "ResponseSession")
    # The same key again: the first answer, not a duplicate.
    assert (
        _tool_outputs(live.alice, waiting.id, [{"call_id": "call_c1", "output": "A"}], "k1")
        == first
    )
    with pytest.raises(openai.ConflictError) as duplicate:
        _tool_outputs(live.alice, waiting.id, [{"call_id": "call_c1", "output": "again"}])
    assert duplicate.value.code == "duplicate_tool_output"
    done = _tool_outputs(live.alice, waiting.id, [{"call_id": "call_c2", "output": "B"}], key="k2")
    assert done["previous_response_id"] == waiting.id and done["status"] == "completed"
    assert_documented(done)
    assert (
        _tool_outputs(live.alice, waiting.id, [{"call_id": "call_c2", "output": "B"}], "k2")["id"]
        == done["id"]
    )


@pytest.mark.compliance("E7")
def test_invalid_json_arguments_in_input_items_are_kept_as_history(live):
    answer = live.alice.responses.create(
        model=live.text,
        tools=TOOLS,
        input=[
            {"role": "user", "content": "look up"},
            {"type": "function_call", "call_id": "call_x", "name": "lookup", "arguments": "{oops"},
            {"type": "function_call_output", "call_id": "call_x", "output": "nothing"},
        ],
    )
    assert answer.status == "completed"
    items = live.alice.responses.input_items.list(answer.id, order="asc").data
    assert [item.type for item in items][1] == "function_call" and items[1].arguments == "{oops"


@pytest.mark.compliance("E8")
def test_truncation_over_a_small_context_window(live):
    long_input = " ".join(["word"] * 80)
    with pytest.raises(openai.BadRequestError) as refused:
        live.alice.responses.create(model=live.small, input=long_input)
    assert refused.value.code == "context_length_exceeded"
    first = live.alice.responses.create(model=live.small, input="short one", truncation="auto")
    chained = live.alice.responses.create(
        model=live.small, input=" ".join(["more"] * 60), previous_response_id=first.id,
        truncation="auto",
    )  # fmt: skip
    assert chained.status == "completed" and chained.truncation == "auto"
    body = json.dumps(_chat_bodies(live, "c-small")[-1]["messages"])
    assert "short one" not in body  # the oldest turn was dropped to fit
