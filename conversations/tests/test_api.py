"""The Conversations API in-process (AsyncClient through the whole middleware stack), with the
scripted engine behind ``conversation`` on POST /v1/responses."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from django.test import AsyncClient
from django.utils import timezone

from conversations.models import Conversation, ConversationItem
from testsupport.scripted_engine import build_script
from testsupport.sse import streamed_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("conversations")]


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def post(client, persona, path, body):
    return await client.post(path, json.dumps(body), content_type="application/json",
                             headers=persona.headers)  # fmt: skip


def message(text: str, role: str = "user") -> dict:
    return {"type": "message", "role": role, "content": text}


async def all_items(client, persona, conversation_id: str, **query) -> list[dict]:
    """Every item, following the cursor the way the SDK does (after=<last_id> while has_more)."""
    items: list[dict] = []
    params = dict(query)
    while True:
        page = (
            await client.get(
                f"/v1/conversations/{conversation_id}/items", params, headers=persona.headers
            )
        ).json()
        items += page["data"]
        if not page["has_more"]:
            return items
        params["after"] = page["last_id"]


async def test_create_retrieve_update_delete(client, transactional_cast):
    alice = transactional_cast.alice
    created = await post(client, alice, "/v1/conversations", {"metadata": {"topic": "demo"}})
    assert created.status_code == 200
    body = created.json()
    assert body["object"] == "conversation"
    assert body["id"].startswith("conv_")
    assert body["metadata"] == {"topic": "demo"}
    assert isinstance(body["created_at"], int)
    conversation_id = body["id"]

    fetched = await client.get(f"/v1/conversations/{conversation_id}", headers=alice.headers)
    assert fetched.json() == body

    updated = await post(client, alice, f"/v1/conversations/{conversation_id}",
                         {"metadata": {"topic": "changed"}})  # fmt: skip
    assert updated.json()["metadata"] == {"topic": "changed"}

    deleted = await client.delete(f"/v1/conversations/{conversation_id}", headers=alice.headers)
    assert deleted.json() == {"id": conversation_id, "object": "conversation.deleted",
                              "deleted": True}  # fmt: skip
    gone = await client.get(f"/v1/conversations/{conversation_id}", headers=alice.headers)
    assert gone.status_code == 404
    assert not await ConversationItem.objects.filter(
        conversation__public_id=conversation_id
    ).aexists()


async def test_items_are_added_listed_paginated_fetched_and_deleted(client, transactional_cast):
    alice = transactional_cast.alice
    created = (
        await post(
            client,
            alice,
            "/v1/conversations",
            {"items": [message("first"), message("second", "assistant")]},
        )
    ).json()
    conversation_id = created["id"]
    added = await post(client, alice, f"/v1/conversations/{conversation_id}/items",
                       {"items": [message(f"more {i}") for i in range(5)]})  # fmt: skip
    assert added.status_code == 200
    added_body = added.json()
    assert added_body["object"] == "list"
    assert [item["content"][0]["text"] for item in added_body["data"]] == [
        f"more {i}" for i in range(5)
    ]
    assert all(item["id"].startswith("msg_") for item in added_body["data"])

    newest_first = await all_items(client, alice, conversation_id, limit=2)
    texts = [item["content"][0]["text"] for item in newest_first]
    assert texts == [*(f"more {i}" for i in reversed(range(5))), "second", "first"]
    oldest_first = await all_items(client, alice, conversation_id, limit=3, order="asc")
    assert [item["id"] for item in oldest_first] == [item["id"] for item in reversed(newest_first)]
    assert newest_first[-2]["role"] == "assistant"
    assert newest_first[-2]["content"][0]["type"] == "output_text"

    item_id = oldest_first[0]["id"]
    fetched = await client.get(f"/v1/conversations/{conversation_id}/items/{item_id}",
                               headers=alice.headers)  # fmt: skip
    assert fetched.json() == oldest_first[0]
    after_delete = await client.delete(f"/v1/conversations/{conversation_id}/items/{item_id}",
                                       headers=alice.headers)  # fmt: skip
    assert after_delete.json()["object"] == "conversation"
    assert after_delete.json()["id"] == conversation_id
    assert len(await all_items(client, alice, conversation_id)) == 6
    missing = await client.get(f"/v1/conversations/{conversation_id}/items/{item_id}",
                               headers=alice.headers)  # fmt: skip
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "item_id"


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/conversations", {"items": [message("x")] * 21}, "items", "array_above_max_length"),
        ("/v1/conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata",
         "object_above_max_properties"),
        ("/v1/conversations", {"metadata": {"k" * 65: "v"}}, "metadata",
         "string_above_max_length"),
        ("/v1/conversations", {"metadata": {"k": "v" * 513}}, "metadata.k",
         "string_above_max_length"),
        ("/v1/conversations", {"items": [{"type": "message", "role": "robot", "content": "x"}]},
         "items[0].role", None),
        ("/v1/conversations", {"title": "x"}, "title", "unknown_parameter"),
        ("{conv}/items", {"items": []}, "items", "empty_array"),
        ("{conv}/items", {}, "items", "missing_required_parameter"),
        ("{conv}/items", {"items": [{"type": "item_reference", "id": "msg_nope"}]}, "items[0]",
         "invalid_value"),
        ("{conv}", {}, "metadata", "missing_required_parameter"),
    ],
)  # fmt: skip
async def test_invalid_bodies_are_400_naming_the_param(
    client, transactional_cast, path, body, param, code
):
    alice = transactional_cast.alice
    conversation = (await post(client, alice, "/v1/conversations", {})).json()
    response = await post(client, alice, path.format(conv=f"/v1/conversations/{conversation['id']}"),
                          body)  # fmt: skip
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


async def test_another_organization_sees_nothing(client, transactional_cast):
    alice, charlie = transactional_cast.alice, transactional_cast.charlie
    conversation = (
        await post(client, alice, "/v1/conversations", {"items": [message("secret")]})
    ).json()
    conversation_id = conversation["id"]
    item_id = (await all_items(client, alice, conversation_id))[0]["id"]
    for response in (
        await client.get(f"/v1/conversations/{conversation_id}", headers=charlie.headers),
        await client.get(f"/v1/conversations/{conversation_id}/items", headers=charlie.headers),
        await client.get(f"/v1/conversations/{conversation_id}/items/{item_id}",
                         headers=charlie.headers),
        await post(client, charlie, f"/v1/conversations/{conversation_id}", {"metadata": {}}),
        await post(client, charlie, f"/v1/conversations/{conversation_id}/items",
                   {"items": [message("intrude")]}),
        await client.delete(f"/v1/conversations/{conversation_id}", headers=charlie.headers),
        await post(client, charlie, "/v1/responses",
                   {"model": "scripted", "input": "hi", "conversation": conversation_id}),
    ):  # fmt: skip
        assert response.status_code == 404, response.json()
    assert len(await all_items(client, alice, conversation_id)) == 1


async def test_read_only_keys_read_but_do_not_write(client, transactional_cast):
    alice, bob = transactional_cast.alice, transactional_cast.bob
    conversation = (await post(client, alice, "/v1/conversations", {})).json()
    listed = await client.get(f"/v1/conversations/{conversation['id']}/items", headers=bob.headers)
    assert listed.status_code == 200
    refused = await post(client, bob, "/v1/conversations", {})
    assert refused.status_code == 403


async def test_a_response_on_a_conversation_reads_it_and_appends_its_turn(
    client, transactional_cast, engine
):
    alice = transactional_cast.alice
    conversation = (
        await post(client, alice, "/v1/conversations",
                   {"items": [message("My name is Ada."), message("Hello Ada!", "assistant")]})
    ).json()  # fmt: skip
    conversation_id = conversation["id"]

    first = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "Who am I?",
                       "conversation": conversation_id})  # fmt: skip
    assert first.status_code == 200, first.json()
    first_body = first.json()
    assert first_body["conversation"] == {"id": conversation_id}
    assert engine.last_request.messages == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada!"},
        {"role": "user", "content": "Who am I?"},
    ]
    items = await all_items(client, alice, conversation_id, order="asc")
    assert [item.get("role") for item in items] == ["user", "assistant", "user", "assistant"]
    assert items[-1] == first_body["output"][0]  # the output item itself, with its id (L7)
    assert items[2]["content"][0]["text"] == "Who am I?"

    # The object form works too, and the next turn sees the previous one.
    second = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "Again?",
                        "conversation": {"id": conversation_id}})  # fmt: skip
    assert second.json()["conversation"] == {"id": conversation_id}
    assert [m["content"] for m in engine.last_request.messages][-3:] == [
        "Who am I?",
        "Hello there, friend.",
        "Again?",
    ]
    assert len(await all_items(client, alice, conversation_id)) == 6


async def test_streamed_and_failed_turns(client, transactional_cast, engine):
    alice = transactional_cast.alice
    conversation_id = (await post(client, alice, "/v1/conversations", {})).json()["id"]
    streamed = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "hi",
                          "conversation": conversation_id, "stream": True})  # fmt: skip
    await streamed_body(streamed)
    assert len(await all_items(client, alice, conversation_id)) == 2

    engine.fail_after = 1  # a failed turn leaves the conversation as it was
    failed = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "again",
                        "conversation": conversation_id})  # fmt: skip
    assert failed.status_code >= 500 or failed.json()["status"] == "failed"
    assert len(await all_items(client, alice, conversation_id)) == 2

    # store=false: nothing is kept, so nothing is appended (OpenAI's behaviour too).
    engine.fail_after = None
    unstored = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "x",
                          "conversation": conversation_id, "store": False})  # fmt: skip
    assert unstored.json()["status"] == "completed"
    assert len(await all_items(client, alice, conversation_id)) == 2


async def test_conversation_errors(client, transactional_cast, engine):
    alice = transactional_cast.alice
    conversation_id = (await post(client, alice, "/v1/conversations", {})).json()["id"]
    first = (await post(client, alice, "/v1/responses", {"model": "scripted", "input": "x"})).json()
    both = await post(
        client,
        alice,
        "/v1/responses",
        {
            "model": "scripted",
            "input": "x",
            "conversation": conversation_id,
            "previous_response_id": first["id"],
        },
    )
    assert both.status_code == 400
    assert both.json()["error"]["param"] == "conversation"
    unknown = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "x",
                         "conversation": "conv_nope"})  # fmt: skip
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "conversation"
    wrong_type = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "x",
                            "conversation": 5})  # fmt: skip
    assert wrong_type.status_code == 400
    # An empty input is fine when the conversation already holds the question.
    await post(
        client,
        alice,
        f"/v1/conversations/{conversation_id}/items",
        {"items": [message("Only the conversation speaks.")]},
    )
    no_input = await post(client, alice, "/v1/responses", {"model": "scripted",
                          "conversation": conversation_id})  # fmt: skip
    assert no_input.status_code == 200, no_input.json()
    assert engine.last_request.messages == [
        {"role": "user", "content": "Only the conversation speaks."}
    ]


async def test_concurrent_responses_append_whole_turns_in_completion_order(
    client, transactional_cast, engine
):
    """Both start from the same items; the one that finishes first is appended first; each
    turn's input and output stay together and nothing is lost."""
    alice = transactional_cast.alice
    conversation_id = (await post(client, alice, "/v1/conversations", {})).json()["id"]
    engine.script = lambda request: build_script(
        text=f"answer to {request.messages[-1]['content']}"
    )
    engine.delay = 0.0
    release_slow, slow_waiting = asyncio.Event(), asyncio.Event()
    original_stream = engine.stream

    async def stream(request):
        if request.messages[-1]["content"] == "slow":
            slow_waiting.set()
            await release_slow.wait()
        async for delta in original_stream(request):
            yield delta

    engine.stream = stream
    slow = asyncio.ensure_future(
        post(
            client,
            alice,
            "/v1/responses",
            {"model": "scripted", "input": "slow", "conversation": conversation_id},
        )
    )
    await asyncio.wait_for(slow_waiting.wait(), timeout=10)  # created (and generating) first
    fast = await post(client, alice, "/v1/responses", {"model": "scripted", "input": "fast",
                      "conversation": conversation_id})  # fmt: skip
    assert fast.status_code == 200
    release_slow.set()
    assert (await slow).status_code == 200
    texts = [item["content"][0]["text"] for item in
             await all_items(client, alice, conversation_id, order="asc")]  # fmt: skip
    assert texts == ["fast", "answer to fast", "slow", "answer to slow"]


