"""A prompt-template response through the official SDK against a live daphne."""

from __future__ import annotations

import openai
import pytest

from engines.models import EngineReplica, ServedModel
from prompts.services import prompt_create
from tenants.models import Project
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("prompt")]


upstream = fake_vllm_fixture(behavior=FakeBehavior(text="Ahoy, Ada!"))


def test_the_sdk_creates_a_response_from_a_prompt(live_daphne, transactional_cast, upstream):
    model = ServedModel.objects.create(name=f"prompt-{upstream.port}", upstream_model="up")
    EngineReplica.objects.create(model=model, base_url=upstream.base_url)
    project = Project.objects.get(organization=transactional_cast.alice.organization,
                                  name="Default project")  # fmt: skip
    prompt = prompt_create(project=project, name="pirate",
                           instructions="You are a pirate. Greet {{name}}.").prompt  # fmt: skip
    client = openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )
    response = client.responses.create(
        model=model.name,
        input="Hello",
        prompt={"id": prompt.public_id, "variables": {"name": "Ada"}},
    )
    assert response.output_text == "Ahoy, Ada!"
    assert response.prompt.id == prompt.public_id and response.prompt.version == "1"
    assert upstream.chat_requests()[-1].body["messages"][0] == {
        "role": "system",
        "content": "You are a pirate. Greet Ada.",
    }
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model=model.name, input="x", prompt={"id": prompt.public_id})
    assert missing.value.param == "prompt.variables.name"
