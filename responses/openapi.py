"""The Responses endpoints in the OpenAPI document (see :mod:`api.openapi`).

Hand-written schemas; the vocabularies (parameter names, ``include`` values, tiers, enums) are
read from :mod:`responses.requests.validation` so the document cannot list a value the validator
refuses or miss one it accepts. ``responses/tests/test_openapi.py`` checks the parameter sets
against the validator both ways.
"""

from __future__ import annotations

from typing import Any

from api.openapi.components import DIALECT_HEADER_PARAMETERS, errors, json_answer, ref
from responses.requests import validation as v
from responses.requests.input_items import ROLES
from responses.requests.tools import TOOL_CHOICE_OPTIONS
from responses.services.compaction import COMPACT_PARAMS

TAG = {
    "name": "Responses",
    "description": "Create, stream, retrieve, cancel and delete responses; tool outputs; input "
    "items; input token counts.",
}

STREAM_EVENTS = (
    "response.created", "response.queued", "response.in_progress",
    "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done",
    "response.output_text.delta", "response.output_text.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.reasoning_text.delta", "response.reasoning_text.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
    "response.completed", "response.incomplete", "response.failed", "error",
    "response.rate_limits.updated",
)  # fmt: skip

_STRING_OR_NULL = {"type": ["string", "null"]}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}

