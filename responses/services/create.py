"""``POST /v1/responses``: from a validated request to a ready-to-run :class:`Generation`.

Steps (each failure is an OpenAI-style 4xx before anything is generated or stored):
1. parse and validate the body (``responses.requests``);
2. resolve, for the caller's organization only: the model (404 ``model_not_found``), the
   previous response (404 ``previous_response_not_found``), the service tier (400);
3. build the chat prompt: chain items, new input items, instructions, tools, response format;
   fit it into the model's context (``truncation``);
4. store the response as ``in_progress`` when ``store`` is true.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from conversations.selectors import conversation_get, conversation_items
from core.db import db_async
from core.errors import InvalidRequest
from engines.runtime.registry import ServiceTierError, get_engine, resolve_service_tier
from engines.runtime.types import Engine, GenerationRequest
from engines.selectors import model_get, model_not_found
from prompts.services import prompt_resolve
from prompts.templates import RenderedPrompt
from quotas.services.admission import (
    InsufficientQuota,
    Reservation,
    input_tokens_estimate,
    quota_admission_undo,
    quota_admit,
    quota_ledger_open,
)
from responses.models import StoredResponse
from responses.requests import (
    build_response_format,
    build_tool_choice,
    fit_to_context,
    media,
    parse_create_request,
    resolve_item_references,
    stored_input_items,
)
from responses.requests.validation import CreateResponseRequest
from responses.selectors import chain_items, previous_response_get, response_find
from responses.services import compaction, lifecycle
from responses.services.background import background_job, background_record_create
from responses.services.encrypted_reasoning import (
    reasoning_decrypt,
    reasoning_encrypt,
    reasoning_include_check,
)
from responses.services.generation import Generation, generation_abandon, generation_prestart
from responses.services.retention import storage_check
from responses.streaming.builder import ReasoningEncryptor, StreamBuilder
from responses.streaming.objects import ResponseEcho
from tenants.principal import ApiPrincipal

# Chat templates add a handful of tokens per message; a byte-level BPE token covers at least one
# byte. So bytes + this much per message bounds the prompt's token count from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 16


@dataclass(frozen=True)
class _Context:
    model_name: str
    accepts_images: bool
    context_length: int
    default_max_output_tokens: int
    previous: StoredResponse | None
    history: list[dict[str, Any]]
    service_tier: str
    prompt: RenderedPrompt | None = None


@dataclass(frozen=True)
class LocalPrevious:
    """The last response of a WebSocket connection, kept by the connection itself: with
    ``store=false`` nothing is in the database, yet ``previous_response_id`` may name it."""

    response_id: str
    items: list[dict[str, Any]]
    """Its whole context: history, input and output items, oldest first."""


def _load_context(
    *,
    principal: ApiPrincipal,
    request: CreateResponseRequest,
    local_previous: LocalPrevious | None = None,
) -> _Context:
    model = model_get(organization=principal.organization, name=request.model)
    if model is None:
        raise model_not_found(request.model)
    previous = None
    history: list[dict[str, Any]] = []
    if request.previous_response_id:
        local = (
            local_previous
            if local_previous is not None
            and local_previous.response_id == request.previous_response_id
            else None
        )
        # A stored response is read from the database even when the connection knows it too:
        # its row carries the chain (length, tool-call session).
        find = response_find if local is not None else previous_response_get
        previous = find(
            organization=principal.organization, response_id=request.previous_response_id
        )
        if previous is None:  # only the connection has it (store=false)
            assert local is not None  # previous_response_get raises rather than answer None
            history = list(local.items)
        else:
            if previous.status not in StoredResponse.TERMINAL:
                raise InvalidRequest(
                    f"Previous response with id '{previous.public_id}' is still "
                    f"{previous.status}; wait for it to finish.",
                    param="previous_response_id",
                )
            history = chain_items(response=previous)
    elif request.conversation:
        # The conversation's items as they are now come first; this response's own input and
        # output are appended when it finishes (response_finalize).
        conversation = conversation_get(
            organization=principal.organization,
            conversation_id=request.conversation,
            param="conversation",
        )
        history = conversation_items(conversation=conversation)
    prompt = prompt_resolve(principal=principal, prompt=request.prompt) if request.prompt else None
    if request.store:
        # Caps on chain length and stored bytes, before anything is generated or stored.
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
        accepts_images=model.accepts_images,
        context_length=model.context_length,
        default_max_output_tokens=model.default_max_output_tokens,
        previous=previous,
        history=history,
        service_tier=tier,
        prompt=prompt,
    )


# OpenAI accepts top_p = 0 (only the most likely token); vLLM requires top_p > 0. A top_p this
# small keeps exactly the most likely token, which is the same thing.
_GREEDY_TOP_P = 1e-9


def _engine_top_p(top_p: float | None) -> float | None:
    return _GREEDY_TOP_P if top_p == 0 else top_p


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


def _echo(
    request: CreateResponseRequest,
    *,
    model: str,
    tier: str,
    instructions: str | None,
    prompt: RenderedPrompt | None,
) -> ResponseEcho:
    return ResponseEcho(
        model=model,
        instructions=instructions,
        prompt=(
            {**(request.prompt or {}), "version": prompt.version} if prompt is not None else None
        ),
        previous_response_id=request.previous_response_id,
        conversation={"id": request.conversation} if request.conversation else None,
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


async def _compact_if_long(
    *,
    principal: ApiPrincipal,
    request_id: str,
    engine: Engine,
    request: CreateResponseRequest,
    context: _Context,
    instructions: str | None,
    messages: list[dict],
    tools: list[dict],
    input_items: list[dict[str, Any]],
) -> tuple[list[dict], list[dict[str, Any]]]:
    """``context_management``: past the threshold (or, without one, past what fits the model),
    the history is compacted first; the compaction item leads this turn's input items."""
    max_output = request.max_output_tokens or context.default_max_output_tokens
    limit = request.compact_threshold or (context.context_length - max_output)
    if _surely_fits(messages, tools, limit=limit):
        return messages, input_items
    count = await engine.count_tokens(model=context.model_name, messages=messages, tools=tools)
    if count <= limit:
        return messages, input_items
    _, input_items = await compaction.compaction_auto(
        principal=principal,
        engine=engine,
        model=context.model_name,
        context_length=context.context_length,
        service_tier=context.service_tier,
        request_id=request_id,
        history=context.history,
        input_items=input_items,
    )
    messages = compaction.chat_messages(
        organization=principal.organization,
        instructions=instructions,
        history=context.history,
        input_items=input_items,
    )
    return messages, input_items


