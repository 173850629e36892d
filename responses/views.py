"""The Responses endpoints. Views only wire: authenticate (gateway) → parse → service → render."""

from __future__ import annotations

import functools

from django.conf import settings

from api.db import db_async
from api.errors import ApiError, InvalidRequest, ServerError
from api.views import AsyncApiView, json_body, json_response
from responses.requests import parse_input_tokens_request, parse_list_input_items_query
from responses.requests.validation import INCLUDABLE
from responses.selectors import input_items_page, response_get
from responses.services import sessions
from responses.services.background import background_follow
from responses.services.compaction import response_compact
from responses.services.create import response_prepare
from responses.services.generation import KEEPALIVE, generate_events, generation_abandon
from responses.services.input_tokens import input_tokens_count
from responses.services.lifecycle import response_delete
from responses.services.stored import response_cancel, response_replay
from responses.services.tool_outputs import tool_outputs_continue, tool_outputs_replay
from responses.sse import sse_response


def _query_bool(request, name: str) -> bool:
    value = request.GET.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidRequest(f"Invalid value for '{name}': expected a boolean.", param=name)


def _query_includes(request) -> list[str]:
    values = request.GET.getlist("include[]") + request.GET.getlist("include")
    for index, value in enumerate(values):
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"Invalid value for 'include': {value!r}.",
                param=f"include[{index}]",
                code="invalid_value",
            )
    return values


class ResponseCreateApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request):
        prepared = await response_prepare(
            principal=request.principal, request_id=request.request_id, body=json_body(request)
        )
        return await answer_prepared(request, prepared)


async def answer_prepared(request, prepared):
    """Run (or hand to a worker) a prepared response and answer like ``POST /v1/responses``:
    JSON, or SSE when the request asked to stream."""
    generation = prepared.generation
    if prepared.request.background:
        # A worker generates it; this process answers now: the queued Response, or the live
        # events as the worker writes them (keep-alives while it is still queued).
        if not prepared.request.stream:
            return json_response(generation.builder.snapshot() | {"status": "queued"})
        return sse_response(
            background_follow(
                response_pk=generation.record_pk,
                keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
            ),
            request_id=request.request_id,
            keepalive_marker=None,
        )
    if prepared.request.stream:
        return sse_response(
            generate_events(generation),
            request_id=request.request_id,
            keepalive_marker=KEEPALIVE,
            on_close=functools.partial(generation_abandon, generation),
        )
    async for _ in generate_events(generation):
        pass
    error = generation.engine_error
    if error is not None:
        raise ApiError(error.message, status=error.status, type=error.type, code=error.code)
    final = generation.builder.snapshot()
    if final["status"] == "failed":
        raise ServerError("The server had an error while processing your request.")
    return json_response(final)


class ResponseDetailApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["get", "delete"]

    async def get(self, request, response_id: str):
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

    async def delete(self, request, response_id: str):
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        await db_async(response_delete)(response=response)
        return json_response({"id": response_id, "object": "response", "deleted": True})


class ResponseCancelApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request, response_id: str):
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        response = await response_cancel(response=response)
        return json_response(response.body)


class ResponseToolOutputsApi(AsyncApiView):
    """``POST /v1/responses/{id}/tool_outputs`` (C1): 202 with the session's state until the
    set is complete; the request that completes it gets the continuation, like create."""

    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request, response_id: str):
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        body = json_body(request)
        key = request.headers.get("Idempotency-Key")
        if key:
            earlier = await db_async(sessions.idempotency_claim)(response=response, key=key)
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


async def _replayed_answer(request, submission):
    """The first answer to this Idempotency-Key again: as stored (202, an error), or the
    continuation, as SSE from its stored events when the first answer was a stream."""
    continuation, streamed = await db_async(tool_outputs_replay)(submission=submission)
    if continuation is None:
        return json_response(submission.answer, status=submission.status_code)
    if not streamed:
        return json_response(continuation.body)
    return _replay_stream(request, continuation, starting_after=None)


def _replay_stream(request, response, *, starting_after: int | None):
    """A stored response's events as SSE, with their original sequence numbers."""
    return sse_response(
        response_replay(
            response=response,
            starting_after=starting_after,
            keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
        ),
        request_id=request.request_id,
        keepalive_marker=None,
    )


class ResponseInputItemsApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["get"]

    async def get(self, request, response_id: str):
        query = parse_list_input_items_query(
            {key: request.GET.getlist(key) for key in request.GET}
        )
        response = await db_async(response_get)(
            organization=request.principal.organization, response_id=response_id
        )
        return json_response(input_items_page(response=response, query=query))


class InputTokensApi(AsyncApiView):
    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request):
        tokens_request = parse_input_tokens_request(json_body(request))
        count = await input_tokens_count(principal=request.principal, request=tokens_request)
        return json_response({"object": "response.input_tokens", "input_tokens": count})


class ResponseCompactApi(AsyncApiView):
    """``POST /v1/responses/compact``: the context as user messages and one encrypted
    ``compaction`` item (responses.services.compaction)."""

    endpoint_group = "responses"
    http_method_names = ["post"]

    async def post(self, request):
        compacted = await response_compact(
            principal=request.principal, request_id=request.request_id, body=json_body(request)
        )
        return json_response(compacted)