_INPUT_ITEM = {
    "type": "object",
    "description": "An input item: a message (`role` one of "
    + ", ".join(f"`{r}`" for r in ROLES)
    + "), a `function_call`, a `function_call_output`, a `reasoning` item or an "
    "`item_reference`.",
    "additionalProperties": True,
}
_INPUT = {
    "description": "Text (one user message) or a non-empty list of input items.",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "minItems": 1, "items": _INPUT_ITEM},
        {"type": "null"},
    ],
}
_FUNCTION_TOOL = {
    "type": "object",
    "required": ["type", "name"],
    "properties": {
        "type": {
            "type": "string",
            "description": "`function`; hosted tool types (web_search, file_search, …) are "
            "refused with 400 `unsupported_value`.",
        },
        "name": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "parameters": {"type": ["object", "null"]},
        "strict": {"type": ["boolean", "null"]},
    },
}
_TOOL_CHOICE = {
    "description": "`none`, `auto`, `required`, or an object naming a function "
    '(`{"type": "function", "name"}`) or `allowed_tools`.',
    "oneOf": [
        {"type": "string", "enum": list(TOOL_CHOICE_OPTIONS)},
        {"type": "object"},
        {"type": "null"},
    ],
}
_TEXT = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "format": {
            "type": ["object", "null"],
            "description": "`{type: text}`, `{type: json_object}` or "
            "`{type: json_schema, name, schema, strict}` (structured output).",
            "properties": {
                "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]}
            },
            "required": ["type"],
        },
        "verbosity": {"type": ["string", "null"], "enum": [*v.VERBOSITIES, None]},
    },
}
_REASONING = {
    "type": ["object", "null"],
    "properties": {
        "effort": {"type": ["string", "null"], "enum": [*v.REASONING_EFFORTS, None]},
        "summary": {"type": ["string", "null"], "enum": [*v.REASONING_SUMMARIES, None]},
        "generate_summary": {"type": ["string", "null"], "enum": [*v.REASONING_SUMMARIES, None]},
        "context": {"type": ["string", "null"], "enum": [*v.REASONING_CONTEXTS, None]},
        "mode": {"type": ["string", "null"]},
    },
}
_INCLUDE = {
    "type": ["array", "null"],
    "description": "Applied here: `message.output_text.logprobs`, "
    "`reasoning.encrypted_content`. The others name tools or inputs this platform does not "
    "run and are accepted as no-ops. Unknown values → 400.",
    "items": {"type": "string", "enum": list(v.INCLUDABLE)},
}
_METADATA = {
    "type": ["object", "null"],
    "maxProperties": v.METADATA_MAX_KEYS,
    "propertyNames": {"maxLength": v.METADATA_MAX_KEY_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": v.METADATA_MAX_VALUE_LENGTH},
}
_NULLABLE_OBJECT = {"type": ["object", "null"]}

# Every parameter of POST /v1/responses. The test compares this set with CREATE_PARAMS.
CREATE_PROPERTIES: dict[str, Any] = {
    "model": {
        "type": "string",
        "minLength": 1,
        "description": "A model served here (`GET /v1/models`).",
    },
    "input": _INPUT,
    "instructions": _STRING_OR_NULL,
    "previous_response_id": {
        "type": ["string", "null"],
        "description": "Continue from a stored response of your organization (`resp_…`).",
    },
    "conversation": {
        "description": 'A conversation (`conv_…` or `{"id": "conv_…"}`) of your '
        "organization: its items are the context, this turn's input and output are appended. "
        "Not with `previous_response_id`.",
        "type": ["string", "object", "null"],
    },
    "tools": {"type": ["array", "null"], "items": _FUNCTION_TOOL},
    "tool_choice": _TOOL_CHOICE,
    "parallel_tool_calls": {"type": ["boolean", "null"]},
    "max_tool_calls": {"type": ["integer", "null"], "minimum": 1},
    "text": _TEXT,
    "reasoning": _REASONING,
    "max_output_tokens": {"type": ["integer", "null"], "minimum": v.MIN_MAX_OUTPUT_TOKENS},
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    "top_logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": v.MAX_TOP_LOGPROBS},
    "presence_penalty": {"type": ["number", "null"], "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": ["number", "null"], "minimum": -2, "maximum": 2},
    "include": _INCLUDE,
    "metadata": _METADATA,
    "store": {
        "type": ["boolean", "null"],
        "description": "Default true. `store: false` responses cannot be retrieved or chained.",
    },
    "background": {
        "type": ["boolean", "null"],
        "description": "Run on a worker; poll or stream by id. Requires `store: true`.",
    },
    "background_options": _NULLABLE_OBJECT,
    "stream": {"type": ["boolean", "null"], "description": "Answer as server-sent events."},
    "stream_options": {
        "type": ["object", "null"],
        "description": "Only with `stream: true`: `{include_obfuscation: bool}`.",
    },
    "truncation": {
        "type": ["string", "null"],
        "enum": [*v.TRUNCATIONS, None],
        "description": "`auto` drops the oldest turns of a long chain; `disabled` (default) "
        "answers 400 `context_length_exceeded`.",
    },
    "user": _STRING_OR_NULL,
    "safety_identifier": {"type": ["string", "null"], "maxLength": v.SAFETY_IDENTIFIER_MAX_LENGTH},
    "prompt_cache_key": {
        "type": ["string", "null"],
        "maxLength": v.PROMPT_CACHE_KEY_MAX_LENGTH,
        "description": "Requests with the same key (within your organization) go to the same "
        "replica, so prefix-cache hits show in `usage.input_tokens_details.cached_tokens`.",
    },
    "prompt_cache_retention": {
        "type": ["string", "null"],
        "enum": [*v.PROMPT_CACHE_RETENTIONS, None],
    },
    "prompt_cache_options": _NULLABLE_OBJECT,
    "service_tier": {
        "type": ["string", "null"],
        "enum": [*v.SERVICE_TIER_MAP, None],
        "description": "Mapped to the engine's request priority; tiers not allowed for your "
        "organization → 400. The tier used is echoed.",
    },
    "prompt": {
        "type": ["object", "null"],
        "description": "A stored prompt template: `{id, version?, variables?}` "
        "(docs/conversation-state.md).",
    },
    "context_management": {
        "type": ["array", "null"],
        "description": "`[{type: compaction, compact_threshold}]`: compact the context "
        "server-side when it grows past the threshold.",
    },
    "moderation": {"type": ["object", "null"], "description": "Not served: → 400."},
    "access_programs": _NULLABLE_OBJECT,
    "image": _NULLABLE_OBJECT,
    # Engine sampling extras (the SDK's extra_body): passed to vLLM.
    "top_k": {"type": ["integer", "null"], "minimum": -1, "description": "vLLM extra."},
    "repetition_penalty": {"type": ["number", "null"], "description": "vLLM extra."},
    "seed": {"type": ["integer", "null"], "description": "vLLM extra."},
    "stop": {
        "description": "vLLM extra: a string or a list of strings.",
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "null"},
        ],
    },
}

