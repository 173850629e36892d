"""Azure route forms (M1) with the official SDK's ``AzureOpenAI`` client, unchanged, against a
live daphne: ``/openai/v1/``, ``/openai/?api-version=`` and
``/openai/deployments/{deployment}/?api-version=``; text, stream and a tool round trip on each,
every stored-response endpoint under each, ``api-key`` authentication, deployments per
organization, and the ``api-version`` refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from engines.models import Deployment, EngineReplica, ServedModel
from testsupport.conformance import check_response
from testsupport.fake_vllm import FakeBehavior, FakeToolCall
from testsupport.fixtures import fake_vllm_fixture

pytestmark = pytest.mark.django_db(transaction=True)

API_VERSION = "2025-04-01-preview"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _behavior(body: dict[str, Any]) -> FakeBehavior | None:
    if body.get("model") != "up-azure":
        return None
    messages = body.get("messages") or []
    if not body.get("tools") or any(m.get("role") == "tool" for m in messages):
        return FakeBehavior(text="Sunny in Paris.")
    return FakeBehavior(
        text="", tool_calls=[FakeToolCall(name="get_weather", arguments='{"city": "Paris"}')]
    )


upstream = fake_vllm_fixture(behavior=FakeBehavior(text="unused"), behavior_for=_behavior)


@pytest.fixture
def deployment(transactional_cast, upstream) -> str:
    model = ServedModel.objects.create(
        name=f"azure-model-{upstream.port}", upstream_model="up-azure", tool_call_parser="hermes"
    )
    EngineReplica.objects.create(model=model, base_url=upstream.base_url)
    Deployment.objects.create(
        organization=transactional_cast.alice.organization, name="gpt-prod", model=model
    )
    return "gpt-prod"


def _clients(base: str, secret: str, deployment: str) -> dict[str, openai.AzureOpenAI]:
    common = {"api_key": secret, "max_retries": 0, "timeout": 30}
    return {
        # Azure's v1 API: the SDK still sends an api-version; "preview" is what Azure documents.
        "v1": openai.AzureOpenAI(base_url=f"{base}/openai/v1", api_version="preview", **common),
        # The dated form, as AzureOpenAI builds it from an endpoint.
        "dated": openai.AzureOpenAI(azure_endpoint=base, api_version=API_VERSION, **common),
        # The deployment form: the deployment is in the URL.
        "deployment": openai.AzureOpenAI(
            base_url=f"{base}/openai/deployments/{deployment}", api_version=API_VERSION, **common
        ),
    }


@pytest.mark.compliance("M1")
@pytest.mark.parametrize("form", ["v1", "dated", "deployment"])
def test_azure_openai_works_unchanged_on_every_form(
    form, live_daphne, transactional_cast, deployment, upstream
):
    client = _clients(live_daphne, transactional_cast.alice.secret, deployment)[form]
    seen: list[httpx.Request] = []
    client._client.event_hooks["request"].append(seen.append)

    # Text: the deployment name stands in for the model (in the body or in the URL).
    text = client.responses.create(model=deployment, input="Weather?")
    assert text.output_text == "Sunny in Paris."
    assert text.model == f"azure-model-{upstream.port}"
    check_response(text.model_dump(mode="json"))
    url = seen[-1].url
    assert url.params.get("api-version") == ("preview" if form == "v1" else API_VERSION)
    assert (
        url.path
        == {
            "v1": "/openai/v1/responses",
            "dated": "/openai/responses",
            "deployment": f"/openai/deployments/{deployment}/responses",
        }[form]
    )
    assert seen[-1].headers["api-key"] == transactional_cast.alice.secret  # Azure's key header

    # Stream.
    with client.responses.stream(model=deployment, input="Weather?") as stream:
        streamed = stream.get_final_response()
    assert streamed.output_text == "Sunny in Paris." and streamed.status == "completed"

    # Tool round trip, chained with previous_response_id.
    called = client.responses.create(model=deployment, input="Weather in Paris?", tools=[WEATHER])
    (call,) = [item for item in called.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Paris"}
    answered = client.responses.create(
        model=deployment,
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert answered.output_text == "Sunny in Paris."

    # Every stored-response endpoint under the same form.
    assert client.responses.retrieve(text.id).id == text.id
    items = client.responses.input_items.list(answered.id)
    assert [item.type for item in items.data] == ["function_call_output"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.cancel(text.id)  # reached the view: a finished foreground response
    assert refused.value.body["param"] == "response_id"
    client.responses.delete(text.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(text.id)
    assert all(r.url.path.startswith("/openai/") for r in seen)


@pytest.mark.compliance("M1")
def test_api_version_is_checked_where_azure_requires_it(
    live_daphne, transactional_cast, deployment
):
    headers = {"api-key": transactional_cast.alice.secret}
    body = {"model": deployment, "input": "hi"}
    with httpx.Client(base_url=live_daphne, headers=headers, timeout=30) as http:
        for path in ("/openai/responses", f"/openai/deployments/{deployment}/responses"):
            missing = http.post(path, json=body)
            assert missing.status_code == 400
            assert missing.json()["error"]["code"] == "BadRequest"
            assert missing.json()["error"]["param"] == "api-version"
            for bad in ("2024-10-21", "yesterday", "2025-13-01-preview-x"):
                unknown = http.post(path, params={"api-version": bad}, json=body)
                assert unknown.status_code == 400, bad
                assert "not supported" in unknown.json()["error"]["message"]
        ok = http.post("/openai/v1/responses", json=body)  # v1 needs no version
        assert ok.status_code == 200
        assert ok.headers["apim-request-id"] == ok.headers["x-request-id"]
        assert (
            http.post(
                "/openai/v1/responses", params={"api-version": "bogus"}, json=body
            ).status_code
            == 400
        )
        echoed = http.get("/openai/v1/models", headers={"x-ms-client-request-id": "abc-123"})
        assert echoed.status_code == 200 and echoed.headers["x-ms-client-request-id"] == "abc-123"


@pytest.mark.compliance("M1")
def test_deployments_belong_to_one_organization(live_daphne, transactional_cast, deployment):
    charlie = _clients(live_daphne, transactional_cast.charlie.secret, deployment)
    with pytest.raises(openai.NotFoundError) as unknown:
        charlie["deployment"].responses.create(model=deployment, input="hi")
    assert unknown.value.code == "DeploymentNotFound"
    with pytest.raises(openai.NotFoundError) as not_a_model:
        charlie["dated"].responses.create(model=deployment, input="hi")
    assert not_a_model.value.code == "model_not_found"
