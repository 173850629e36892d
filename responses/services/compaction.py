"""Compaction: a long context becomes a summary the engine writes, handed to the client as a
``compaction`` item whose ``encrypted_content`` only this platform, for this organization, can
open (:mod:`responses.services.sealed`).

* ``POST /v1/responses/compact`` (:func:`response_compact`): the context (``previous_response_id``
  chain and/or ``input``) → ``{"object": "response.compaction", "output": [the user messages…,
  the compaction item]}``. The client continues with that output as its next input.
* ``context_management: [{"type": "compaction", "compact_threshold": N}]`` on create
  (:func:`compaction_auto`): when the prompt passes N tokens, the earlier turns are compacted
  before generating; the compaction item becomes the first input item of the turn, so chains and
  conversations continue from it.
* Reading a context (:func:`compaction_expand`): everything before the last compaction item is
  replaced by its summary, except the user messages (kept verbatim, as OpenAI's compaction keeps
  them).

The summary call is billed like a response: admitted by the quotas and settled in the ledger
under its own id.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.db import db_async
from core.errors import ApiError, InvalidRequest
from engines.runtime.types import Engine, EngineError, GenerationRequest, TextDelta, Usage
from quotas.services.admission import quota_admit, quota_settle
from quotas.services.headers import HeaderState
from quotas.services.ledger import TokenUsage
from responses.requests import checks as c
from responses.requests.items import compaction_id
from responses.streaming import ids
from responses.streaming.objects import usage_object
from tenants.models import Organization
from tenants.principal import ApiPrincipal

PURPOSE = "compaction"
SUMMARY_MAX_TOKENS = 512
SUMMARY_INSTRUCTIONS = (
    "You compact conversations. Summarize the conversation below so that an assistant can "
    "continue it from your summary alone: keep names, numbers, decisions, tool calls and their "
    "results, and open questions. Write plain sentences, no preamble."
)
SUMMARY_HEADER = "Summary of the conversation so far:\n"
COMPACT_PARAMS = frozenset(
    {
        "model", "input", "previous_response_id", "instructions", "prompt_cache_key",
        "prompt_cache_retention", "prompt_cache_options", "service_tier",
    }
)  # fmt: skip
# Room left for the summary instructions and the chat template around the transcript.
_TRANSCRIPT_OVERHEAD_TOKENS = 128


# --- reading a context -----------------------------------------------------------------------


def compaction_expand(
    *, organization: Organization, items: Sequence[dict[str, Any]], offset: int = 0
) -> list[dict[str, Any]]:
    """``items`` as the model sees them. ``offset``: how many leading items are history (not
    the request's ``input``), so that an error names ``input[i]`` correctly."""
    positions = [i for i, item in enumerate(items) if item.get("type") == "compaction"]
    if not positions:
        return list(items)
    last = positions[-1]
    kept = [item for item in items[:last] if _is_user_message(item)]
    summary = _open(organization, items[last], index=last - offset)
    return [*kept, _summary_message(summary), *items[last + 1 :]]


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and item.get("role") == "user"


def _summary_message(summary: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": SUMMARY_HEADER + summary}],
    }


def _open(organization: Organization, item: dict[str, Any], *, index: int) -> str:
    from responses.services.sealed import SealedContentInvalid, unseal

    try:
        return unseal(
            organization_id=organization.public_id,
            purpose=PURPOSE,
            token=item["encrypted_content"],
        )
    except SealedContentInvalid:
        param = f"input[{index}].encrypted_content" if index >= 0 else "previous_response_id"
        raise InvalidRequest(
            "The compaction item cannot be decrypted: it was not created by this platform for "
            "your organization.",
            param=param,
            code="invalid_encrypted_content",
        ) from None


def compaction_item(*, organization: Organization, summary: str) -> dict[str, Any]:
    from responses.services.sealed import seal

    return {
        "id": compaction_id(),
        "type": "compaction",
        "encrypted_content": seal(
            organization_id=organization.public_id, purpose=PURPOSE, text=summary
        ),
    }


# --- writing a summary -----------------------------------------------------------------------


@dataclass
class Summary:
    text: str
    usage: dict[str, Any]
    rate_limit: HeaderState
    """The limiter's state after the summary call was admitted (the answer's headers)."""


@dataclass
class Compacted:
    """What ``POST /v1/responses/compact`` answers: the body, and the limiter's state for the
    answer's ``x-ratelimit-*`` headers."""

    body: dict[str, Any]
    rate_limit: HeaderState


def transcript(items: Sequence[dict[str, Any]]) -> str:
    """Items (already expanded) as plain text for the summarizing call."""
    lines: list[str] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            lines.append(f"{item['role']}: {_text(item.get('content'))}")
        elif kind == "function_call":
            lines.append(f"assistant called {item['name']}({item['arguments']})")
        elif kind == "function_call_output":
            lines.append(f"tool result for {item['call_id']}: {_text(item.get('output'))}")
    return "\n".join(lines)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text") or part.get("refusal") or ""
            for part in content
            if isinstance(part, dict)
        )
    return ""