INPUT_TOKENS_PROPERTIES: dict[str, Any] = {
    name: CREATE_PROPERTIES[name] for name in v.INPUT_TOKENS_PARAMS if name in CREATE_PROPERTIES
} | {
    "personality": {"type": ["string", "null"], "maxLength": v.PERSONALITY_MAX_LENGTH},
    # Counting the tokens of instructions or tools alone is allowed: input may be empty.
    "input": {
        "oneOf": [{"type": "string"}, {"type": "array", "items": _INPUT_ITEM}, {"type": "null"}]
    },
}

COMPACT_PROPERTIES: dict[str, Any] = {
    name: CREATE_PROPERTIES[name] for name in sorted(COMPACT_PARAMS)
}

_STATUS = {"type": "string", "enum": ["in_progress", "completed", "incomplete"]}
_OUTPUT_ITEM = {
    "description": "An output item: `message`, `function_call` or `reasoning`.",
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "id", "status", "role", "content"],
            "properties": {
                "type": {"const": "message"},
                "id": {"type": "string", "pattern": "^msg_"},
                "status": _STATUS,
                "role": {"const": "assistant"},
                "content": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["output_text", "refusal"]}},
                    },
                },
            },
        },
        {
            "type": "object",
            "required": ["type", "id", "call_id", "name", "arguments", "status"],
            "properties": {
                "type": {"const": "function_call"},
                "id": {"type": "string", "pattern": "^fc_"},
                "call_id": {"type": "string"},
                "name": {"type": "string"},
                "arguments": {"type": "string"},
                "status": _STATUS,
            },
        },
        {
            "type": "object",
            "required": ["type", "id", "summary"],
            "properties": {
                "type": {"const": "reasoning"},
                "id": {"type": "string", "pattern": "^rs_"},
                "summary": {"type": "array"},
                "content": {"type": "array"},
                "encrypted_content": _STRING_OR_NULL,
            },
        },
    ],
}
_USAGE = {
    "type": ["object", "null"],
    "required": ["input_tokens", "input_tokens_details", "output_tokens",
                 "output_tokens_details", "total_tokens"],
    "properties": {
        "input_tokens": {"type": "integer", "minimum": 0},
        "input_tokens_details": {
            "type": "object",
            "required": ["cached_tokens"],
            "properties": {"cached_tokens": {"type": "integer", "minimum": 0}},
        },
        "output_tokens": {"type": "integer", "minimum": 0},
        "output_tokens_details": {
            "type": "object",
            "required": ["reasoning_tokens"],
            "properties": {"reasoning_tokens": {"type": "integer", "minimum": 0}},
        },
        "total_tokens": {"type": "integer", "minimum": 0},
    },
}  # fmt: skip