@dataclass
class PreparedResponse:
    request: CreateResponseRequest
    generation: Generation
    context_items: list[dict[str, Any]]
    """History and this turn's input items: with the output, the next turn's context."""


def _open_encrypted_reasoning(
    items: tuple[dict[str, Any], ...], *, organization_id: str
) -> list[dict[str, Any]]:
    """Reasoning items sent back with ``encrypted_content`` (the ``store=false`` multi-turn
    pattern): their reasoning, decrypted, becomes the item's content, so it reaches the engine
    like any other reasoning in the history. A blob that does not open is a 400 naming it."""
    opened = []
    for index, item in enumerate(items):
        if item.get("type") == "reasoning" and item.get("encrypted_content") is not None:
            secret = reasoning_decrypt(
                organization_id=organization_id,
                token=item["encrypted_content"],
                param=f"input[{index}].encrypted_content",
            )
            item = dict(item, content=[{"type": "reasoning_text", "text": secret["text"]}])
        opened.append(item)
    return opened


_DNS_TIMEOUT_SECONDS = 3.0


async def _check_media(*, items: list[dict[str, Any]], context: _Context) -> None:
    """Images only for a model that takes them (400 naming the first image otherwise), and
    image URLs only on public hosts: the engine fetches them, so a name that resolves into a
    private network would make it fetch from inside (resolved here, before anything runs)."""
    images = media.image_parts(items)
    if not context.accepts_images:
        if images:
            raise InvalidRequest(
                f"Model '{context.model_name}' is text-only: {images[0]} is an image. Use a "
                "model that accepts images, or send text.",
                param=images[0],
                code="unsupported_value",
            )
        if media.image_parts(context.history):
            raise InvalidRequest(
                f"Model '{context.model_name}' is text-only, and the conversation of "
                "'previous_response_id' contains images.",
                param="previous_response_id",
                code="unsupported_value",
            )
    loop = asyncio.get_running_loop()
    for param, url in media.image_urls(items):
        host = urlsplit(url).hostname or ""
        try:
            async with asyncio.timeout(_DNS_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(host, None)
        except (OSError, TimeoutError):
            raise InvalidRequest(
                f"Invalid '{param}': the host {host!r} could not be resolved.",
                param=param,
                code="invalid_value",
            ) from None
        # typeshed's address union includes non-IP families; a host name resolves to IPs only.
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}  # type: ignore[union-attr]
        if not all(media.address_is_public(address) for address in addresses):
            media.refuse_internal(param)


