"""Validation of ``tools`` and ``tool_choice`` (reference §2.3, §2.4).

Only ``function`` tools run here: the platform has no hosted tools, so any other OpenAI tool type
is refused with a 400 that names ``tools[i].type`` and the type, rather than being ignored (a
model told about a tool nobody executes would call it and wait forever).

:func:`parse_tools` returns the tools in the Responses wire shape the Response object echoes
(``{"type": "function", "name", "description", "parameters", "strict"}``);
:func:`parse_tool_choice` returns the normalized choice (a string or a dict) after checking
that every function it names is among those tools.
"""

from __future__ import annotations

from typing import Any, NoReturn

from responses.requests import checks as c
from responses.requests.schemas import check_schema

TOOL_CHOICE_OPTIONS = ("none", "auto", "required")
ALLOWED_TOOLS_MODES = ("auto", "required")

# Every non-function tool type the SDK (3.57.0) knows; all are refused as unsupported.
UNSUPPORTED_TOOL_TYPES = frozenset(
    {
        "file_search", "computer", "computer_use_preview", "web_search", "web_search_2025_08_26",
        "web_search_preview", "web_search_preview_2025_03_11", "mcp", "code_interpreter",
        "programmatic_tool_calling", "image_generation", "local_shell", "shell", "custom",
        "namespace", "tool_search", "apply_patch",
    }
)  # fmt: skip
# tool_choice forms that name a hosted or non-function tool.
UNSUPPORTED_TOOL_CHOICE_TYPES = frozenset(
    {
        "file_search", "web_search_preview", "web_search_preview_2025_03_11", "computer",
        "computer_use_preview", "computer_use", "image_generation", "code_interpreter", "mcp",
        "custom", "apply_patch", "shell", "programmatic_tool_calling",
    }
)  # fmt: skip

_FUNCTION_TOOL_KEYS = frozenset(
    {"type", "name", "description", "parameters", "strict", "output_schema", "defer_loading",
     "allowed_callers", "async"}
)  # fmt: skip
_ALLOWED_CALLERS = ("direct", "programmatic")
# OpenAI refuses more function tools than this in one request ("array too long").
MAX_TOOLS = 128


def parse_tools(value: Any, *, param: str = "tools") -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    tools: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(c.expect_array(value, param=param, max_length=MAX_TOOLS)):
        tool_param = c.at(param, index)
        tool = _parse_tool(raw, param=tool_param)
        if tool["name"] in seen:
            c.fail(
                f"Invalid '{tool_param}.name': duplicate function name '{tool['name']}' (already "
                f"defined by {c.at(param, seen[tool['name']])}). Tool names must be unique.",
                param=c.child(tool_param, "name"),
                code="invalid_value",
            )
        seen[tool["name"]] = index
        tools.append(tool)
    return tuple(tools)


def _parse_tool(raw: Any, *, param: str) -> dict[str, Any]:
    obj = c.expect_object(raw, param=param)
    type_param = c.child(param, "type")
    kind = c.expect_string(c.required(obj, "type", prefix=param), param=type_param)
    if kind != "function":
        if kind in UNSUPPORTED_TOOL_TYPES:
            c.fail(
                f"Tool type '{kind}' is not supported ({type_param}): this platform only runs "
                "tools of type 'function'.",
                param=type_param,
                code="unsupported_value",
            )
        c.fail_value(kind, param=type_param, supported=("function",))
    if "function" in obj and "name" not in obj:
        # The chat-completions shape ({"type": "function", "function": {...}}) is the most common
        # mistake when porting a client; say so instead of only "unknown parameter".
        c.fail(
            f"Missing required parameter: '{param}.name'. Function tools in the Responses API "
            'are flat: {"type": "function", "name": …, "parameters": …}, without the nested '
            "'function' object of chat completions.",
            param=c.child(param, "name"),
            code="missing_required_parameter",
        )
    c.reject_unknown_keys(obj, _FUNCTION_TOOL_KEYS, prefix=param)
    name = c.expect_pattern(
        c.required(obj, "name", prefix=param),
        param=c.child(param, "name"),
        pattern=c.NAME_PATTERN,
        shown=c.NAME_PATTERN_TEXT,
    )
    description = obj.get("description")
    if description is not None:
        c.expect_string(description, param=c.child(param, "description"))
    parameters = obj.get("parameters")
    if parameters is not None:
        c.expect_object(parameters, param=c.child(param, "parameters"))
        check_schema(
            parameters,
            param=c.child(param, "parameters"),
            what=f"function '{name}'",
            code="invalid_function_parameters",
        )
    strict = obj.get("strict")
    if strict is not None:
        c.expect_bool(strict, param=c.child(param, "strict"))
    if obj.get("output_schema") is not None:
        c.expect_object(obj["output_schema"], param=c.child(param, "output_schema"))
    if obj.get("async") is not None:
        c.expect_bool(obj["async"], param=c.child(param, "async"))
    if obj.get("allowed_callers") is not None:
        callers_param = c.child(param, "allowed_callers")
        for i, caller in enumerate(c.expect_array(obj["allowed_callers"], param=callers_param)):
            c.expect_enum(caller, param=c.at(callers_param, i), allowed=_ALLOWED_CALLERS)
    if obj.get("defer_loading") is not None:
        deferred = c.expect_bool(obj["defer_loading"], param=c.child(param, "defer_loading"))
        if deferred:
            # A deferred function is only loaded through tool_search, which does not exist here:
            # the model would never see it.
            c.fail(
                f"'{param}.defer_loading' requires the 'tool_search' tool, which this platform "
                "does not support.",
                param=c.child(param, "defer_loading"),
                code="unsupported_value",
            )
    # output_schema, allowed_callers and async have no effect on a chat-completions engine;
    # they are validated and then left out of the echo, like other unsupported refinements.
    return {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": parameters,
        "strict": strict,
    }


