"""Plain-dict builders for the Response object and everything inside it, in OpenAI's exact shape.

Organized top-down:

* :class:`ResponseEcho` — the request fields a Response echoes back, already resolved by the caller;
* :func:`response_object` — the Response itself, every key of reference §3.4/§7.3 always present;
* output items (:func:`message_item`, :func:`function_call_item`, :func:`reasoning_item`) and
  their content parts;
* :func:`usage_object`, :func:`response_error`, :func:`incomplete_details`;
* logprob renderers for stream deltas (no ``bytes``) and for final ``output_text`` parts (with).

Everything returns fresh dicts that share no mutable state with the inputs, so a caller may store
or mutate one event's payload without changing another's. No Django, no I/O.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from engines.runtime.types import TokenLogprob, TopLogprob

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]
IncompleteReason = Literal["max_output_tokens", "content_filter"]

# ``Response.error.code`` is a closed enum in the SDK (and in OpenAI's spec); anything else would
# make a strictly validating client reject the whole Response, so other codes fold into
# ``server_error``. The flat ``error`` stream event keeps the precise code (its ``code`` is free).
RESPONSE_ERROR_CODES: frozenset[str] = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)

# OpenAI reports "practically impossible" tokens as -9999.0; vLLM can produce -inf, which plain
# JSON cannot carry and the SDK's ``logprob: float`` would not accept as null.
_LOGPROB_FLOOR = -9999.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseEcho:
    """The request side of a Response, as the caller resolved it (defaults are OpenAI's).

    ``service_tier`` is the tier actually used, never ``"auto"`` once resolved;
    ``reasoning`` is the effective config (``{"effort": …, "summary": …}``) or None.
    """

    model: str
    instructions: str | list[dict[str, Any]] | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    truncation: Literal["auto", "disabled"] = "disabled"
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    reasoning: dict[str, Any] | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    store: bool = True
    background: bool = False
    service_tier: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    user: str | None = None
    conversation: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None


def response_object(
    *,
    response_id: str,
    created_at: int,
    echo: ResponseEcho,
    status: ResponseStatus,
    output: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """A complete Response dict; ``output``/``usage``/``error`` are embedded as given."""
    # Key order follows the §3.4 skeleton so stored bodies and logs read like OpenAI's.
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": completed_at,
        "status": status,
        "incomplete_details": incomplete_details,
        "error": error,
        "model": echo.model,
        "previous_response_id": echo.previous_response_id,
        "instructions": copy.deepcopy(echo.instructions),
        "output": output if output is not None else [],
        "tools": copy.deepcopy(echo.tools),
        "tool_choice": copy.deepcopy(echo.tool_choice),
        "parallel_tool_calls": echo.parallel_tool_calls,
        "truncation": echo.truncation,
        "text": copy.deepcopy(echo.text),
        "reasoning": copy.deepcopy(echo.reasoning),
        "temperature": echo.temperature,
        "top_p": echo.top_p,
        "presence_penalty": echo.presence_penalty,
        "frequency_penalty": echo.frequency_penalty,
        "top_logprobs": echo.top_logprobs,
        "max_output_tokens": echo.max_output_tokens,
        "max_tool_calls": echo.max_tool_calls,
        "store": echo.store,
        "background": echo.background,
        "service_tier": echo.service_tier,
        "metadata": dict(echo.metadata),
        "safety_identifier": echo.safety_identifier,
        "prompt_cache_key": echo.prompt_cache_key,
        "prompt_cache_retention": echo.prompt_cache_retention,
        "user": echo.user,
        "conversation": copy.deepcopy(echo.conversation),
        "prompt": copy.deepcopy(echo.prompt),
        "usage": usage,
    }


# --- output items ---------------------------------------------------------------------------


def message_item(
    *, item_id: str, status: ItemStatus, content: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content if content is not None else [],
    }


def output_text_part(
    text: str = "", *, logprobs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "type": "output_text",
        "text": text,
        "annotations": [],
        "logprobs": logprobs if logprobs is not None else [],
    }


def function_call_item(
    *, item_id: str, call_id: str, name: str, arguments: str = "", status: ItemStatus
) -> dict[str, Any]:
    """A ``function_call`` item. ``arguments`` is the model's raw string, valid JSON or not."""
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def reasoning_item(
    *,
    item_id: str,
    status: ItemStatus,
    summary: Iterable[str] = (),
    content: Iterable[str] = (),
    encrypted_content: str | None = None,
) -> dict[str, Any]:
    """A ``reasoning`` item; ``summary`` and ``content`` are the texts of their parts."""
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [summary_text_part(text) for text in summary],
        "content": [reasoning_text_part(text) for text in content],
        "encrypted_content": encrypted_content,
        "status": status,
    }


def summary_text_part(text: str = "") -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def reasoning_text_part(text: str = "") -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


# --- usage, errors, incomplete details -------------------------------------------------------


def usage_object(
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cached_tokens,
            "cache_write_tokens": cache_write_tokens,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def response_error(code: str | None, message: str) -> dict[str, Any]:
    """``Response.error``; codes outside OpenAI's enum become ``server_error`` (see above)."""
    return {
        "code": code if code in RESPONSE_ERROR_CODES else "server_error",
        "message": message,
    }


def incomplete_details(reason: IncompleteReason) -> dict[str, Any]:
    return {"reason": reason}


# --- logprobs --------------------------------------------------------------------------------


def _finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else _LOGPROB_FLOOR


def _token_bytes(token: str, given: list[int] | None) -> list[int]:
    if given is not None:
        return list(given)
    return list(token.encode("utf-8", "surrogatepass"))


def delta_logprobs(logprobs: Iterable[TokenLogprob]) -> list[dict[str, Any]]:
    """The ``logprobs`` of ``output_text.delta``/``.done`` events (``#ResponseLogProb``)."""
    return [
        {
            "token": lp.token,
            "logprob": _finite(lp.logprob),
            "top_logprobs": [
                {"token": top.token, "logprob": _finite(top.logprob)} for top in lp.top_logprobs
            ],
        }
        for lp in logprobs
    ]


def part_logprobs(logprobs: Iterable[TokenLogprob]) -> list[dict[str, Any]]:
    """The ``logprobs`` of a final ``output_text`` part (``#LogProb``: adds ``bytes``)."""
    return [
        {
            "token": lp.token,
            "logprob": _finite(lp.logprob),
            "bytes": _token_bytes(lp.token, lp.bytes),
            "top_logprobs": [_top_logprob(top) for top in lp.top_logprobs],
        }
        for lp in logprobs
    ]


def _top_logprob(top: TopLogprob) -> dict[str, Any]:
    return {
        "token": top.token,
        "logprob": _finite(top.logprob),
        "bytes": _token_bytes(top.token, top.bytes),
    }
