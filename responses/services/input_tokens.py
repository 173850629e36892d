"""``POST /v1/responses/input_tokens``: the prompt's size, counted by the engine's tokenizer."""

from __future__ import annotations

from typing import Any

from conversations.selectors import conversation_get, conversation_items
from core.db import db_async
from engines.runtime.registry import get_engine
from engines.selectors import model_get, model_not_found
from responses.requests import (
    build_tool_choice,
    resolve_item_references,
    stored_input_items,
)
from responses.requests.validation import InputTokensRequest
from responses.selectors import chain_items, previous_response_get
from responses.services import compaction
from tenants.principal import ApiPrincipal


def _history(*, principal: ApiPrincipal, request: InputTokensRequest) -> tuple[str, list[dict]]:
    model = model_get(organization=principal.organization, name=request.model)
    if model is None:
        raise model_not_found(request.model)
    history: list[dict[str, Any]] = []
    if request.previous_response_id:
        previous = previous_response_get(
            organization=principal.organization, response_id=request.previous_response_id
        )
        history = chain_items(response=previous)
    elif request.conversation:
        conversation = conversation_get(
            organization=principal.organization,
            conversation_id=request.conversation,
            param="conversation",
        )
        history = conversation_items(conversation=conversation)
    return model.name, history


async def input_tokens_count(*, principal: ApiPrincipal, request: InputTokensRequest) -> int:
    model_name, history = await db_async(_history)(principal=principal, request=request)
    try:
        engine = await get_engine(model_name)
    except LookupError as exc:
        raise model_not_found(request.model) from exc
    known = {item["id"]: item for item in history if "id" in item}
    input_items = stored_input_items(resolve_item_references(request.input, known=known))
    messages = compaction.chat_messages(
        organization=principal.organization,
        instructions=request.instructions,
        history=history,
        input_items=input_items,
    )
    _, tools = build_tool_choice(tool_choice=request.tool_choice, tools=request.tools)
    return await engine.count_tokens(model=model_name, messages=messages, tools=tools or None)
