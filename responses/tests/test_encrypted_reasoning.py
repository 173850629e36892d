"""Encrypted reasoning (H4): ``include: ["reasoning.encrypted_content"]`` out, reasoning items
with ``encrypted_content`` back in (the ``store=false`` multi-turn pattern), organization binding,
key rotation, and the refusals (tampered, expired, foreign, retired key, no key at all)."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import AsyncClient

from engines.models import EngineReplica, ServedModel
from engines.runtime.registry import engine_override
from responses.services.encrypted_reasoning import reasoning_decrypt, reasoning_encrypt
from testsupport.fake_vllm import FakeBehavior, FakeVllm
from testsupport.live_server import DaphneProcess
from testsupport.scripted_engine import ScriptedEngine, build_script

pytestmark = pytest.mark.django_db(transaction=True)

THOUGHT = "The user wants a number; seven is prime and small."


@pytest.fixture
def thinking_engine(scripted_model):
    engine = ScriptedEngine(build_script(reasoning=THOUGHT, text="Seven."))
    with engine_override(scripted_model.name, engine):
        yield engine


async def _create(persona, **body):
    body = {"model": "scripted", "store": False, "include": ["reasoning.encrypted_content"]} | body
    return await AsyncClient().post(
        "/v1/responses", json.dumps(body), content_type="application/json", headers=persona.headers
    )


def _reasoning_item(answer) -> dict:
    assert answer.status_code == 200, answer.content
    (item,) = [i for i in answer.json()["output"] if i["type"] == "reasoning"]
    return item


async def _second_turn(persona, first: dict):
    return await _create(
        persona,
        input=[
            {"role": "user", "content": "Pick a number."},
            first,
            {"role": "assistant", "content": "Seven."},
            {"role": "user", "content": "Why?"},
        ],
    )


@pytest.mark.compliance("H4")
async def test_the_blob_is_a_fernet_token_that_brings_the_reasoning_back(
    transactional_cast, thinking_engine, reasoning_keys
):
    alice = transactional_cast.alice
    first = _reasoning_item(await _create(alice, input="Pick a number."))
    token = first["encrypted_content"]
    assert token.startswith("gAAAAA")  # Fernet's version byte, base64
    assert THOUGHT not in token
    opened = Fernet(reasoning_keys[0]).decrypt(token.encode())  # the newest key made it
    assert json.loads(opened)["org"] == alice.organization.public_id

    second = await _second_turn(alice, first)
    assert second.status_code == 200, second.content
    history = thinking_engine.last_request.messages
    assistant = next(m for m in history if m["role"] == "assistant")
    assert assistant["reasoning"] == THOUGHT  # decrypted and sent to the engine


@pytest.mark.compliance("H4")
async def test_without_the_include_there_is_no_blob(
    transactional_cast, thinking_engine, reasoning_keys
):
    answer = await _create(transactional_cast.alice, input="Pick a number.", include=[])
    assert _reasoning_item(answer)["encrypted_content"] is None


@pytest.mark.compliance("H4")
async def test_another_organizations_blob_is_refused(
    transactional_cast, thinking_engine, reasoning_keys
):
    first = _reasoning_item(await _create(transactional_cast.alice, input="Pick a number."))
    answer = await _second_turn(transactional_cast.charlie, first)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "input[1].encrypted_content"
    assert "another organization" in error["message"]
    assert THOUGHT not in answer.content.decode()
    assert len(thinking_engine.requests) == 1  # never reached the engine


@pytest.mark.compliance("H4")
async def test_tampered_unknown_key_and_non_fernet_blobs_are_400s_naming_the_item(
    transactional_cast, thinking_engine, reasoning_keys
):
    alice = transactional_cast.alice
    first = _reasoning_item(await _create(alice, input="Pick a number."))
    token = first["encrypted_content"]
    foreign_key = Fernet(Fernet.generate_key()).encrypt(b'{"org": "x"}').decode()
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    for bad in (tampered, foreign_key, "not-a-token", "eyJvcmciOiAieCJ9"):  # last: plain base64
        answer = await _second_turn(alice, first | {"encrypted_content": bad})
        assert answer.status_code == 400, bad
        error = answer.json()["error"]
        assert error["param"] == "input[1].encrypted_content"
        assert error["code"] == "invalid_encrypted_content"


@pytest.mark.compliance("H4")
async def test_an_expired_blob_is_refused(transactional_cast, reasoning_keys, settings):
    organization_id = transactional_cast.alice.organization.public_id
    token = reasoning_encrypt(organization_id=organization_id, item_id="rs_1", text="t", summary=[])
    settings.REASONING_ENCRYPTION_TTL_SECONDS = 60
    old = Fernet(reasoning_keys[0]).encrypt_at_time(
        Fernet(reasoning_keys[0]).decrypt(token.encode()), int(time.time()) - 61
    )
    with pytest.raises(Exception) as caught:  # noqa: PT011 - status and message checked below
        reasoning_decrypt(organization_id=organization_id, token=old.decode(), param="p")
    assert caught.value.status == 400 and "older than 60 seconds" in caught.value.message
    assert reasoning_decrypt(organization_id=organization_id, token=token, param="p")["text"] == "t"


@pytest.mark.compliance("H4")
async def test_keys_rotate_between_two_turns(
    transactional_cast, thinking_engine, reasoning_keys, settings
):
    alice = transactional_cast.alice
    old_key = reasoning_keys[0]
    settings.REASONING_ENCRYPTION_KEYS = [old_key]
    first = _reasoning_item(await _create(alice, input="Pick a number."))

    # Rotation, step 1: the new key goes first, the old one stays to open existing blobs.
    new_key = Fernet.generate_key().decode()
    settings.REASONING_ENCRYPTION_KEYS = [new_key, old_key]
    second = await _second_turn(alice, first)
    assert thinking_engine.last_request.messages[1]["reasoning"] == THOUGHT
    renewed = _reasoning_item(second)
    Fernet(new_key).decrypt(renewed["encrypted_content"].encode())  # made with the new key

    # Step 2, after the TTL: the old key is dropped; its blobs are refused, new ones work.
    settings.REASONING_ENCRYPTION_KEYS = [new_key]
    assert (await _second_turn(alice, first)).status_code == 400
    assert (await _second_turn(alice, renewed)).status_code == 200


@pytest.mark.compliance("H4")
@pytest.mark.compliance("M4")
async def test_no_key_configured_refuses_the_include_value(
    transactional_cast, thinking_engine, settings
):
    settings.REASONING_ENCRYPTION_KEYS = []
    answer = await _create(transactional_cast.alice, input="Pick a number.")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "include"
    assert "REASONING_ENCRYPTION_KEYS" in answer.json()["error"]["message"]
    assert thinking_engine.requests == []


def test_the_command_generates_a_usable_key_and_shows_fingerprints_only(settings):
    out = io.StringIO()
    call_command("reasoningkeys", "generate", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
    settings.REASONING_ENCRYPTION_KEYS = [key, Fernet.generate_key().decode()]
    status = io.StringIO()
    call_command("reasoningkeys", "status", stdout=status)
    lines = status.getvalue().splitlines()
    assert "encrypts and decrypts" in lines[0] and "decrypts only" in lines[1]
    assert key not in status.getvalue()  # fingerprints, never the secret
    settings.REASONING_ENCRYPTION_KEYS = []
    status = io.StringIO()
    call_command("reasoningkeys", "status", stdout=status)
    assert "refused" in status.getvalue()


@pytest.mark.compliance("H4")
async def test_retrieving_with_the_include_and_no_key_is_refused_too(transactional_cast, settings):
    settings.REASONING_ENCRYPTION_KEYS = []
    answer = await AsyncClient().get(
        "/v1/responses/resp_abc?include[]=reasoning.encrypted_content",
        headers=transactional_cast.alice.headers,
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "include"


# --- end to end: the official SDK against a live server ------------------------------------


@pytest.fixture(scope="module")
def thinking_upstream():
    fake = FakeVllm(behavior=FakeBehavior(reasoning=THOUGHT, text="Seven."))
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def keyed_daphne(django_db_setup, django_db_blocker):
    daphne = DaphneProcess(env={"REASONING_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    daphne.start()
    yield daphne.base_url
    daphne.stop()


@pytest.mark.compliance("H4")
@pytest.mark.compliance("T1")
def test_a_store_false_conversation_round_trips_encrypted_reasoning_with_the_sdk(
    transactional_cast, thinking_upstream, keyed_daphne
):
    model = ServedModel.objects.create(
        name=f"thinker-{thinking_upstream.port}", upstream_model="thinker", reasoning_parser="qwen3"
    )
    EngineReplica.objects.create(model=model, base_url=thinking_upstream.base_url)
    client = openai.OpenAI(
        base_url=f"{keyed_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )
    history: list = [{"role": "user", "content": "Pick a number."}]
    first = client.responses.create(
        model=model.name, input=history, store=False, include=["reasoning.encrypted_content"]
    )
    reasoning = next(item for item in first.output if item.type == "reasoning")
    assert reasoning.encrypted_content and THOUGHT not in reasoning.encrypted_content
    # The stateless pattern: the client keeps the output items and sends them back.
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"role": "user", "content": "Why?"})
    with client.responses.stream(
        model=model.name, input=history, store=False, include=["reasoning.encrypted_content"]
    ) as stream:
        second = stream.get_final_response()
    assert second.status == "completed"
    sent = thinking_upstream.chat_requests()[-1].body["messages"]
    assistant = next(m for m in sent if m["role"] == "assistant")
    assert assistant["reasoning"] == THOUGHT

    other = openai.OpenAI(
        base_url=f"{keyed_daphne}/v1", api_key=transactional_cast.charlie.secret, max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as caught:
        other.responses.create(model=model.name, input=history, store=False)
    assert caught.value.body["param"] == "input[1].encrypted_content"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)  # store=false: nothing to fetch, blob is the state
