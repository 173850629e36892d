"""Prompt templates: ``prompt`` on POST /v1/responses (in-process, scripted engine), the
``createprompt`` / ``listprompts`` commands and the admin."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient

from prompts.models import Prompt
from prompts.services import prompt_create, prompt_version_create
from tenants.models import Project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("prompt")]


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def create(client, persona, **body):
    body.setdefault("model", "scripted")
    return await client.post("/v1/responses", json.dumps(body), content_type="application/json",
                             headers=persona.headers)  # fmt: skip


def _greeting(organization, project_name="Default project"):
    project = Project.objects.get(organization=organization, name=project_name)
    version = prompt_create(
        project=project,
        name="greeting",
        instructions="You are {{persona}}. Answer in {{ language }}.",
        input=[{"role": "user", "content": "My name is {{name}}."}],
    )
    return version.prompt


async def test_a_prompt_renders_into_the_turn(client, transactional_cast, engine):
    alice = transactional_cast.alice
    prompt = await sync_to_async(_greeting)(alice.organization)
    response = await create(
        client, alice, input="Hello!", instructions="Be brief.",
        prompt={"id": prompt.public_id,
                "variables": {"persona": "a pirate", "language": "French",
                              "name": {"type": "input_text", "text": "Ada"}}},
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    body = response.json()
    assert engine.last_request.messages == [
        {"role": "system", "content": "You are a pirate. Answer in French.\n\nBe brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "user", "content": "Hello!"},
    ]
    assert body["prompt"] == {
        "id": prompt.public_id,
        "version": "1",
        "variables": {"persona": "a pirate", "language": "French",
                      "name": {"type": "input_text", "text": "Ada"}},
    }  # fmt: skip
    assert body["instructions"] == "You are a pirate. Answer in French.\n\nBe brief."

    # A new version is used by default; an explicit version pins the old one.
    await sync_to_async(prompt_version_create)(prompt=prompt, instructions="Version two.")
    latest = await create(client, alice, input="x", prompt={"id": prompt.public_id})
    assert latest.json()["prompt"]["version"] == "2"
    assert engine.last_request.messages[0] == {"role": "system", "content": "Version two."}
    pinned = await create(client, alice, input="x", prompt={
        "id": prompt.public_id, "version": "1",
        "variables": {"persona": "p", "language": "l", "name": "n"}})  # fmt: skip
    assert pinned.json()["prompt"]["version"] == "1"
    # Without input: the template's messages are the question.
    only_prompt = await create(client, alice, prompt={
        "id": prompt.public_id, "version": "1",
        "variables": {"persona": "p", "language": "l", "name": "n"}})  # fmt: skip
    assert only_prompt.status_code == 200


@pytest.mark.parametrize(
    ("prompt", "param", "code"),
    [
        ({"id": "pmpt_unknown"}, "prompt.id", "invalid_value"),
        ({"variables": {"persona": "p", "language": "l"}}, "prompt.variables.name",
         "missing_required_parameter"),
        ({"variables": {"persona": "p", "language": "l", "name": "n", "typo": "x"}},
         "prompt.variables.typo", "unknown_parameter"),
        ({"version": "7", "variables": {}}, "prompt.version", "invalid_value"),
        ({"variables": {"persona": "p", "language": "l",
                        "name": {"type": "input_image", "image_url": "https://x"}}},
         "prompt.variables.name", "unsupported_value"),
    ],
)  # fmt: skip
async def test_prompt_errors_are_400_naming_what_is_wrong(
    client, transactional_cast, engine, prompt, param, code
):
    alice = transactional_cast.alice
    stored = await sync_to_async(_greeting)(alice.organization)
    prompt = {"id": stored.public_id, **prompt}
    response = await create(client, alice, input="x", prompt=prompt)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert param.rsplit(".", 1)[-1] in error["message"] or "version" in param or "id" in param


async def test_prompts_are_scoped_to_the_organization_and_the_keys_project(
    client, transactional_cast, engine
):
    alice, bob, charlie = (
        transactional_cast.alice,
        transactional_cast.bob,
        transactional_cast.charlie,
    )
    default_prompt = await sync_to_async(_greeting)(alice.organization)
    stranger = await create(client, charlie, input="x", prompt={"id": default_prompt.public_id})
    assert stranger.status_code == 400
    assert stranger.json()["error"]["param"] == "prompt.id"
    # Bob's key is bound to the Mobile project: Acme's default-project prompt is not his.
    bob.api_key.scope = "all"
    await bob.api_key.asave(update_fields=["scope"])
    other_project = await create(client, bob, input="x", prompt={"id": default_prompt.public_id})
    assert other_project.status_code == 400
    mobile_prompt = await sync_to_async(_greeting)(alice.organization, "Mobile")
    own = await create(
        client,
        bob,
        input="x",
        prompt={
            "id": mobile_prompt.public_id,
            "variables": {"persona": "p", "language": "l", "name": "n"},
        },
    )
    assert own.status_code == 200, own.json()


def test_the_commands_create_version_and_list_prompts(transactional_cast):
    out = StringIO()
    call_command("createprompt", "--org", "acme", "--name", "support", "--instructions",
                 "Help with {{product}}.", "--input", '[{"role": "user", "content": "Hi"}]',
                 "--json", stdout=out)  # fmt: skip
    created = json.loads(out.getvalue())
    assert created["version"] == "1" and created["id"].startswith("pmpt_")
    out = StringIO()
    call_command("createprompt", "--prompt", created["id"], "--instructions", "v2", "--json",
                 stdout=out)  # fmt: skip
    assert json.loads(out.getvalue())["version"] == "2"
    out = StringIO()
    call_command("listprompts", "--org", "acme", "--json", stdout=out)
    listed = json.loads(out.getvalue())
    assert [(row["name"], row["latest_version"]) for row in listed] == [("support", "2")]
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="input"):
        call_command(
            "createprompt",
            "--org",
            "acme",
            "--name",
            "bad",
            "--input",
            '[{"type": "function_call_output", "call_id": "c", "output": "x"}]',
        )


def test_the_admin_adds_versions(transactional_cast, admin_client):
    prompt = _greeting(transactional_cast.alice.organization)
    url = f"/admin/prompts/prompt/{prompt.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"greeting" in page.content
    data = {
        "name": "greeting",
        "project": prompt.project.pk,
        "versions-TOTAL_FORMS": "2",
        "versions-INITIAL_FORMS": "1",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
        "versions-0-id": prompt.versions.get().pk,
        "versions-0-prompt": prompt.pk,
        "versions-1-prompt": prompt.pk,
        "versions-1-instructions": "Second version for {{name}}.",
        "versions-1-input": "[]",
    }
    saved = admin_client.post(url, data)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    prompt = Prompt.objects.get(pk=prompt.pk)
    assert prompt.latest_version == 2
    assert prompt.versions.get(version=2).instructions == "Second version for {{name}}."
    assert prompt.versions.get(version=1).instructions.startswith("You are")


def test_the_admin_refuses_invalid_template_messages(transactional_cast, admin_client):
    prompt = _greeting(transactional_cast.alice.organization)
    url = f"/admin/prompts/prompt/{prompt.pk}/change/"
    data = {
        "name": "greeting", "project": prompt.project.pk,
        "versions-TOTAL_FORMS": "2", "versions-INITIAL_FORMS": "1",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
        "versions-0-id": prompt.versions.get().pk, "versions-0-prompt": prompt.pk,
        "versions-1-prompt": prompt.pk, "versions-1-instructions": "x",
        "versions-1-input": '[{"role": "robot", "content": "x"}]',
    }  # fmt: skip
    page = admin_client.post(url, data)
    assert page.status_code == 200  # the form again, with the error
    assert b"input[0].role" in page.content
    assert Prompt.objects.get(pk=prompt.pk).latest_version == 1
