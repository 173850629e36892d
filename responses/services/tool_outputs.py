"""``POST /v1/responses/{id}/tool_outputs``: record the outputs (sessions own the state),
and for the request that completes the set, prepare the continuation: a new response chained
with ``previous_response_id = {id}``, configured like the response it continues.

``Idempotency-Key`` for the completing request: the answer remembered is the continuation
and whether it was streamed, so a retry gets the same kind of answer (:func:`tool_outputs_replay`):
the continuation's Response as JSON, or its stored events again as SSE. A continuation that
cannot even be prepared changes nothing: the session is reopened for the outputs and the key
released, so a retry runs anew.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.db import db_async
from responses.models import StoredResponse, ToolOutputSubmission
from responses.selectors import response_get
from responses.services import sessions
from responses.services.create import PreparedResponse, response_prepare
from responses.services.sessions import Submission, session_link_continuation
from tenants.principal import ApiPrincipal

# Request parameters a Response echoes and its continuation inherits (tools must be sent again
# on the standard OpenAI path; here the platform carries them over for the caller).
_INHERITED = (
    "model",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "temperature",
    "top_p",
    "max_output_tokens",
    "truncation",
    "metadata",
    "background",
)


def continuation_body(
    *, response: StoredResponse, outputs: list[dict[str, Any]], stream: bool
) -> dict[str, Any]:
    body = {key: response.body[key] for key in _INHERITED if response.body.get(key) is not None}
    body.update(
        model=response.model,
        previous_response_id=response.public_id,
        input=outputs,
        store=True,
        stream=stream,
    )
    return body


def _continuation_not_started(
    *, submission: Submission, response: StoredResponse, idempotency_key: str | None, reopen: bool
) -> None:
    if reopen:
        sessions.session_reopen(session=submission.session)
    if idempotency_key:
        sessions.idempotency_release(response=response, key=idempotency_key)


async def tool_outputs_continue(
    *,
    principal: ApiPrincipal,
    request_id: str,
    response: StoredResponse,
    submission: Submission,
    stream: bool,
    idempotency_key: str | None = None,
    dialect: str = "openai",
    rate_limit_events: bool = False,
) -> PreparedResponse:
    try:
        prepared = await response_prepare(
            principal=principal,
            request_id=request_id,
            body=continuation_body(response=response, outputs=submission.outputs, stream=stream),
            dialect=dialect,
            rate_limit_events=rate_limit_events,
        )
    except BaseException as exc:
        # Refused (quota, caps, model gone) or the client left: nothing runs, so the outputs can
        # be submitted again. Except a background continuation whose client left: its row may
        # be written and queued already, and then it runs anyway (create._store_record); the
        # session follows it when it ends (or sessions_repair reopens it if it never existed).
        # Shielded: it must happen even when this request is being cancelled.
        runs_anyway = isinstance(exc, asyncio.CancelledError) and bool(
            response.body.get("background")
        )
        await asyncio.shield(
            db_async(_continuation_not_started)(
                submission=submission,
                response=response,
                idempotency_key=idempotency_key,
                reopen=not runs_anyway,
            )
        )
        raise
    await db_async(session_link_continuation)(
        session_pk=submission.session.pk, continuation_pk=prepared.generation.record_pk
    )
    if idempotency_key:
        await db_async(sessions.idempotency_store)(
            response=response,
            key=idempotency_key,
            status_code=200,
            answer={"continuation_id": prepared.generation.response_id, "stream": stream},
        )
    return prepared


def tool_outputs_replay(*, submission: ToolOutputSubmission) -> tuple[StoredResponse | None, bool]:
    """What an ``Idempotency-Key`` retry answers: ``(continuation, streamed)`` when the first
    request got the continuation, ``(None, False)`` when its answer is stored as it was (a 202
    with the session's state, or an error)."""
    continuation_id = submission.answer.get("continuation_id")
    if continuation_id is None:
        return None, False
    continuation = response_get(organization=submission.organization, response_id=continuation_id)
    return continuation, bool(submission.answer.get("stream"))
