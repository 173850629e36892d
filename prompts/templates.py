"""Rendering a prompt template version with the request's variables (pure).

Placeholders are ``{{name}}`` (spaces inside the braces allowed), in the instructions and in the
text parts of the template's input messages. Every placeholder needs a variable (400 naming
``prompt.variables.<name>``); a variable no placeholder uses is refused too (a typo would
otherwise be silently ignored). Values are strings or ``input_text`` objects; image and file
variables are refused like image and file inputs are.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from responses.requests import checks as c

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_TEXT_PART_TYPES = ("input_text", "output_text")


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    instructions: str | None
    input_items: list[dict[str, Any]]
    version: str


def placeholders(*, instructions: str, input_items: list[dict[str, Any]]) -> list[str]:
    """Variable names a template uses, in order of first use."""
    names: list[str] = []
    for text in [instructions, *_texts(input_items)]:
        for name in PLACEHOLDER.findall(text or ""):
            if name not in names:
                names.append(name)
    return names


def variable_text(value: Any, *, param: str) -> str:
    """A variable's value as text: a string, or an ``input_text`` object."""
    if isinstance(value, str):
        return value
    obj = c.expect_object(value, param=param)
    kind = obj.get("type")
    if kind == "input_text":
        c.reject_unknown_keys(obj, ("type", "text"), prefix=param)
        return c.required_string(obj, "text", prefix=param)
    if kind in ("input_image", "input_file"):
        c.fail(
            f"Invalid '{param}': {kind} variables are not supported, because this platform's "
            "models take text input only.",
            param=param,
            code="unsupported_value",
        )
    c.fail_value(kind, param=c.child(param, "type"), supported=("input_text",))


def render(
    *,
    instructions: str,
    input_items: list[dict[str, Any]],
    version: str,
    variables: dict[str, Any],
) -> RenderedPrompt:
    used = placeholders(instructions=instructions, input_items=input_items)
    for name in variables:
        if name not in used:
            c.fail(
                f"Unknown prompt variable '{name}': prompt version {version} uses "
                f"{c.quoted_list(used) if used else 'no variables'}.",
                param=c.child("prompt.variables", name),
                code="unknown_parameter",
            )
    values: dict[str, str] = {}
    for name in used:
        if name not in variables:
            c.fail(
                f"Missing prompt variable '{name}': prompt version {version} needs a value for "
                "it in 'prompt.variables'.",
                param=c.child("prompt.variables", name),
                code="missing_required_parameter",
            )
        values[name] = variable_text(variables[name], param=c.child("prompt.variables", name))

    def substitute(text: str) -> str:
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)

    items = copy.deepcopy(input_items)
    for item in items:
        content = item.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") in _TEXT_PART_TYPES:
                    part["text"] = substitute(part["text"])
    return RenderedPrompt(
        instructions=substitute(instructions) if instructions else None,
        input_items=items,
        version=version,
    )


def _texts(items: list[dict[str, Any]]) -> list[str]:
    texts = []
    for item in items:
        content = item.get("content")
        if isinstance(content, list):
            texts += [p["text"] for p in content if p.get("type") in _TEXT_PART_TYPES]
    return texts