def _bounded(text: str, *, max_bytes: int) -> str:
    """At most ``max_bytes`` bytes (a token covers at least one byte, so this bounds tokens):
    the beginning and, mostly, the end of the conversation."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    head = max_bytes // 4
    tail = max_bytes - head - 8
    return data[:head].decode(errors="ignore") + "\n[…]\n" + data[-tail:].decode(errors="ignore")


async def summarize(
    *,
    principal: ApiPrincipal,
    engine: Engine,
    model: str,
    context_length: int,
    service_tier: str,
    request_id: str,
    items: Sequence[dict[str, Any]],
) -> Summary:
    """One engine call that summarizes ``items``, admitted and billed like a response."""
    budget = context_length - SUMMARY_MAX_TOKENS - _TRANSCRIPT_OVERHEAD_TOKENS
    if budget <= 0:
        raise InvalidRequest(f"Model '{model}' has too small a context to compact.", param="model")
    text = _bounded(transcript(items), max_bytes=budget)
    ledger_id = ids.response_id()
    reservation = await quota_admit(
        principal=principal,
        response_id=ledger_id,
        request_id=request_id,
        model=model,
        service_tier=service_tier,
        store=False,
        input_tokens_estimate=len(text.encode()) + _TRANSCRIPT_OVERHEAD_TOKENS,
        max_output_tokens=SUMMARY_MAX_TOKENS,
    )
    request = GenerationRequest(
        request_id=f"{request_id}-compact",
        model=model,
        organization_id=principal.organization.public_id,
        messages=[
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {"role": "user", "content": text},
        ],
        max_tokens=SUMMARY_MAX_TOKENS,
        temperature=0.2,
        service_tier=service_tier,
    )
    pieces: list[str] = []
    usage = Usage(input_tokens=0, output_tokens=0)
    status = "failed"
    try:
        async with contextlib.aclosing(engine.stream(request)) as stream:
            async for delta in stream:
                if isinstance(delta, TextDelta):
                    pieces.append(delta.text)
                elif isinstance(delta, Usage):
                    usage = delta
        status = "completed"
    except EngineError as error:
        raise ApiError(
            error.message, status=error.status, type=error.type, code=error.code
        ) from error
    finally:
        billed = usage_object(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
        )
        with contextlib.suppress(Exception):
            await quota_settle(
                reservation=reservation,
                status=status,
                usage=TokenUsage(
                    input_tokens=usage.input_tokens,
                    cached_tokens=usage.cached_tokens,
                    output_tokens=usage.output_tokens,
                ),
            )
    summary = "".join(pieces).strip()
    if not summary:
        raise ApiError(
            "The model produced an empty summary; try again.", status=500, type="server_error",
            code="server_error",
        )  # fmt: skip
    return Summary(text=summary, usage=billed, rate_limit=reservation.rate_limit)


# --- POST /v1/responses/compact --------------------------------------------------------------


async def response_compact(*, principal: ApiPrincipal, request_id: str, body: Any) -> Compacted:
    from engines.runtime.registry import get_engine
    from engines.selectors import model_not_found
    from responses.requests import parse_create_request, resolve_item_references, stored_input_items
    from responses.services.create import _load_context

    obj = c.expect_object(body, param=None)
    c.reject_unknown_keys(obj, COMPACT_PARAMS, prefix=None)
    request = parse_create_request({**obj, "store": False})
    context = await db_async(_load_context)(principal=principal, request=request)
    try:
        engine = await get_engine(context.model_name)
    except LookupError as exc:
        raise model_not_found(request.model) from exc
    known = {item["id"]: item for item in context.history if "id" in item}
    input_items = stored_input_items(resolve_item_references(request.input, known=known))
    items = compaction_expand(
        organization=principal.organization,
        items=[*context.history, *input_items],
        offset=len(context.history),
    )
    if request.instructions:
        items = [{"type": "message", "role": "system", "content": request.instructions}, *items]
    summary = await summarize(
        principal=principal,
        engine=engine,
        model=context.model_name,
        context_length=context.context_length,
        service_tier=context.service_tier,
        request_id=request_id,
        items=items,
    )
    users = [item for item in [*context.history, *input_items] if _is_user_message(item)]
    body = {
        "id": ids.response_id(),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [
            *users,
            compaction_item(organization=principal.organization, summary=summary.text),
        ],
        "usage": summary.usage,
    }
    return Compacted(body=body, rate_limit=summary.rate_limit)


# --- context_management on create ------------------------------------------------------------


def chat_messages(
    *,
    organization: Organization,
    instructions: str | None,
    history: Sequence[dict[str, Any]],
    input_items: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """``build_chat_messages`` for a context that may hold compaction items."""
    from responses.requests import build_chat_messages

    if not any(item.get("type") == "compaction" for item in [*history, *input_items]):
        return build_chat_messages(
            instructions=instructions, history_items=history, input_items=input_items
        )
    expanded = compaction_expand(
        organization=organization, items=[*history, *input_items], offset=len(history)
    )
    return build_chat_messages(instructions=instructions, history_items=expanded, input_items=())


async def compaction_auto(
    *,
    principal: ApiPrincipal,
    engine: Engine,
    model: str,
    context_length: int,
    service_tier: str,
    request_id: str,
    history: list[dict[str, Any]],
    input_items: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compact ``history``; returns the compaction item and the turn's new input items (the
    item first, then the calls of the history that this input answers, then the input)."""
    answered = {
        item["call_id"] for item in input_items if item.get("type") == "function_call_output"
    }
    calls = [
        item
        for item in history
        if item.get("type") == "function_call" and item["call_id"] in answered
    ]
    expanded = compaction_expand(organization=principal.organization, items=history, offset=0)
    summary = await summarize(
        principal=principal,
        engine=engine,
        model=model,
        context_length=context_length,
        service_tier=service_tier,
        request_id=request_id,
        items=[item for item in expanded if item not in calls],
    )
    item = compaction_item(organization=principal.organization, summary=summary.text)
    return item, [item, *(json.loads(json.dumps(call)) for call in calls), *input_items]