SCHEMAS: dict[str, Any] = {
    "CreateResponse": {
        "type": "object",
        "required": ["model"],
        "additionalProperties": False,
        "properties": CREATE_PROPERTIES,
    },
    "InputTokensRequest": {
        "type": "object",
        "required": ["model"],
        "additionalProperties": False,
        "properties": INPUT_TOKENS_PROPERTIES,
    },
    "Response": {
        "type": "object",
        "required": ["id", "object", "created_at", "status", "model", "output", "error",
                     "incomplete_details", "instructions", "tools", "tool_choice",
                     "parallel_tool_calls", "text", "truncation", "store", "metadata", "usage"],
        "properties": {
            "id": {"type": "string", "pattern": "^resp_"},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "completed_at": _INT_OR_NULL,
            "status": {
                "type": "string",
                "enum": ["queued", "in_progress", "completed", "incomplete", "failed",
                         "cancelled"],
            },
            "error": {
                "type": ["object", "null"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "incomplete_details": {"type": ["object", "null"]},
            "model": {"type": "string"},
            "previous_response_id": _STRING_OR_NULL,
            "output": {"type": "array", "items": _OUTPUT_ITEM},
            "usage": _USAGE,
            "store": {"type": "boolean"},
            "background": {"type": ["boolean", "null"]},
            "instructions": {"type": ["string", "array", "null"]},
            "tools": {"type": "array"},
            "tool_choice": {"type": ["string", "object"]},
            "parallel_tool_calls": {"type": "boolean"},
            "text": {"type": "object"},
            "truncation": {"type": "string", "enum": list(v.TRUNCATIONS)},
            "reasoning": {"type": ["object", "null"]},
            "prompt_cache_key": _STRING_OR_NULL,
            "service_tier": _STRING_OR_NULL,
            "temperature": _NUMBER_OR_NULL,
            "top_p": _NUMBER_OR_NULL,
            "metadata": {"type": ["object", "null"]},
        },
    },
    "DeletedResponse": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "deleted": {"const": True},
        },
    },
    "InputItemList": {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object", "required": ["type"]}},
            "first_id": _STRING_OR_NULL,
            "last_id": _STRING_OR_NULL,
            "has_more": {"type": "boolean"},
        },
    },
    "InputTokens": {
        "type": "object",
        "required": ["object", "input_tokens"],
        "properties": {
            "object": {"const": "response.input_tokens"},
            "input_tokens": {"type": "integer", "minimum": 0},
        },
    },
    "ToolOutputsRequest": {
        "type": "object",
        "required": ["tool_outputs"],
        "properties": {
            "tool_outputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["call_id", "output"],
                    "properties": {"call_id": {"type": "string"}, "output": {"type": "string"}},
                },
            },
            "stream": {"type": ["boolean", "null"]},
        },
    },
    "CompactRequest": {
        "type": "object",
        "required": ["model"],
        "additionalProperties": False,
        "properties": COMPACT_PROPERTIES,
    },
    "Compaction": {
        "type": "object",
        "required": ["id", "object", "created_at", "output", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response.compaction"},
            "created_at": {"type": "integer"},
            "output": {
                "type": "array",
                "description": "The context's user messages, then one `compaction` item "
                "(its `encrypted_content` is opaque; send it back as input).",
                "items": {"type": "object", "required": ["type"]},
            },
            "usage": _USAGE,
        },
    },
    "ResponseSession": {
        "type": "object",
        "description": "The state of a response waiting for tool outputs.",
        "required": ["object", "response_id", "status", "pending_call_ids",
                     "submitted_call_ids", "expires_at"],
        "properties": {
            "object": {"const": "response.session"},
            "response_id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["active", "awaiting_tool_outputs", "completed", "expired", "cancelled"],
            },
            "pending_call_ids": {"type": "array", "items": {"type": "string"}},
            "submitted_call_ids": {"type": "array", "items": {"type": "string"}},
            "expires_at": _INT_OR_NULL,
            "token_footprint": {"type": ["integer", "null"]},
        },
    },
}  # fmt: skip

_SSE = {
    "schema": {
        "type": "string",
        "description": "With `stream: true`: server-sent events (`event: <type>` + "
        "`data: <json>`), OpenAI's names and order; `: keep-alive` comments after silences. "
        "Types: " + ", ".join(f"`{name}`" for name in STREAM_EVENTS) + ".",
    }
}

_RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^resp_[A-Za-z0-9]+$"},
}
_INCLUDE_QUERY = {
    "name": "include",
    "in": "query",
    "required": False,
    "description": "Also accepted as `include[]` (the SDK's form).",
    "schema": {"type": "array", "items": {"type": "string", "enum": list(v.INCLUDABLE)}},
    "style": "form",
    "explode": True,
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key (per organization, for 24 hours) gets the first "
    "answer back, and exactly one generation runs; the same key with another body → 422 "
    "`idempotency_key_reused`; while the first is still running a retry waits for it.",
    "schema": {"type": "string"},
}
_BOOLEAN_QUERY = {"type": "string", "enum": ["true", "false", "1", "0"]}


def _response_answer(description: str) -> dict[str, Any]:
    answer = json_answer(description, ref("Response"))
    answer["content"]["text/event-stream"] = _SSE
    return answer