def parse_tool_choice(
    value: Any, *, tools: tuple[dict[str, Any], ...], param: str = "tool_choice"
) -> str | dict[str, Any]:
    """The normalized ``tool_choice``; every function it names must be in ``tools``."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        choice = c.expect_enum(value, param=param, allowed=TOOL_CHOICE_OPTIONS)
        if choice == "required" and not tools:
            c.fail(
                "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.",
                param=param,
                code="invalid_value",
            )
        return choice
    if not isinstance(value, dict):
        c.fail_type(
            value,
            param=param,
            expected="one of 'none', 'auto', 'required' or a tool choice object",
        )
    type_param = c.child(param, "type")
    kind = c.expect_string(c.required(value, "type", prefix=param), param=type_param)
    names = {tool["name"] for tool in tools}
    if kind == "function":
        c.reject_unknown_keys(value, ("type", "name"), prefix=param)
        name = _function_name(value, prefix=param, names=names)
        return {"type": "function", "name": name}
    if kind == "allowed_tools":
        c.reject_unknown_keys(value, ("type", "mode", "tools"), prefix=param)
        mode = c.expect_enum(
            c.required(value, "mode", prefix=param),
            param=c.child(param, "mode"),
            allowed=ALLOWED_TOOLS_MODES,
        )
        list_param = c.child(param, "tools")
        allowed = c.expect_array(
            c.required(value, "tools", prefix=param), param=list_param, min_length=1
        )
        normalized: list[dict[str, Any]] = []
        for index, raw in enumerate(allowed):
            entry_param = c.at(list_param, index)
            entry = c.expect_object(raw, param=entry_param)
            entry_type = c.expect_string(
                c.required(entry, "type", prefix=entry_param), param=c.child(entry_param, "type")
            )
            if entry_type != "function":
                _fail_unsupported_choice(entry_type, param=c.child(entry_param, "type"))
            c.reject_unknown_keys(entry, ("type", "name"), prefix=entry_param)
            name = _function_name(entry, prefix=entry_param, names=names)
            normalized.append({"type": "function", "name": name})
        return {"type": "allowed_tools", "mode": mode, "tools": normalized}
    _fail_unsupported_choice(kind, param=type_param)


def _function_name(obj: dict[str, Any], *, prefix: str, names: set[str]) -> str:
    name_param = c.child(prefix, "name")
    name = c.expect_string(c.required(obj, "name", prefix=prefix), param=name_param)
    if name not in names:
        c.fail(
            f"Tool choice '{name}' not found in 'tools' parameter: {name_param} must name a "
            "function defined in 'tools'.",
            param=name_param,
            code="invalid_value",
        )
    return name


def _fail_unsupported_choice(kind: str, *, param: str) -> NoReturn:
    if kind in UNSUPPORTED_TOOL_CHOICE_TYPES:
        c.fail(
            f"Tool choice type '{kind}' is not supported ({param}): this platform only runs "
            "tools of type 'function'.",
            param=param,
            code="unsupported_value",
        )
    c.fail_value(kind, param=param, supported=("function", "allowed_tools"))