async def test_items_count_toward_stored_bytes_and_the_cap(client, transactional_cast):
    from responses.services.retention import _stored_bytes_sum

    alice = transactional_cast.alice
    await post(client, alice, "/v1/conversations", {"items": [message("x" * 1000)]})
    used = await asyncio.to_thread(_stored_bytes_sum, alice.organization.pk)
    assert used > 1000
    alice.organization.max_stored_bytes = used + 100
    await alice.organization.asave(update_fields=["max_stored_bytes"])
    from django.core.cache import cache

    cache.clear()
    refused = await post(client, alice, "/v1/conversations", {"items": [message("y" * 1000)]})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "storage_limit_exceeded"


async def test_retention_purges_idle_conversations(client, transactional_cast):
    from responses.services.retention import responses_purge

    alice = transactional_cast.alice
    old_id = (await post(client, alice, "/v1/conversations", {"items": [message("old")]})).json()[
        "id"
    ]
    fresh_id = (await post(client, alice, "/v1/conversations", {})).json()["id"]
    long_ago = timezone.now() - timedelta(days=alice.organization.response_retention_days + 1)
    await Conversation.objects.filter(public_id=old_id).aupdate(updated_at=long_ago)
    report = await asyncio.to_thread(responses_purge)
    assert report.conversations == 1
    assert not await Conversation.objects.filter(public_id=old_id).aexists()
    assert not await ConversationItem.objects.filter(conversation__public_id=old_id).aexists()
    assert await Conversation.objects.filter(public_id=fresh_id).aexists()


async def test_input_tokens_count_the_conversation(client, transactional_cast, engine):
    alice = transactional_cast.alice
    conversation_id = (
        await post(client, alice, "/v1/conversations",
                   {"items": [message("one two three"), message("four five", "assistant")]})
    ).json()["id"]  # fmt: skip
    counted = await post(
        client,
        alice,
        "/v1/responses/input_tokens",
        {"model": "scripted", "input": "six", "conversation": conversation_id},
    )
    assert counted.status_code == 200, counted.json()
    assert engine.token_requests[-1]["messages"] == [
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six"},
    ]