PATHS: dict[str, Any] = {
    "/v1/responses": {
        "post": {
            "operationId": "createResponse",
            "tags": ["Responses"],
            "summary": "Create a response (JSON, or SSE with `stream: true`)",
            "parameters": [_IDEMPOTENCY_KEY, *DIALECT_HEADER_PARAMETERS],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("CreateResponse")}},
            },
            "responses": {
                "200": _response_answer(
                    "The finished response, the queued one (`background: true`), or the "
                    "event stream."
                ),
                **errors("422"),
            },
        }
    },
    "/v1/responses/compact": {
        "post": {
            "operationId": "compactResponse",
            "tags": ["Responses"],
            "summary": "Compact a context (input and/or `previous_response_id`) into a summary",
            "description": "The engine summarizes the context; the answer keeps the user "
            "messages and adds one encrypted `compaction` item to send as input next time. "
            "Nothing is stored.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("CompactRequest")}},
            },
            "responses": {"200": json_answer("The compacted context.", ref("Compaction")),
                          **errors()},
        }
    },
    "/v1/responses/input_tokens": {
        "post": {
            "operationId": "countInputTokens",
            "tags": ["Responses"],
            "summary": "Count the input tokens a create would use",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("InputTokensRequest")}},
            },
            "responses": {"200": json_answer("The count.", ref("InputTokens")), **errors()},
        }
    },
    "/v1/responses/{response_id}": {
        "get": {
            "operationId": "getResponse",
            "tags": ["Responses"],
            "summary": "Retrieve a stored response, or replay its events",
            "parameters": [
                _RESPONSE_ID,
                _INCLUDE_QUERY,
                {
                    "name": "stream",
                    "in": "query",
                    "required": False,
                    "description": "Replay the stored events as SSE (live while it runs).",
                    "schema": _BOOLEAN_QUERY,
                },
                {
                    "name": "starting_after",
                    "in": "query",
                    "required": False,
                    "description": "With `stream=true`: resume after this `sequence_number`.",
                    "schema": {"type": "integer"},
                },
                {
                    "name": "include_obfuscation",
                    "in": "query",
                    "required": False,
                    "description": "Accepted for the SDK's sake; no effect on a replay.",
                    "schema": _BOOLEAN_QUERY,
                },
                *DIALECT_HEADER_PARAMETERS,
            ],
            "responses": {"200": _response_answer("The response or its events."), **errors()},
        },
        "delete": {
            "operationId": "deleteResponse",
            "tags": ["Responses"],
            "summary": "Delete a stored response",
            "parameters": [_RESPONSE_ID],
            "responses": {
                "200": json_answer("Deleted.", ref("DeletedResponse")),
                **errors("409"),
            },
        },
    },
    "/v1/responses/{response_id}/cancel": {
        "post": {
            "operationId": "cancelResponse",
            "tags": ["Responses"],
            "summary": "Cancel a background or in-progress response",
            "parameters": [_RESPONSE_ID],
            "responses": {
                "200": json_answer("The cancelled (or already finished) response.",
                                   ref("Response")),
                **errors("409"),
            },
        }
    },
    "/v1/responses/{response_id}/tool_outputs": {
        "post": {
            "operationId": "submitToolOutputs",
            "tags": ["Responses"],
            "summary": "Extension: submit outputs for the function calls a response waits on",
            "description": "When the set of pending calls is complete, generation continues "
            "as a new response chained with `previous_response_id = {response_id}` (JSON or "
            "SSE, like create); earlier partial submissions get 202 with the session state. "
            "Unknown `call_id` → 400; already submitted → 409; after the deadline → 410.",
            "parameters": [_RESPONSE_ID, _IDEMPOTENCY_KEY, *DIALECT_HEADER_PARAMETERS],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("ToolOutputsRequest")}},
            },
            "responses": {
                "200": _response_answer("The continuation."),
                "202": json_answer("Accepted; other calls are still pending.",
                                   ref("ResponseSession")),
                **errors("409", "410", "422"),
            },
        }
    },
    "/v1/responses/{response_id}/input_items": {
        "get": {
            "operationId": "listInputItems",
            "tags": ["Responses"],
            "summary": "List a response's input items",
            "parameters": [
                _RESPONSE_ID,
                {"name": "after", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "order", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"}},
                _INCLUDE_QUERY,
            ],
            "responses": {"200": json_answer("A page of items.", ref("InputItemList")),
                          **errors()},
        }
    },
}  # fmt: skip
