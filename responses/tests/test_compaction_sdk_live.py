"""A compaction round trip with the official SDK (``client.responses.compact``) against a live
daphne and a fake vLLM replica."""

from __future__ import annotations

import openai
import pytest

from engines.models import EngineReplica, ServedModel
from responses.services.compaction import SUMMARY_HEADER, SUMMARY_INSTRUCTIONS
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("R7")]

SUMMARY = "The user is Ada; she likes sailing."


upstream = fake_vllm_fixture(
    behavior_for=lambda body: FakeBehavior(
        text=SUMMARY if body["messages"][0]["content"] == SUMMARY_INSTRUCTIONS else "Noted."
    )
)


def test_the_sdk_compacts_and_continues_from_the_compaction(
    live_daphne, transactional_cast, upstream
):
    model = ServedModel.objects.create(name=f"compact-{upstream.port}", upstream_model="up")
    EngineReplica.objects.create(model=model, base_url=upstream.base_url)
    client = openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )
    first = client.responses.create(model=model.name, input="I am Ada and I like sailing.")
    raw = client.responses.with_raw_response.compact(
        model=model.name, previous_response_id=first.id
    )
    compacted = raw.parse()
    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output] == ["message", "compaction"]
    assert compacted.usage.output_tokens > 0
    item = compacted.output[-1]
    assert item.id.startswith("cmp_") and SUMMARY not in item.encrypted_content

    follow = client.responses.create(
        model=model.name,
        store=False,
        input=[
            # As sent on the wire (the SDK types the user messages as output items).
            *raw.http_response.json()["output"],
            {"role": "user", "content": "What do I like?"},
        ],
    )
    assert follow.output_text == "Noted."
    assert upstream.chat_requests()[-1].body["messages"] == [
        {"role": "user", "content": "I am Ada and I like sailing."},
        {"role": "user", "content": SUMMARY_HEADER + SUMMARY},
        {"role": "user", "content": "What do I like?"},
    ]
    with pytest.raises(openai.BadRequestError) as no_model:
        client.post("/responses/compact", body={"input": "x"}, cast_to=object)
    assert no_model.value.param == "model"
