"""``POST /v1/responses``: from a validated request to a ready-to-run :class:`Generation`.

Steps (each failure is an OpenAI-style 4xx before anything is generated or stored):
1. parse and validate the body (``responses.requests``);
2. resolve, for the caller's organization only: the model (404 ``model_not_found``), the
   previous response (404 ``previous_response_not_found``), the service tier (400);
3. build the chat prompt: chain items, new input items, instructions, tools, response format;
   fit it into the model's context (``truncation``, E8);
4. store the response as ``in_progress`` when ``store`` is true (M6).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from api.authentication import ApiPrincipal
from api.db import db_async
from api.errors import InvalidRequest
from engines.runtime.registry import ServiceTierError, get_engine, resolve_service_tier
from engines.runtime.types import Engine, GenerationRequest
from engines.selectors import model_get
from engines.views import model_not_found
from quotas.services.admission import input_tokens_estimate, quota_admit
from responses.models import StoredResponse
from responses.requests import (
    build_chat_messages,
    build_response_format,
    build_tool_choice,
    fit_to_context,
    parse_create_request,
    resolve_item_references,
    stored_input_items,
)
from responses.requests.validation import CreateResponseRequest
from responses.selectors import chain_items, previous_response_get
from responses.services import lifecycle
from responses.services.background import background_job, background_record_create
from responses.services.generation import Generation, generation_abandon, generation_prestart
from responses.services.retention import storage_check
from responses.streaming.builder import StreamBuilder
from responses.streaming.objects import ResponseEcho

# Chat templates add a handful of tokens per message; a byte-level BPE token covers at least one
# byte. So bytes + this much per message bounds the prompt's token count from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 16


@dataclass(frozen=True)
class _Context:
    model_name: str
    context_length: int
    default_max_output_tokens: int
    previous: StoredResponse | None
    history: list[dict[str, Any]]
    service_tier: str


def _load_context(*, principal: ApiPrincipal, request: CreateResponseRequest) -> _Context:
    model = model_get(organization=principal.organization, name=request.model)
    if model is None:
        raise model_not_found(request.model)
    previous = None
    history: list[dict[str, Any]] = []
    if request.previous_response_id:
        previous = previous_response_get(
            organization=principal.organization, response_id=request.previous_response_id
        )
        if previous.status not in StoredResponse.TERMINAL:
            raise InvalidRequest(
                f"Previous response with id '{previous.public_id}' is still {previous.status}; "
                "wait for it to finish.",
                param="previous_response_id",
            )
        history = chain_items(response=previous)
    if request.store:
        # E8: caps on chain length and stored bytes, before anything is generated or stored.
        storage_check(
            organization=principal.organization,
            previous=previous,
            incoming_bytes=len(json.dumps(request.input, default=str)),
        )
    try:
        tier = resolve_service_tier(
            request.service_tier, principal.organization.allowed_service_tiers
        )
    except ServiceTierError as exc:
        raise InvalidRequest(str(exc), param="service_tier", code="invalid_value") from exc
    return _Context(
        model_name=model.name,
        context_length=model.context_length,
        default_max_output_tokens=model.default_max_output_tokens,
        previous=previous,
        history=history,
        service_tier=tier,
    )


def _surely_fits(messages: list[dict], tools: list[dict], *, limit: int) -> bool:
    size = len(json.dumps(messages, ensure_ascii=False).encode())
    size += len(json.dumps(tools, ensure_ascii=False).encode()) if tools else 0
    return size + _TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1) <= limit


async def _fit(
    *,
    engine: Engine,
    request: CreateResponseRequest,
    context: _Context,
    messages: list[dict],
    tools: list[dict],
) -> list[dict]:
    max_output = request.max_output_tokens or context.default_max_output_tokens
    # Counting needs a tokenizer round trip to the engine; skip it when a cheap upper bound
    # already shows the prompt fits, which is nearly every request.
    if _surely_fits(messages, tools, limit=context.context_length - max_output):
        return messages

    async def count(candidate: list[dict]) -> int:
        return await engine.count_tokens(model=context.model_name, messages=candidate, tools=tools)

    fitted = await fit_to_context(
        messages=messages,
        count_tokens=count,
        context_length=context.context_length,
        max_output_tokens=max_output,
        truncation=request.truncation,
    )
    return fitted.messages


def _echo(request: CreateResponseRequest, *, model: str, tier: str) -> ResponseEcho:
    return ResponseEcho(
        model=model,
        instructions=request.instructions,
        previous_response_id=request.previous_response_id,
        tools=list(request.tools),
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        truncation=request.truncation,
        text=request.text,
        reasoning=request.reasoning,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        top_logprobs=request.top_logprobs or 0,
        max_output_tokens=request.max_output_tokens,
        max_tool_calls=request.max_tool_calls,
        store=request.store,
        background=request.background,
        service_tier=tier,
        metadata=request.metadata,
        safety_identifier=request.safety_identifier,
        prompt_cache_key=request.prompt_cache_key,
        prompt_cache_retention=request.prompt_cache_retention,
        user=request.user,
    )


@dataclass
class PreparedResponse:
    request: CreateResponseRequest
    generation: Generation


async def response_prepare(
    *, principal: ApiPrincipal, request_id: str, body: Any
) -> PreparedResponse:
    request = parse_create_request(body)
    context = await db_async(_load_context)(principal=principal, request=request)
    try:
        engine = await get_engine(context.model_name)
    except LookupError as exc:
        raise model_not_found(request.model) from exc

    known = {item["id"]: item for item in context.history if "id" in item}
    input_items = stored_input_items(resolve_item_references(request.input, known=known))
    messages = build_chat_messages(
        instructions=request.instructions,
        history_items=context.history,
        input_items=input_items,
    )
    tool_choice, tools = build_tool_choice(tool_choice=request.tool_choice, tools=request.tools)
    messages = await _fit(
        engine=engine, request=request, context=context, messages=messages, tools=tools
    )

    echo = _echo(request, model=context.model_name, tier=context.service_tier)
    builder = StreamBuilder(
        echo=echo,
        include_logprobs=request.logprobs,
        reasoning_summary=request.reasoning_summary is not None,
    )
    engine_request = GenerationRequest(
        request_id=request_id,
        model=context.model_name,
        messages=messages,
        organization_id=principal.organization.public_id,
        tools=tools,
        tool_choice=tool_choice if tools else None,
        parallel_tool_calls=request.parallel_tool_calls if tools else None,
        response_format=build_response_format(request.text_format),
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_output_tokens,
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs if request.logprobs else None,
        service_tier=context.service_tier,
        prompt_cache_key=request.prompt_cache_key,
        reasoning_effort=request.reasoning_effort,
        extra_body=dict(request.extra_body),
    )
    # Quotas (issue 6): rate limits, concurrency and hard budgets, before anything is stored —
    # a 429 leaves no row behind. The reservation is settled in generate_events' finally.
    max_output = request.max_output_tokens or context.default_max_output_tokens
    reservation = await quota_admit(
        principal=principal,
        response_id=builder.response_id,
        request_id=request_id,
        model=context.model_name,
        service_tier=context.service_tier,
        store=request.store,
        input_tokens_estimate=input_tokens_estimate(
            messages=messages, tools=tools, ceiling=context.context_length - max_output
        ),
        max_output_tokens=max_output,
    )
    generation = Generation(
        engine=engine,
        engine_request=engine_request,
        builder=builder,
        record_pk=None,
        reasoning_summary=request.reasoning_summary is not None,
        keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
        reservation=reservation,
    )
    if not request.background:
        # Admitted: the engine request goes out now, alongside the row's INSERT.
        generation_prestart(generation)
    try:
        if request.store:
            generation.record_pk = await _store_record(
                request=request,
                principal=principal,
                context=context,
                builder=builder,
                echo=echo,
                engine_request=engine_request,
                request_id=request_id,
                input_items=input_items,
            )
    except BaseException:
        # Admitted but it will never run (the client left while the row was being written, or
        # the write failed): release the reservation and close whatever row was written.
        await generation_abandon(generation)
        raise
    return PreparedResponse(request=request, generation=generation)


async def _store_record(
    *,
    request: CreateResponseRequest,
    principal: ApiPrincipal,
    context: _Context,
    builder: StreamBuilder,
    echo: ResponseEcho,
    engine_request: GenerationRequest,
    request_id: str,
    input_items: list[dict[str, Any]],
) -> int:
    # Background (validation made sure store is true): stored queued, and a Celery worker runs
    # the generation once the row is committed; this process only answers.
    status = StoredResponse.Status.QUEUED if request.background else StoredResponse.Status.IN_PROGRESS
    fields = dict(
        public_id=builder.response_id,
        organization=principal.organization,
        project=principal.project,
        api_key=principal.api_key,
        previous=context.previous,
        model=context.model_name,
        status=status,
        background=request.background,
        request_id=request_id,
        body=builder.snapshot() | {"status": status},
        input_items=input_items,
    )
    if request.background:
        job = background_job(
            engine_request=engine_request,
            echo=echo,
            builder=builder,
            include_logprobs=request.logprobs,
            reasoning_summary=request.reasoning_summary is not None,
        )
        create = functools.partial(background_record_create, job=job, **fields)
    else:
        # Renewed by the process's cancel watcher while the stream runs; if this process dies,
        # the sweeper finds the lease run out and fails the row (never in_progress forever).
        lease = timezone.now() + timedelta(seconds=settings.BACKGROUND_LEASE_SECONDS)
        create = functools.partial(
            lifecycle.response_record_create, **fields, lease_expires_at=lease
        )
    # The INSERT runs in a thread that a cancelled request cannot stop: shield it, and if the
    # request is cancelled meanwhile, wait for the row so it can be closed, not orphaned. Not on
    # the request's thread-sensitive executor: Django shuts it down when the cancelled request
    # ends, and work still queued there would never run.
    writing = asyncio.ensure_future(db_async(create)())
    try:
        return (await asyncio.shield(writing)).pk
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            record = await writing
            if request.background:
                raise  # a queued background response runs without its client, by design
            body = builder.snapshot() | {"status": StoredResponse.Status.INCOMPLETE}
            await db_async(lifecycle.response_transition)(
                response_pk=record.pk,
                from_status=StoredResponse.Status.IN_PROGRESS,
                to_status=StoredResponse.Status.INCOMPLETE,
                body=body,
            )
        raise
