"""Compaction in-process (scripted engine): POST /v1/responses/compact, compaction items passed
back (and bound to the organization), and context_management's automatic compaction of a long
tool-using session that would not fit the model's context without it."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from engines.models import ServedModel
from quotas.models import UsageRecord
from responses.services.compaction import SUMMARY_HEADER, SUMMARY_INSTRUCTIONS
from responses.services.sealed import SealedContentInvalid, seal, unseal
from testsupport.scripted_engine import build_script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("R7")]

SUMMARY = "Ada asked about the weather in Paris; the tool said sunny."


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


@pytest.fixture
def summarizing(engine):
    """The scripted engine answers summary requests with SUMMARY and calls a tool otherwise,
    until a tool result is the last message."""

    def script(request):
        if request.messages[0]["content"] == SUMMARY_INSTRUCTIONS:
            return build_script(text=SUMMARY)
        if request.messages[-1]["role"] == "tool":
            return build_script(text="Noted.")
        return build_script(
            tool_calls=[("lookup", '{"q": "weather"}', f"call_{len(request.messages)}")]
        )

    engine.script = script
    return engine


async def post(client, persona, path, **body):
    return await client.post(path, json.dumps(body), content_type="application/json",
                             headers=persona.headers)  # fmt: skip


def test_sealed_content_is_bound_to_its_organization_and_purpose(settings):
    token = seal(organization_id="org_a", purpose="compaction", text="secret")
    assert "secret" not in token
    assert unseal(organization_id="org_a", purpose="compaction", token=token) == "secret"
    for org, purpose in (("org_b", "compaction"), ("org_a", "reasoning")):
        with pytest.raises(SealedContentInvalid):
            unseal(organization_id=org, purpose=purpose, token=token)
    # Rotation: a new key first, the old one still opens earlier blobs; dropped, it no longer does.
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTED_CONTENT_KEYS = [old]
    early = seal(organization_id="org_a", purpose="compaction", text="early")
    settings.ENCRYPTED_CONTENT_KEYS = [new, old]
    assert unseal(organization_id="org_a", purpose="compaction", token=early) == "early"
    settings.ENCRYPTED_CONTENT_KEYS = [new]
    with pytest.raises(SealedContentInvalid):
        unseal(organization_id="org_a", purpose="compaction", token=early)


async def test_compact_round_trip(client, transactional_cast, summarizing):
    alice = transactional_cast.alice
    first = (await post(client, alice, "/v1/responses", model="scripted",
                        input="What is the weather?", tools=[LOOKUP])).json()  # fmt: skip
    call = first["output"][0]
    second = (await post(client, alice, "/v1/responses", model="scripted", tools=[LOOKUP],
                         previous_response_id=first["id"],
                         input=[{"type": "function_call_output", "call_id": call["call_id"],
                                 "output": "sunny"}])).json()  # fmt: skip
    compacted = await post(client, alice, "/v1/responses/compact", model="scripted",
                           previous_response_id=second["id"])  # fmt: skip
    assert compacted.status_code == 200, compacted.json()
    body = compacted.json()
    assert body["object"] == "response.compaction"
    assert body["usage"]["output_tokens"] > 0
    output = body["output"]
    assert [item["type"] for item in output] == ["message", "compaction"]
    assert output[0]["content"][0]["text"] == "What is the weather?"
    assert SUMMARY not in output[1]["encrypted_content"]
    # The summarizing call saw the whole session.
    summary_request = next(
        r for r in summarizing.requests if r.messages[0]["content"] == SUMMARY_INSTRUCTIONS
    )
    assert "sunny" in summary_request.messages[1]["content"]
    assert "lookup" in summary_request.messages[1]["content"]

    # A stateless continuation from the compacted output: the summary replaces the session.
    summarizing.script = build_script(text="It was sunny.")
    follow = await post(client, alice, "/v1/responses", model="scripted", store=False,
                        input=[*output, {"role": "user", "content": "And so?"}])  # fmt: skip
    assert follow.status_code == 200, follow.json()
    assert summarizing.last_request.messages == [
        {"role": "user", "content": "What is the weather?"},
        {"role": "user", "content": SUMMARY_HEADER + SUMMARY},
        {"role": "user", "content": "And so?"},
    ]
    # The compaction pass is billed in the ledger like a response.
    assert await UsageRecord.objects.filter(stored=False, output_tokens__gt=0).acount() >= 2

    # Another organization's blob does not open.
    stolen = await post(client, transactional_cast.charlie, "/v1/responses", model="scripted",
                        input=[output[1], {"role": "user", "content": "x"}])  # fmt: skip
    assert stolen.status_code == 400
    assert stolen.json()["error"]["param"] == "input[0].encrypted_content"
    forged = await post(
        client,
        alice,
        "/v1/responses",
        model="scripted",
        input=[{"type": "compaction", "encrypted_content": "Zm9yZ2Vk"}],
    )
    assert forged.status_code == 400


async def test_compact_needs_a_model(client, transactional_cast, engine):
    alice = transactional_cast.alice
    missing = await post(client, alice, "/v1/responses/compact", input="x")
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "model"
    unknown = await post(client, alice, "/v1/responses/compact", model="scripted", input="x",
                         tools=[])  # fmt: skip
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_parameter"


LOOKUP = {"type": "function", "name": "lookup", "description": "Look something up.",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}  # fmt: skip
BIG_RESULT = " ".join(f"fact{i}" for i in range(400))  # 400 tokens for the scripted counter


async def _tool_session(client, persona, *, turns: int, **extra) -> list:
    """A tool loop: each turn answers the model's call with a 400-token tool result."""
    answers = []
    previous = (await post(client, persona, "/v1/responses", model="small", tools=[LOOKUP],
                           input="Research the weather.", **extra)).json()  # fmt: skip
    for _ in range(turns):
        call = next(item for item in previous["output"] if item["type"] == "function_call")
        response = await post(client, persona, "/v1/responses", model="small", tools=[LOOKUP],
                              previous_response_id=previous["id"],
                              input=[{"type": "function_call_output", "call_id": call["call_id"],
                                      "output": BIG_RESULT}], **extra)  # fmt: skip
        answers.append(response)
        if response.status_code != 200:
            return answers
        previous = response.json()
        # Keep the loop going: the next turn asks again.
        previous = (await post(client, persona, "/v1/responses", model="small", tools=[LOOKUP],
                               previous_response_id=previous["id"], input="Look again.",
                               **extra)).json()  # fmt: skip
    return answers


