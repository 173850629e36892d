"""The Responses endpoints. Views only wire: authenticate (gateway) → parse → service → render."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json

from django.conf import settings

from api.request import ApiRequest
from api.views import AsyncApiView, json_body, json_response
from core.db import db_async
from core.errors import ApiError, InvalidRequest, NotFound, ServerError, engine_api_error
from engines.selectors import deployment_get
from responses.models import StoredResponse
from responses.requests import parse_input_tokens_request, parse_list_input_items_query
from responses.requests.validation import INCLUDABLE
from responses.selectors import input_items_page, response_get, response_not_found
from responses.services import idempotency, sessions
from responses.services.background import background_follow
from responses.services.compaction import response_compact
from responses.services.create import response_prepare
from responses.services.encrypted_reasoning import reasoning_include_check
from responses.services.generation import (
    KEEPALIVE,
    engine_error_for_client,
    generate_events,
    generation_abandon,
)
from responses.services.input_tokens import input_tokens_count
from responses.services.stored import response_cancel, response_delete, response_replay
from responses.services.tool_outputs import tool_outputs_continue, tool_outputs_replay
from responses.services.usage import RATE_LIMIT_EVENTS_HEADER
from responses.sse import sse_response
from responses.streaming.encoder import DIALECTS


def _query_bool(request: ApiRequest, name: str) -> bool:
    value = request.GET.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidRequest(f"Invalid value for '{name}': expected a boolean.", param=name)


def _query_includes(request: ApiRequest) -> list[str]:
    values = request.GET.getlist("include[]") + request.GET.getlist("include")
    for index, value in enumerate(values):
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"Invalid value for 'include': {value!r}.",
                param=f"include[{index}]",
                code="invalid_value",
            )
        if value == "reasoning.encrypted_content":
            reasoning_include_check()  # refused outright when no key is configured
    return values


DIALECT_HEADER = "X-Responses-Dialect"
DONE_HEADER = "X-Responses-Done"


_TRUE_WORDS = ("true", "1", "yes")


def _stream_wire(request: ApiRequest) -> None:
    """Pick the stream dialect once per request, into ``request.stream_dialect`` and
    ``request.stream_done``: the ``X-Responses-Dialect`` header wins, then the organization's
    default, then the server's ``RESPONSES_DIALECT``. An unknown header value is a 400 whatever
    the endpoint, so a typo never silently falls back to another vocabulary. Also whether the
    stream carries ``response.rate_limits.updated`` events (``request.rate_limit_events``)."""
    value = request.headers.get(DIALECT_HEADER)
    if value is not None:
        value = value.strip().lower()
        if value not in DIALECTS:
            raise InvalidRequest(
                f"Invalid value for header '{DIALECT_HEADER}': {value!r}. Supported values: "
                f"{', '.join(sorted(DIALECTS))}.",
                param=DIALECT_HEADER,
                code="invalid_value",
            )
        dialect = value
    else:
        dialect = request.principal.organization.stream_dialect or settings.RESPONSES_DIALECT
    request.stream_dialect = dialect
    request.stream_done = request.headers.get(DONE_HEADER, "").strip().lower() in _TRUE_WORDS
    # Legacy clients always get response.rate_limits.updated, opt-in header or not.
    request.rate_limit_events = (
        dialect == "legacy"
        or request.headers.get(RATE_LIMIT_EVENTS_HEADER, "").strip().lower() in _TRUE_WORDS
    )


def _sse(request: ApiRequest, events, **kwargs):
    return sse_response(
        events,
        request_id=request.request_id,
        dialect=getattr(request, "stream_dialect", "openai"),
        done=getattr(request, "stream_done", False),
        **kwargs,
    )


class ResponseCreateApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request: ApiRequest):
        _stream_wire(request)
        body = json_body(request)
        if request.path.startswith("/openai/"):
            body = await _azure_deployment_model(request, body)
        key = idempotency.idempotency_key_parse(request.headers.get("Idempotency-Key"))
        if key is not None:
            return await _idempotent_create(request, body, key)
        prepared = await response_prepare(
            principal=request.principal,
            request_id=request.request_id,
            body=body,
            dialect=request.stream_dialect,
            rate_limit_events=request.rate_limit_events,
        )
        return await answer_prepared(request, prepared)


async def _azure_deployment_model(request: ApiRequest, body: dict) -> dict:
    """Azure clients name a deployment, not a model: in the URL (deployment form) or in
    ``model`` (the other forms). An organization's deployment stands for its model; a ``model``
    that is no deployment name is taken as a model name, like on /v1/."""
    deployment_name = getattr(request, "azure_deployment", None)
    name = deployment_name or body.get("model")
    if not isinstance(name, str) or not name:
        return body
    deployment = await db_async(deployment_get)(
        organization=request.principal.organization, name=name
    )
    if deployment is not None:
        return body | {"model": deployment.model.name}
    if deployment_name is not None:
        raise NotFound(
            f"The API deployment '{deployment_name}' does not exist for this organization. "
            "Create it (admin, or `manage.py setdeployment`) or check its name.",
            param="deployment",
            code="DeploymentNotFound",
        )
    return body


# How often a retry looks again at the first request of its Idempotency-Key while it runs.
_IDEMPOTENT_POLL_SECONDS = 0.1
_FAILED_ANSWER_POLLS = 20
_remembering: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones


async def _idempotent_create(request: ApiRequest, body, key: str):
    """``POST /v1/responses`` with an ``Idempotency-Key`` (responses.services.idempotency)."""
    organization = request.principal.organization
    earlier = await db_async(idempotency.create_key_claim)(
        organization=organization, key=key, digest=idempotency.body_digest(body)
    )
    if earlier is not None:
        return await _idempotent_replay(request, earlier, body=body, key=key)
    try:
        prepared = await response_prepare(
            principal=request.principal,
            request_id=request.request_id,
            body=body,
            dialect=request.stream_dialect,
            rate_limit_events=request.rate_limit_events,
        )
    except BaseException:
        # Refused before anything ran (or the client left): a retry may run it.
        await asyncio.shield(
            db_async(idempotency.create_key_release)(organization=organization, key=key)
        )
        raise
    stored, stream = prepared.request.store, prepared.request.stream
    try:
        await db_async(idempotency.create_key_started)(
            organization=organization,
            key=key,
            response_id=prepared.generation.response_id,
            stored=stored,
            stream=stream,
        )
    except BaseException:
        # Admitted, but it will not run (the client left, or the write failed): close it like
        # any prepared response that never starts.
        await asyncio.shield(generation_abandon(prepared.generation))
        raise
    remember = functools.partial(
        db_async(idempotency.create_key_finished), organization=organization, key=key
    )
    tap = None
    if stream and not stored:
        # No stored copy to replay from: the events themselves are the answer to keep.
        tap = functools.partial(_keeping_events, remember=remember)
    try:
        answer = await answer_prepared(request, prepared, events_tap=tap)
    except ApiError as error:
        await asyncio.shield(
            remember(status_code=error.status, answer=sessions.idempotent_error(error))
        )
        raise
    except asyncio.CancelledError:
        if not stored and not stream:
            # The client left; the response ended incomplete, and only this process has it.
            final = prepared.generation.builder.snapshot()
            await asyncio.shield(remember(status_code=200, answer=final))
        raise
    if not stream:
        await remember(
            status_code=answer.status_code,
            answer=None if stored else json.loads(answer.content),
        )
    return answer


async def _keeping_events(events, *, remember):
    kept: list[dict] = []
    try:
        async with contextlib.aclosing(events) as source:
            async for item in source:
                if isinstance(item, list):
                    kept.extend(item)
                yield item
    finally:
        # Also when the client left mid-stream (this runs while the stream is being closed, so
        # it is handed to the loop rather than awaited here).
        task = asyncio.ensure_future(remember(status_code=200, answer={"events": kept}))
        _remembering.add(task)
        task.add_done_callback(_remembering.discard)


async def _idempotent_replay(request: ApiRequest, row, *, body, key: str):
    """The answer of the first request made with this key, waiting for it while it runs."""
    while row.state == idempotency.State.PENDING:
        await asyncio.sleep(_IDEMPOTENT_POLL_SECONDS)
        row = await db_async(idempotency.create_key_reload)(row)
        if row is None:
            # The first request was refused and gave the key back: this one runs anew.
            return await _idempotent_create(request, body, key)
    if not row.stored:
        while row.state != idempotency.State.DONE:
            await asyncio.sleep(_IDEMPOTENT_POLL_SECONDS)
            row = await db_async(idempotency.create_key_reload)(row)
            if row is None:
                return await _idempotent_create(request, body, key)
        return _remembered_answer(request, row)
    if row.state == idempotency.State.DONE and row.answer is not None:
        return _remembered_answer(request, row)  # the first answer was an error
    response = await db_async(idempotency.create_key_response)(row)
    if response is None:
        raise response_not_found(row.response_public_id)  # deleted since
    if row.stream:
        return _replay_stream(request, response, starting_after=None)
    if response.background:
        return json_response(response.body)  # what the first request got: the queued response
    while response.status not in StoredResponse.TERMINAL:
        await asyncio.sleep(_IDEMPOTENT_POLL_SECONDS)
        response = await db_async(idempotency.create_key_response)(row)
        if response is None:
            raise response_not_found(row.response_public_id)
    row = await db_async(idempotency.create_key_reload)(row) or row
    # A failed first request answered with an error, remembered just after the row turned
    # failed: give it the moment it needs to land (a few polls), so the retry gets that error.
    for _ in range(_FAILED_ANSWER_POLLS):
        if row.state == idempotency.State.DONE or response.status != StoredResponse.Status.FAILED:
            break
        await asyncio.sleep(_IDEMPOTENT_POLL_SECONDS)
        row = await db_async(idempotency.create_key_reload)(row) or row
    if row.state == idempotency.State.DONE and row.answer is not None:
        return _remembered_answer(request, row)
    return json_response(response.body)


def _remembered_answer(request: ApiRequest, row):
    answer = row.answer or {}
    if "events" in answer:
        return _sse(request, _replayed_events(answer["events"]), keepalive_marker=None)
    return json_response(answer, status=row.status_code)


async def _replayed_events(events: list[dict]):
    yield events


async def answer_prepared(request: ApiRequest, prepared, *, events_tap=None):
    """Run (or hand to a worker) a prepared response and answer like ``POST /v1/responses``:
    JSON, or SSE when the request asked to stream. ``events_tap`` wraps the event iterator of a
    foreground stream (to keep a copy of what was sent)."""
    generation = prepared.generation
    if generation.reservation is not None:
        # The answer's x-ratelimit-* headers report the admission of this response.
        request.rate_limit = generation.reservation.rate_limit
    if prepared.request.background:
        # A worker generates it; this process answers now: the queued Response, or the live
        # events as the worker writes them (keep-alives while it is still queued).
        if not prepared.request.stream:
            return json_response(generation.builder.snapshot() | {"status": "queued"})
        return _sse(
            request,
            background_follow(
                response_pk=generation.record_pk,
                keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
            ),
            keepalive_marker=None,
        )
    if prepared.request.stream:
        events = generate_events(generation)
        return _sse(
            request,
            events_tap(events) if events_tap is not None else events,
            keepalive_marker=KEEPALIVE,
            on_close=functools.partial(generation_abandon, generation),
        )
    async for _ in generate_events(generation):
        pass
    error = generation.engine_error
    if error is not None:
        shown = engine_error_for_client(
            error, max_output_tokens=generation.engine_request.max_tokens
        )
        api_error = engine_api_error(error)  # the status and when to retry
        raise ApiError(
            shown.message,
            status=api_error.status,
            type=error.type,
            code=shown.code,
            param=shown.param,
            headers=api_error.headers,
        )
    final = generation.builder.snapshot()
    if final["status"] == "failed":
        raise ServerError("The server had an error while processing your request.")
    return json_response(final)


class ResponseDetailApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["get", "delete"]

    async def get(self, request: ApiRequest, response_id: str):
        _stream_wire(request)
        _query_includes(request)
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        if not _query_bool(request, "stream"):
            return json_response(response.body)
        starting_after = request.GET.get("starting_after")
        if starting_after is not None:
            try:
                starting_after = int(starting_after)
            except ValueError:
                raise InvalidRequest(
                    "Invalid value for 'starting_after': expected an integer.",
                    param="starting_after",
                ) from None
        return _replay_stream(request, response, starting_after=starting_after)

    async def delete(self, request: ApiRequest, response_id: str):
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        await response_delete(response=response)
        return json_response({"id": response_id, "object": "response", "deleted": True})


class ResponseCancelApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request: ApiRequest, response_id: str):
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        response = await response_cancel(response=response)
        return json_response(response.body)


class ResponseToolOutputsApi(AsyncApiView):
    """``POST /v1/responses/{id}/tool_outputs``: 202 with the session's state until the
    set is complete; the request that completes it gets the continuation, like create."""

    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request: ApiRequest, response_id: str):
        _stream_wire(request)
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        body = json_body(request)
        key = idempotency.idempotency_key_parse(request.headers.get("Idempotency-Key"))
        if key:
            earlier = await db_async(sessions.idempotency_claim)(
                response=response, key=key, digest=idempotency.body_digest(body)
            )
            if earlier is not None:
                return await _replayed_answer(request, earlier)
        try:
            submission = await db_async(sessions.tool_outputs_submit)(
                response=response, tool_outputs=body.get("tool_outputs")
            )
        except ApiError as error:
            await _remember_error(response, key, error)
            raise
        if not submission.complete:
            state = await db_async(sessions.session_state)(submission.session)
            if key:
                await db_async(sessions.idempotency_store)(
                    response=response, key=key, status_code=202, answer=state
                )
            return json_response(state, status=202)
        # The continuation itself is the answer (remembered for the key by the service): a
        # retry gets it again, not a second generation.
        prepared = await tool_outputs_continue(
            principal=request.principal,
            request_id=request.request_id,
            response=response,
            submission=submission,
            stream=bool(body.get("stream")),
            idempotency_key=key,
            dialect=request.stream_dialect,
            rate_limit_events=request.rate_limit_events,
        )
        try:
            return await answer_prepared(request, prepared)
        except ApiError as error:
            await _remember_error(response, key, error)  # the answer is this error
            raise


async def _remember_error(response, key: str | None, error: ApiError) -> None:
    """An Idempotency-Key whose answer was an error: a retry gets the same error again."""
    if key:
        await db_async(sessions.idempotency_store)(
            response=response,
            key=key,
            status_code=error.status,
            answer=sessions.idempotent_error(error),
        )


async def _replayed_answer(request: ApiRequest, submission):
    """The first answer to this Idempotency-Key again: as stored (202, an error), or the
    continuation, as SSE from its stored events when the first answer was a stream."""
    continuation, streamed = await db_async(tool_outputs_replay)(submission=submission)
    if continuation is None:
        return json_response(submission.answer, status=submission.status_code)
    if not streamed:
        return json_response(continuation.body)
    return _replay_stream(request, continuation, starting_after=None)


def _replay_stream(request: ApiRequest, response, *, starting_after: int | None):
    """A stored response's events as SSE, with their original sequence numbers."""
    return _sse(
        request,
        response_replay(
            response=response,
            starting_after=starting_after,
            keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
        ),
        keepalive_marker=None,
    )


class ResponseInputItemsApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["get"]

    async def get(self, request: ApiRequest, response_id: str):
        query = parse_list_input_items_query(
            # Azure's forms carry api-version (checked by api.azure) on every call.
            {key: request.GET.getlist(key) for key in request.GET if key != "api-version"}
        )
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        return json_response(input_items_page(response=response, query=query))


class InputTokensApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request: ApiRequest):
        tokens_request = parse_input_tokens_request(json_body(request))
        count = await input_tokens_count(principal=request.principal, request=tokens_request)
        return json_response({"object": "response.input_tokens", "input_tokens": count})


class ResponseCompactApi(AsyncApiView):
    """``POST /v1/responses/compact``: the context as user messages and one encrypted
    ``compaction`` item (responses.services.compaction)."""

    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request: ApiRequest):
        compacted = await response_compact(
            principal=request.principal, request_id=request.request_id, body=json_body(request)
        )
        request.rate_limit = compacted.rate_limit
        return json_response(compacted.body)