def _encryptor(organization_id: str) -> ReasoningEncryptor:
    return lambda item_id, text, summary: reasoning_encrypt(
        organization_id=organization_id, item_id=item_id, text=text, summary=summary
    )


async def response_prepare(
    *,
    principal: ApiPrincipal,
    request_id: str,
    body: Any,
    dialect: str = "openai",
    local_previous: LocalPrevious | None = None,
    prestart: bool = True,
    rate_limit_events: bool = False,
) -> PreparedResponse:
    """``dialect`` is the stream dialect of the creating request; it only decides whether the
    legacy-only announcement ``response.additional_context`` is generated. ``local_previous``: a
    WebSocket connection's last response (see :class:`LocalPrevious`). ``prestart=False`` keeps
    the engine request from going out here (a caller that swaps the engine first).
    ``rate_limit_events``: the stream also carries ``response.rate_limits.updated`` events."""
    request = parse_create_request(body)
    if request.include_encrypted_reasoning:
        reasoning_include_check()
    organization_id = principal.organization.public_id
    opened = _open_encrypted_reasoning(request.input, organization_id=organization_id)
    context = await db_async(_load_context)(
        principal=principal, request=request, local_previous=local_previous
    )
    if (
        request.max_output_tokens is not None
        and request.max_output_tokens >= context.context_length
    ):
        raise InvalidRequest(
            f"'max_output_tokens' is too large: {request.max_output_tokens}. This model's context "
            f"length is {context.context_length} tokens, input and output together; "
            "max_output_tokens must be smaller.",
            param="max_output_tokens",
            code="integer_above_max_value",
        )
    try:
        engine = await get_engine(context.model_name)
    except LookupError as exc:
        raise model_not_found(request.model) from exc

    known = {item["id"]: item for item in context.history if "id" in item}
    instructions, prompt_items = request.instructions, []
    if context.prompt is not None:
        # The template's instructions come first, the request's own after them; its messages
        # come before the request's input and are part of this turn's input items.
        parts = (context.prompt.instructions, request.instructions)
        instructions = "\n\n".join(part for part in parts if part) or None
        prompt_items = context.prompt.input_items
    # One item per input item (the template's first).
    resolved = resolve_item_references([*prompt_items, *opened], known=known)
    await _check_media(items=resolved, context=context)
    input_items = stored_input_items(resolved)
    messages = compaction.chat_messages(
        organization=principal.organization,
        instructions=instructions,
        history=context.history,
        input_items=input_items,
    )
    tool_choice, tools = build_tool_choice(tool_choice=request.tool_choice, tools=request.tools)
    if request.compact_threshold is not None and context.history:
        messages, input_items = await _compact_if_long(
            principal=principal,
            request_id=request_id,
            engine=engine,
            request=request,
            context=context,
            instructions=instructions,
            messages=messages,
            tools=tools,
            input_items=input_items,
        )
    messages = await _fit(
        engine=engine, request=request, context=context, messages=messages, tools=tools
    )

    echo = _echo(
        request,
        model=context.model_name,
        tier=context.service_tier,
        instructions=instructions,
        prompt=context.prompt,
    )
    builder = StreamBuilder(
        echo=echo,
        include_logprobs=request.logprobs,
        reasoning_summary=request.reasoning_summary is not None,
        encrypt_reasoning=(
            _encryptor(organization_id) if request.include_encrypted_reasoning else None
        ),
        announce_encrypted_reasoning=dialect == "legacy",
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
        top_p=_engine_top_p(request.top_p),
        max_tokens=request.max_output_tokens,
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs if request.logprobs else None,
        service_tier=context.service_tier,
        prompt_cache_key=request.prompt_cache_key,
        reasoning_effort=request.reasoning_effort,
        extra_body=dict(request.extra_body),
    )
    # Quotas: rate limits, concurrency and hard budgets, before anything is stored —
    # a 429 leaves no row behind. The reservation is settled in generate_events' finally. A
    # stored response's ledger row is written with its own row, in one transaction
    # (_store_record): one round trip to the database before the first event instead of two.
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
        open_ledger=not request.store,
    )
    generation = Generation(
        engine=engine,
        engine_request=engine_request,
        builder=builder,
        record_pk=None,
        reasoning_summary=request.reasoning_summary is not None,
        keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
        reservation=reservation,
        rate_limit_events=rate_limit_events,
    )
    prestarting = prestart and not request.background
    if prestarting and not reservation.may_refuse:
        # Admitted: the engine request goes out now, alongside the rows' INSERT. (Not when
        # that INSERT may still refuse for a hard budget: a refused request reaches no engine.)
        generation_prestart(generation)
    try:
        if request.store:
            record = await _store_record(
                request=request,
                principal=principal,
                context=context,
                builder=builder,
                echo=echo,
                engine_request=engine_request,
                request_id=request_id,
                input_items=input_items,
                reservation=reservation,
            )
            generation.record_pk = record.pk
            generation.record_links = (record.organization_id, record.previous_response_id)
    except BaseException as exc:
        # Admitted but it will never run (refused by a hard budget, the client left while the
        # rows were being written, or the write failed): release the reservation and close
        # whatever row was written.
        if isinstance(exc, InsufficientQuota):
            await asyncio.shield(quota_admission_undo(reservation, error=exc))
        await generation_abandon(generation)
        raise
    if prestarting:
        generation_prestart(generation)  # a no-op when it went out above
    return PreparedResponse(
        request=request, generation=generation, context_items=[*context.history, *input_items]
    )


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
    reservation: Reservation,
) -> StoredResponse:
    # Background (validation made sure store is true): stored queued, and a Celery worker runs
    # the generation once the row is committed; this process only answers.
    status = (
        StoredResponse.Status.QUEUED if request.background else StoredResponse.Status.IN_PROGRESS
    )
    fields: dict[str, Any] = dict(
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
        # The quota reservation's ledger row, in the row's own transaction.
        also=functools.partial(quota_ledger_open, reservation),
    )
    if request.background:
        job = background_job(
            engine_request=engine_request,
            echo=echo,
            builder=builder,
            include_logprobs=request.logprobs,
            reasoning_summary=request.reasoning_summary is not None,
            encrypt_reasoning_for=(
                principal.organization.public_id if request.include_encrypted_reasoning else None
            ),
            announce_encrypted_reasoning=builder.announces_encrypted_reasoning,
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
        return await asyncio.shield(writing)
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
