"""The official ``openai`` SDK drives the Conversations API against a live daphne (another
process) with a fake vLLM replica behind the model: create, add items, a response with
``conversation``, and listing items with the SDK's own cursor pagination."""

from __future__ import annotations

import openai
import pytest

from engines.models import EngineReplica, ServedModel
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("conversations")]


# The answer names how many messages the prompt had: the conversation's items show up in it.
upstream = fake_vllm_fixture(
    behavior_for=lambda body: FakeBehavior(
        text=f"I read {len(body.get('messages') or [])} messages."
    )
)


@pytest.fixture
def sdk(live_daphne, transactional_cast, upstream):
    model = ServedModel.objects.create(name=f"conv-{upstream.port}", upstream_model="up-conv")
    EngineReplica.objects.create(model=model, base_url=upstream.base_url)
    client = openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )
    client.model_name = model.name
    return client


def test_the_sdk_drives_a_conversation(sdk, upstream, transactional_cast, live_daphne):
    conversation = sdk.conversations.create(
        metadata={"user": "ada"},
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}],
    )
    assert conversation.id.startswith("conv_")
    assert conversation.metadata == {"user": "ada"}
    added = sdk.conversations.items.create(
        conversation.id,
        items=[{"type": "message", "role": "assistant", "content": "Nice to meet you, Ada."}],
    )
    assert added.data[0].role == "assistant"

    response = sdk.responses.create(
        model=sdk.model_name, input="What is my name?", conversation=conversation.id
    )
    assert response.conversation.id == conversation.id
    assert response.output_text == "I read 3 messages."
    prompt = upstream.chat_requests()[-1].body["messages"]
    assert [m["content"] for m in prompt] == [
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "What is my name?",
    ]

    # A second turn through the object form, streamed with the SDK's helper.
    with sdk.responses.stream(
        model=sdk.model_name, input="And again?", conversation={"id": conversation.id}
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text == "I read 5 messages."

    # Six items; the SDK follows has_more/last_id across pages of two by itself.
    items = list(sdk.conversations.items.list(conversation.id, limit=2, order="asc"))
    assert [item.type for item in items] == ["message"] * 6
    assert [item.role for item in items] == ["user", "assistant"] * 3
    assert items[3].id == response.output[0].id
    page = sdk.conversations.items.list(conversation.id, limit=2)
    assert page.has_more and page.last_id == page.data[-1].id
    assert page.data[0].id == final.output[0].id  # newest first by default

    fetched = sdk.conversations.items.retrieve(items[0].id, conversation_id=conversation.id)
    assert fetched.content[0].text == "My name is Ada."
    after_delete = sdk.conversations.items.delete(items[0].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    updated = sdk.conversations.update(conversation.id, metadata={"user": "ada", "turns": "2"})
    assert sdk.conversations.retrieve(conversation.id).metadata == updated.metadata

    with pytest.raises(openai.BadRequestError) as both:
        sdk.responses.create(
            model=sdk.model_name,
            input="x",
            conversation=conversation.id,
            previous_response_id=response.id,
        )
    assert both.value.param == "conversation"

    stranger = openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.charlie.secret, max_retries=0
    )
    with pytest.raises(openai.NotFoundError):
        stranger.conversations.retrieve(conversation.id)

    deleted = sdk.conversations.delete(conversation.id)
    assert deleted.deleted and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conversation.id)
