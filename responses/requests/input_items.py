"""Validation of the ``input`` parameter into canonical item dicts.

``input`` is a string (one user message) or a list of items (reference §2.2). Each item is
checked against the shapes of the ``openai`` SDK's ``ResponseInputItemParam`` members and
rewritten into one canonical form, so everything downstream (storage, translation) handles exactly
one shape per kind:

* ``message`` — ``{"type", "role", "content": [parts], "id"?, "status"?, "phase"?}``; string
  content becomes one ``input_text`` part (``output_text`` for assistant messages); user
  messages may also carry ``input_image`` and ``input_file`` parts (:mod:`.media`);
* ``function_call`` — ``{"type", "call_id", "name", "arguments", "id"?, "status"?, "namespace"?}``;
* ``function_call_output`` — ``{"type", "call_id", "output", "id"?, "status"?, "name"?,
  "namespace"?}``, ``output`` a string or a list of ``input_text`` parts;
* ``reasoning`` — ``{"type", "id", "summary", "content"?, "status"?, "encrypted_content"?}``;
* ``item_reference`` — ``{"type", "id"}``; the service resolves it against stored items.

Ids are not generated here (that is :mod:`responses.requests.items`): parsing stays
deterministic. Everything the engine cannot take yet (built-in
tool items) is refused with a 400 that names the item, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from responses.requests import checks as c
from responses.requests import media

ROLES = ("user", "assistant", "system", "developer")
ITEM_STATUSES = ("in_progress", "completed", "incomplete")
PHASES = ("commentary", "final_answer")
MAX_CALL_ID_LENGTH = 64

# Item types OpenAI defines that this platform does not run (reference §2.2, SDK 3.57.0).
UNSUPPORTED_ITEM_TYPES = frozenset(
    {
        "file_search_call", "web_search_call", "computer_call", "computer_call_output",
        "image_generation_call", "code_interpreter_call", "local_shell_call",
        "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
        "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
        "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output",
        "tool_search_call", "tool_search_output", "additional_tools", "program",
        "program_output", "configuration_update", "compaction_trigger",
    }
)  # fmt: skip
SUPPORTED_ITEM_TYPES = (
    "message", "function_call", "function_call_output", "reasoning", "item_reference",
    "compaction",
)  # fmt: skip
# OpenAI's limit on a compaction item's encrypted content.
MAX_COMPACTION_CONTENT_LENGTH = 20 * 1024 * 1024

# Keys of each item kind, as the SDK declares them (param and returned-item shapes together:
# clients commonly re-send ``response.output`` items verbatim).
_MESSAGE_KEYS = frozenset({"type", "role", "content", "id", "status", "phase"})
_FUNCTION_CALL_KEYS = frozenset(
    {"type", "call_id", "name", "arguments", "id", "status", "namespace", "caller", "async",
     "created_by"}
)  # fmt: skip
_FUNCTION_CALL_OUTPUT_KEYS = frozenset(
    {"type", "call_id", "output", "id", "status", "name", "namespace", "caller", "created_by"}
)
_REASONING_KEYS = frozenset({"type", "id", "summary", "content", "encrypted_content", "status"})
_ITEM_REFERENCE_KEYS = frozenset({"type", "id"})
_COMPACTION_KEYS = frozenset({"type", "id", "encrypted_content", "created_by"})

_INPUT_TEXT_KEYS = frozenset({"type", "text", "prompt_cache_breakpoint"})
_OUTPUT_TEXT_KEYS = frozenset({"type", "text", "annotations", "logprobs"})
_REFUSAL_KEYS = frozenset({"type", "refusal"})
_INPUT_CONTENT_TYPES = ("input_text", "input_image", "input_file")
_ASSISTANT_CONTENT_TYPES = ("output_text", "refusal")


@dataclass(frozen=True, slots=True)
class ParsedInput:
    items: tuple[dict[str, Any], ...]
    """Canonical items, in the client's order."""
    invalid_arguments: tuple[str, ...] = ()
    """Params (``input[i].arguments``) of function calls whose arguments are not valid JSON: kept
    as history, recorded so the service can log or surface them."""


