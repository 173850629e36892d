"""Pure builders for the stream events we emit, one function per event ``type`` (reference §4.3).

Builders return plain dicts in the canonical (``openai``) vocabulary and never set
``sequence_number``: numbering is the job of :class:`responses.streaming.builder.StreamBuilder`
alone, so a sequence can never have two sources of truth. Other dialects are produced
later from these dicts by :mod:`responses.streaming.encoder`, never here.

Order of the file: response lifecycle, output items, content parts, output text, reasoning text,
reasoning summaries, function-call arguments, the ``error`` event.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]

RESPONSE_CREATED = "response.created"
RESPONSE_QUEUED = "response.queued"
RESPONSE_IN_PROGRESS = "response.in_progress"
RESPONSE_COMPLETED = "response.completed"
RESPONSE_INCOMPLETE = "response.incomplete"
RESPONSE_FAILED = "response.failed"
OUTPUT_ITEM_ADDED = "response.output_item.added"
OUTPUT_ITEM_DONE = "response.output_item.done"
CONTENT_PART_ADDED = "response.content_part.added"
CONTENT_PART_DONE = "response.content_part.done"
OUTPUT_TEXT_DELTA = "response.output_text.delta"
OUTPUT_TEXT_DONE = "response.output_text.done"
REASONING_TEXT_DELTA = "response.reasoning_text.delta"
REASONING_TEXT_DONE = "response.reasoning_text.done"
REASONING_SUMMARY_PART_ADDED = "response.reasoning_summary_part.added"
REASONING_SUMMARY_PART_DONE = "response.reasoning_summary_part.done"
REASONING_SUMMARY_TEXT_DELTA = "response.reasoning_summary_text.delta"
REASONING_SUMMARY_TEXT_DONE = "response.reasoning_summary_text.done"
FUNCTION_CALL_ARGUMENTS_DELTA = "response.function_call_arguments.delta"
FUNCTION_CALL_ARGUMENTS_DONE = "response.function_call_arguments.done"
ERROR = "error"
RESPONSE_RATE_LIMITS_UPDATED = "response.rate_limits.updated"
RESPONSE_ADDITIONAL_CONTEXT = "response.additional_context"

# Exactly one of these ends every stream (§4.4).
TERMINAL_TYPES: frozenset[str] = frozenset(
    {RESPONSE_COMPLETED, RESPONSE_INCOMPLETE, RESPONSE_FAILED}
)


# --- response lifecycle ----------------------------------------------------------------------


def response_created(response: dict[str, Any]) -> Event:
    return {"type": RESPONSE_CREATED, "response": response}


def response_queued(response: dict[str, Any]) -> Event:
    return {"type": RESPONSE_QUEUED, "response": response}


def response_in_progress(response: dict[str, Any]) -> Event:
    return {"type": RESPONSE_IN_PROGRESS, "response": response}


def response_completed(response: dict[str, Any]) -> Event:
    return {"type": RESPONSE_COMPLETED, "response": response}


def response_incomplete(response: dict[str, Any]) -> Event:
    return {"type": RESPONSE_INCOMPLETE, "response": response}


def response_failed(response: dict[str, Any]) -> Event:
    return {"type": RESPONSE_FAILED, "response": response}


# --- output items ----------------------------------------------------------------------------


def output_item_added(*, output_index: int, item: dict[str, Any]) -> Event:
    return {"type": OUTPUT_ITEM_ADDED, "output_index": output_index, "item": item}


def output_item_done(*, output_index: int, item: dict[str, Any]) -> Event:
    return {"type": OUTPUT_ITEM_DONE, "output_index": output_index, "item": item}


# --- content parts (output_text and reasoning_text) ------------------------------------------


def content_part_added(
    *, item_id: str, output_index: int, content_index: int, part: dict[str, Any]
) -> Event:
    return {
        "type": CONTENT_PART_ADDED,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "part": part,
    }


def content_part_done(
    *, item_id: str, output_index: int, content_index: int, part: dict[str, Any]
) -> Event:
    return {
        "type": CONTENT_PART_DONE,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "part": part,
    }


# --- output text -----------------------------------------------------------------------------


def output_text_delta(
    *,
    item_id: str,
    output_index: int,
    content_index: int,
    delta: str,
    logprobs: list[dict[str, Any]] | None = None,
) -> Event:
    # ``logprobs`` is required by the schema even when not requested: then it is ``[]``.
    return {
        "type": OUTPUT_TEXT_DELTA,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": delta,
        "logprobs": logprobs if logprobs is not None else [],
    }


def output_text_done(
    *,
    item_id: str,
    output_index: int,
    content_index: int,
    text: str,
    logprobs: list[dict[str, Any]] | None = None,
) -> Event:
    return {
        "type": OUTPUT_TEXT_DONE,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "text": text,
        "logprobs": logprobs if logprobs is not None else [],
    }


# --- raw reasoning text ----------------------------------------------------------------------


def reasoning_text_delta(
    *, item_id: str, output_index: int, content_index: int, delta: str
) -> Event:
    return {
        "type": REASONING_TEXT_DELTA,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": delta,
    }


def reasoning_text_done(*, item_id: str, output_index: int, content_index: int, text: str) -> Event:
    return {
        "type": REASONING_TEXT_DONE,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "text": text,
    }


# --- reasoning summaries ---------------------------------------------------------------------


def reasoning_summary_part_added(
    *, item_id: str, output_index: int, summary_index: int, part: dict[str, Any]
) -> Event:
    return {
        "type": REASONING_SUMMARY_PART_ADDED,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "part": part,
    }


def reasoning_summary_part_done(
    *,
    item_id: str,
    output_index: int,
    summary_index: int,
    part: dict[str, Any],
    incomplete: bool = False,
) -> Event:
    event: Event = {
        "type": REASONING_SUMMARY_PART_DONE,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "part": part,
    }
    # The schema's only allowed value is "incomplete"; a finished part carries no status at all.
    if incomplete:
        event["status"] = "incomplete"
    return event


def reasoning_summary_text_delta(
    *, item_id: str, output_index: int, summary_index: int, delta: str
) -> Event:
    return {
        "type": REASONING_SUMMARY_TEXT_DELTA,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "delta": delta,
    }


def reasoning_summary_text_done(
    *, item_id: str, output_index: int, summary_index: int, text: str
) -> Event:
    return {
        "type": REASONING_SUMMARY_TEXT_DONE,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "text": text,
    }


# --- function-call arguments -----------------------------------------------------------------


def function_call_arguments_delta(*, item_id: str, output_index: int, delta: str) -> Event:
    return {
        "type": FUNCTION_CALL_ARGUMENTS_DELTA,
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def function_call_arguments_done(
    *, item_id: str, output_index: int, name: str, arguments: str
) -> Event:
    # ``name`` is in OpenAI's spec (#ResponseFunctionCallArgumentsDoneEvent) though the Python
    # SDK's model omits it; extra keys are allowed there, and Open Responses clients need it.
    return {
        "type": FUNCTION_CALL_ARGUMENTS_DONE,
        "item_id": item_id,
        "output_index": output_index,
        "name": name,
        "arguments": arguments,
    }


# --- errors ----------------------------------------------------------------------------------


def error(*, code: str | None, message: str, param: str | None = None) -> Event:
    """OpenAI's flat ``error`` event (§5.4); a nested form is a dialect's business."""
    return {"type": ERROR, "code": code, "message": message, "param": param}


# --- rate limits -----------------------------------------------------------------------------


def response_rate_limits_updated(*, rate_limits: list[dict[str, Any]]) -> Event:
    """Not an OpenAI event: sent only to clients that opt in (``X-Rate-Limit-Events: true``)
    or speak the legacy dialect. ``rate_limits`` is ``[{name, limit, remaining, reset_seconds}]``
    for ``requests`` and ``tokens``, like the Realtime API's ``rate_limits.updated``."""
    return {"type": RESPONSE_RATE_LIMITS_UPDATED, "rate_limits": rate_limits}


# --- additional context (encrypted reasoning) ------------------------------------------------


def response_additional_context(
    *, item_id: str, output_index: int, encrypted_content: str
) -> Event:
    """Not an OpenAI event: announces the encrypted reasoning of a finished reasoning item (the
    blob a ``store=false`` client sends back on its next turn). Generated only for streams whose
    creating request spoke the legacy dialect."""
    return {
        "type": RESPONSE_ADDITIONAL_CONTEXT,
        "item_id": item_id,
        "output_index": output_index,
        "encrypted_content": encrypted_content,
    }
