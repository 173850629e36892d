"""``POST /v1/responses/{id}/tool_outputs`` (C1): record the outputs (sessions own the state),
and for the request that completes the set, prepare the continuation: a new response chained
with ``previous_response_id = {id}``, configured like the response it continues."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from api.authentication import ApiPrincipal
from responses.models import StoredResponse
from responses.services.create import PreparedResponse, response_prepare
from responses.services.sessions import Submission, session_link_continuation

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


async def tool_outputs_continue(
    *,
    principal: ApiPrincipal,
    request_id: str,
    response: StoredResponse,
    submission: Submission,
    stream: bool,
) -> PreparedResponse:
    prepared = await response_prepare(
        principal=principal,
        request_id=request_id,
        body=continuation_body(response=response, outputs=submission.outputs, stream=stream),
    )
    await sync_to_async(session_link_continuation)(
        session_pk=submission.session.pk, continuation_pk=prepared.generation.record_pk
    )
    return prepared