def parse_input(value: Any, *, param: str = "input") -> ParsedInput:
    """Validate ``input`` (a string or a list of items) into canonical items."""
    if isinstance(value, str):
        text = c.expect_string(value, param=param)
        return ParsedInput(items=(_message("user", [_input_text(text)]),))
    items = c.expect_array(value, param=param)
    parsed: list[dict[str, Any]] = []
    invalid: list[str] = []
    for index, raw in enumerate(items):
        item_param = c.at(param, index)
        item = parse_item(raw, param=item_param)
        if item["type"] == "function_call" and not _is_json(item["arguments"]):
            invalid.append(c.child(item_param, "arguments"))
        parsed.append(item)
    return ParsedInput(items=tuple(parsed), invalid_arguments=tuple(invalid))


def parse_item(raw: Any, *, param: str) -> dict[str, Any]:
    """One input item → its canonical dict; 400 naming ``param`` (``input[i]…``) otherwise."""
    if not isinstance(raw, dict):
        c.fail_type(raw, param=param, expected="an object")
    kind = raw.get("type")
    if kind is None:
        # ``type`` is optional on EasyInputMessage and on ItemReference.
        if "role" in raw:
            kind = "message"
        elif "id" in raw and set(raw) <= _ITEM_REFERENCE_KEYS:
            kind = "item_reference"
        else:
            c.fail_missing(c.child(param, "type"))
    if not isinstance(kind, str):
        c.fail_type(kind, param=c.child(param, "type"), expected="a string")
    if kind == "message":
        return _parse_message(raw, param=param)
    if kind == "function_call":
        return _parse_function_call(raw, param=param)
    if kind == "function_call_output":
        return _parse_function_call_output(raw, param=param)
    if kind == "reasoning":
        return _parse_reasoning(raw, param=param)
    if kind == "compaction":
        return _parse_compaction(raw, param=param)
    if kind == "item_reference":
        c.reject_unknown_keys(raw, _ITEM_REFERENCE_KEYS, prefix=param)
        item_id = c.required_string(raw, "id", prefix=param, min_length=1)
        return {"type": "item_reference", "id": item_id}
    if kind in UNSUPPORTED_ITEM_TYPES:
        c.fail(
            f"Input items of type '{kind}' are not supported: this platform only runs function "
            f"tools (item {param}). Supported item types are: "
            f"{c.quoted_list(SUPPORTED_ITEM_TYPES)}.",
            param=c.child(param, "type"),
            code="unsupported_value",
        )
    c.fail_value(kind, param=c.child(param, "type"), supported=SUPPORTED_ITEM_TYPES)


# --- messages --------------------------------------------------------------------------------


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _input_text(text: str) -> dict[str, Any]:
    return {"type": "input_text", "text": text}


def _output_text(text: str) -> dict[str, Any]:
    # Annotations and logprobs a client re-sends from an earlier output are dropped: they do not
    # reach the model and this platform produces no annotations of its own.
    return {"type": "output_text", "text": text, "annotations": []}


def _parse_message(raw: dict[str, Any], *, param: str) -> dict[str, Any]:
    c.reject_unknown_keys(raw, _MESSAGE_KEYS, prefix=param)
    role = c.required_enum(raw, "role", prefix=param, allowed=ROLES)
    content_param = c.child(param, "content")
    content = c.required(raw, "content", prefix=param)
    if isinstance(content, str):
        text = c.expect_string(content, param=content_param)
        parts = [_output_text(text) if role == "assistant" else _input_text(text)]
    elif isinstance(content, list):
        parts = [
            _parse_content_part(part, role=role, param=c.at(content_param, index))
            for index, part in enumerate(content)
        ]
    else:
        c.fail_type(
            content,
            param=content_param,
            expected="one of a string or array of input text, image, or file parts",
        )
    item = _message(role, parts)
    if raw.get("id") is not None:
        item["id"] = c.expect_string(raw["id"], param=c.child(param, "id"), min_length=1)
    if raw.get("status") is not None:
        item["status"] = c.required_enum(raw, "status", prefix=param, allowed=ITEM_STATUSES)
    if raw.get("phase") is not None:
        phase = c.expect_enum(raw["phase"], param=c.child(param, "phase"), allowed=PHASES)
        # "Not used for user messages" (SDK): kept only where OpenAI's items carry it.
        if role == "assistant":
            item["phase"] = phase
    return item