@pytest.fixture
def small_model(scripted_model, summarizing):
    from engines.runtime.registry import engine_override

    ServedModel.objects.create(name="small", upstream_model="small", context_length=2048,
                               default_max_output_tokens=256)  # fmt: skip
    with engine_override("small", summarizing):
        yield summarizing


async def test_a_long_tool_session_overflows_without_compaction(
    client, transactional_cast, small_model
):
    answers = await _tool_session(client, transactional_cast.alice, turns=6)
    assert answers[-1].status_code == 400
    assert answers[-1].json()["error"]["code"] == "context_length_exceeded"


async def test_automatic_compaction_keeps_a_long_tool_session_going(
    client, transactional_cast, small_model
):
    alice = transactional_cast.alice
    answers = await _tool_session(client, alice, turns=6, context_management=[
        {"type": "compaction", "compact_threshold": 1000}])  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 6
    summaries = [
        r for r in small_model.requests if r.messages[0]["content"] == SUMMARY_INSTRUCTIONS
    ]
    assert summaries, "no compaction happened"
    last = small_model.requests[-1]
    assert any(m["content"] == SUMMARY_HEADER + SUMMARY for m in last.messages)
    from testsupport.scripted_engine import whitespace_token_count

    for request in small_model.requests:
        assert whitespace_token_count(messages=request.messages, tools=request.tools) < 2048
    # The compaction item leads the input of the turn that compacted (chains continue from it).
    compacted = [a.json()["id"] for a in answers]
    items = []
    for response_id in compacted:
        page = await client.get(f"/v1/responses/{response_id}/input_items?order=asc",
                                headers=alice.headers)  # fmt: skip
        items += page.json()["data"]
    assert any(item["type"] == "compaction" for item in items)
