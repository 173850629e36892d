"""Prompt templates: create a prompt, add a version, and resolve ``prompt`` on a create request
for the caller (organization and project scoped: another tenant's prompt does not exist)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.errors import InvalidRequest
from prompts.models import Prompt, PromptVersion
from prompts.templates import RenderedPrompt, render
from responses.requests.input_items import parse_input
from tenants.models import Project
from tenants.principal import ApiPrincipal


def prompt_create(
    *,
    project: Project,
    name: str,
    instructions: str = "",
    input: Any = None,  # noqa: A002
) -> PromptVersion:
    """A new prompt with its version 1."""
    with transaction.atomic():
        prompt = Prompt.objects.create(
            organization=project.organization, project=project, name=name
        )
        return prompt_version_create(prompt=prompt, instructions=instructions, input=input)


def prompt_version_create(
    *,
    prompt: Prompt,
    instructions: str = "",
    input: Any = None,  # noqa: A002
) -> PromptVersion:
    """The next version of ``prompt``. ``input`` is validated like a request's ``input`` (a
    string or a list of messages) and stored in its canonical form."""
    items = prompt_input_check(input)
    with transaction.atomic():
        locked = Prompt.objects.select_for_update().get(pk=prompt.pk)
        locked.latest_version += 1
        locked.save(update_fields=["latest_version"])
        return PromptVersion.objects.create(
            prompt=locked, version=locked.latest_version, instructions=instructions, input=items
        )


def prompt_input_check(value: Any) -> list[dict[str, Any]]:
    """A template's messages in canonical form; 400 (``input[i]…``) when they are not."""
    items = list(parse_input(value, param="input").items) if value else []
    for index, item in enumerate(items):
        if item["type"] != "message":
            raise InvalidRequest("A prompt's input holds messages only.", param=f"input[{index}]")
    return items


def prompt_resolve(*, principal: ApiPrincipal, prompt: dict[str, Any]) -> RenderedPrompt:
    """``prompt: {id, version?, variables?}`` → the rendered instructions and input messages.
    A key bound to a project sees that project's prompts; an organization-wide key sees all of
    the organization's."""
    prompts = Prompt.objects.filter(organization=principal.organization)
    if principal.project is not None:
        prompts = prompts.filter(project=principal.project)
    found = prompts.filter(public_id=prompt["id"]).first()
    if found is None:
        raise InvalidRequest(
            f"Prompt with id '{prompt['id']}' not found.", param="prompt.id", code="invalid_value"
        )
    requested = prompt.get("version")
    number = found.latest_version
    if requested is not None:
        number = int(requested) if requested.isdigit() else -1
    version = PromptVersion.objects.filter(prompt=found, version=number).first()
    if version is None:
        raise InvalidRequest(
            f"Prompt '{found.public_id}' has no version '{requested}' (latest: "
            f"{found.latest_version}).",
            param="prompt.version",
            code="invalid_value",
        )
    return render(
        instructions=version.instructions,
        input_items=version.input,
        version=str(version.version),
        variables=prompt.get("variables") or {},
    )