def _parse_content_part(part: Any, *, role: str, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        c.fail_type(part, param=param, expected="an object")
    type_param = c.child(param, "type")
    kind = c.expect_string(c.required(part, "type", prefix=param), param=type_param)
    if kind in ("input_image", "input_file"):
        if role != "user":
            c.fail(
                f"{param}: '{kind}' parts are only accepted in user messages.",
                param=type_param,
                code="invalid_value",
            )
        if kind == "input_image":
            return media.parse_input_image(part, param=param)
        return media.parse_input_file(part, param=param)
    if role == "assistant":
        if kind == "refusal":
            c.reject_unknown_keys(part, _REFUSAL_KEYS, prefix=param)
            refusal = c.required_string(part, "refusal", prefix=param)
            return {"type": "refusal", "refusal": refusal}
        # ``input_text`` in assistant history is tolerated (several clients send it) and stored
        # as the ``output_text`` OpenAI's assistant items carry.
        if kind in ("output_text", "input_text"):
            keys = _OUTPUT_TEXT_KEYS if kind == "output_text" else _INPUT_TEXT_KEYS
            c.reject_unknown_keys(part, keys, prefix=param)
            return _output_text(_part_text(part, param=param))
        c.fail_value(kind, param=type_param, supported=_ASSISTANT_CONTENT_TYPES)
    # user / system / developer: ``output_text`` is tolerated the same way, the other direction.
    if kind in ("input_text", "output_text"):
        keys = _INPUT_TEXT_KEYS if kind == "input_text" else _OUTPUT_TEXT_KEYS
        c.reject_unknown_keys(part, keys, prefix=param)
        return _input_text(_part_text(part, param=param))
    c.fail_value(kind, param=type_param, supported=_INPUT_CONTENT_TYPES)


def _part_text(part: dict[str, Any], *, param: str) -> str:
    return c.required_string(part, "text", prefix=param)


# --- tool calls ------------------------------------------------------------------------------


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _parse_function_call(raw: dict[str, Any], *, param: str) -> dict[str, Any]:
    c.reject_unknown_keys(raw, _FUNCTION_CALL_KEYS, prefix=param)
    call_id = c.required_string(raw, "call_id", prefix=param, min_length=1)
    name = c.required_string(raw, "name", prefix=param, min_length=1)
    # Required, but an empty string is what a model that emitted no arguments produces.
    if "arguments" not in raw:
        c.fail_missing(c.child(param, "arguments"))
    arguments = c.expect_string(raw["arguments"], param=c.child(param, "arguments"))
    item: dict[str, Any] = {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    _copy_optional_common(raw, item, param=param)
    if raw.get("namespace") is not None:
        item["namespace"] = c.expect_string(raw["namespace"], param=c.child(param, "namespace"))
    return item


def _parse_function_call_output(raw: dict[str, Any], *, param: str) -> dict[str, Any]:
    c.reject_unknown_keys(raw, _FUNCTION_CALL_OUTPUT_KEYS, prefix=param)
    # The newest SDK marks call_id optional, but without it the output cannot be paired with a
    # call; the OpenAPI spec requires it (≤64 characters).
    call_id = c.expect_string(
        c.required(raw, "call_id", prefix=param),
        param=c.child(param, "call_id"),
        min_length=1,
        max_length=MAX_CALL_ID_LENGTH,
    )
    output_param = c.child(param, "output")
    if "output" not in raw or raw["output"] is None:
        c.fail_missing(output_param)
    output = raw["output"]
    if isinstance(output, str):
        normalized: str | list[dict[str, Any]] = c.expect_string(output, param=output_param)
    elif isinstance(output, list):
        normalized = [
            _parse_output_part(part, param=c.at(output_param, index))
            for index, part in enumerate(output)
        ]
    else:
        c.fail_type(
            output, param=output_param, expected="one of a string or array of input text parts"
        )
    item: dict[str, Any] = {
        "type": "function_call_output",
        "call_id": call_id,
        "output": normalized,
    }
    _copy_optional_common(raw, item, param=param)
    for key in ("name", "namespace"):
        if raw.get(key) is not None:
            item[key] = c.expect_string(raw[key], param=c.child(param, key))
    return item


def _parse_output_part(part: Any, *, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        c.fail_type(part, param=param, expected="an object")
    kind = c.required_string(part, "type", prefix=param)
    if kind in ("input_image", "input_file"):
        c.fail(
            f"Function call outputs with '{kind}' parts are not supported by this platform's "
            f"models yet ({param}). Send text ('input_text') only.",
            param=param,
            code="unsupported_value",
        )
    if kind != "input_text":
        c.fail_value(kind, param=c.child(param, "type"), supported=_INPUT_CONTENT_TYPES)
    c.reject_unknown_keys(part, _INPUT_TEXT_KEYS, prefix=param)
    return _input_text(_part_text(part, param=param))


def _copy_optional_common(raw: dict[str, Any], item: dict[str, Any], *, param: str) -> None:
    if raw.get("id") is not None:
        item["id"] = c.expect_string(raw["id"], param=c.child(param, "id"), min_length=1)
    if raw.get("status") is not None:
        item["status"] = c.required_enum(raw, "status", prefix=param, allowed=ITEM_STATUSES)


# --- reasoning -------------------------------------------------------------------------------


def _parse_reasoning(raw: dict[str, Any], *, param: str) -> dict[str, Any]:
    c.reject_unknown_keys(raw, _REASONING_KEYS, prefix=param)
    item_id = c.required_string(raw, "id", prefix=param, min_length=1)
    summary_param = c.child(param, "summary")
    if "summary" not in raw:
        c.fail_missing(summary_param)
    summary = [
        {
            "type": "summary_text",
            "text": _typed_text(part, kind="summary_text", param=c.at(summary_param, i)),
        }
        for i, part in enumerate(c.expect_array(raw["summary"], param=summary_param))
    ]
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": summary}
    if raw.get("content") is not None:
        content_param = c.child(param, "content")
        item["content"] = [
            {
                "type": "reasoning_text",
                "text": _typed_text(part, kind="reasoning_text", param=c.at(content_param, i)),
            }
            for i, part in enumerate(c.expect_array(raw["content"], param=content_param))
        ]
    if raw.get("status") is not None:
        item["status"] = c.required_enum(raw, "status", prefix=param, allowed=ITEM_STATUSES)
    if raw.get("encrypted_content") is not None:
        # Kept opaque here; the service, which knows the caller's organization, opens it
        # (responses.services.encrypted_reasoning) and the param is what its 400 names.
        item["encrypted_content"] = c.expect_string(
            raw["encrypted_content"], param=c.child(param, "encrypted_content"), min_length=1
        )
    return item


def _parse_compaction(raw: dict[str, Any], *, param: str) -> dict[str, Any]:
    """A compaction item from ``/v1/responses/compact`` (or automatic compaction), passed back:
    the service decrypts it (it is bound to the organization that made it)."""
    c.reject_unknown_keys(raw, _COMPACTION_KEYS, prefix=param)
    item: dict[str, Any] = {"type": "compaction"}
    if raw.get("id") is not None:
        item["id"] = c.expect_string(raw["id"], param=c.child(param, "id"), min_length=1)
    item["encrypted_content"] = c.required_string(
        raw,
        "encrypted_content",
        prefix=param,
        min_length=1,
        max_length=MAX_COMPACTION_CONTENT_LENGTH,
    )
    return item


def _typed_text(part: Any, *, kind: str, param: str) -> str:
    obj = c.expect_object(part, param=param)
    c.reject_unknown_keys(obj, ("type", "text"), prefix=param)
    c.required_enum(obj, "type", prefix=param, allowed=(kind,))
    return c.required_string(obj, "text", prefix=param)
