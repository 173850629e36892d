"""Parsing request bodies safely: malformed JSON, nesting bombs and values no later layer can
hold are a 400 naming the parameter, never a 500.

Python's ``json`` accepts some documents that are valid JSON (or nearly) but break code further
down: a lone surrogate escape (``"\\ud800"``) decodes to a ``str`` that cannot be encoded as UTF-8
(the database, the engine and every log line fail on it); ``1e400`` decodes to infinity;
``NaN``/``Infinity`` are accepted as extensions; an integer of more than 4,300 digits raises
``ValueError`` (CPython's int-conversion limit). All of them are refused here, once, for every
endpoint that reads JSON, with ``param`` naming where the value sits (``input[0].content[1].text``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings

from core.errors import InvalidRequest, MalformedJson

# A \uD800–\uDFFF escape in the raw body: the only way a surrogate gets into a parsed string
# (raw bytes that are not UTF-8 already fail to decode). Valid pairs match too; they are then
# told apart by the slower per-string check, which only runs when this matches.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _HugeInteger:
    """Stands in for an integer literal Python refuses to convert (over 4,300 digits)."""

    __slots__ = ()


_HUGE = _HugeInteger()


def _parse_int(text: str) -> int | _HugeInteger:
    try:
        return int(text)
    except ValueError:
        return _HUGE


def _bad_string(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem(value: Any, *, limit: int, strings: bool) -> tuple[str, Any] | None:
    """The first problem in ``value``: ``(kind, node)``; the node is the offending value (or, for
    a bad key, the object holding it). An iterative walk: recursion here would reintroduce the
    very RecursionError that deep nesting causes."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return "depth", node
        if isinstance(node, dict):
            for key, child in node.items():
                if strings and _bad_string(key):
                    return "surrogate", node
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1))
                elif (found := _scalar_problem(child, strings=strings)) is not None:
                    return found, child
        elif isinstance(node, list):
            for child in node:
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1))
                elif (found := _scalar_problem(child, strings=strings)) is not None:
                    return found, child
        elif (found := _scalar_problem(node, strings=strings)) is not None:
            return found, node
    return None


def _scalar_problem(value: Any, *, strings: bool) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "number"
    if value is _HUGE:
        return "integer"
    if strings and isinstance(value, str) and _bad_string(value):
        return "surrogate"
    return None


def _path_to(root: Any, target: Any) -> str | None:
    """The dotted/indexed path of ``target`` (by identity) inside ``root``, as OpenAI names
    params; None for the root itself. Only runs once a problem was found."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path or None
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(child, dict | list | str | float) or child is _HUGE:
                    stack.append((child, f"{path}.{key}" if path else str(key)))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, dict | list | str | float) or child is _HUGE:
                    stack.append((child, f"{path}[{index}]"))
    return None


def _printable(path: str | None) -> str | None:
    # The path may itself hold the bad key; the message must stay encodable.
    return None if path is None else path.encode("utf-8", "replace").decode("utf-8")


def _refuse(kind: str, node: Any, root: Any) -> InvalidRequest:
    if kind == "depth":
        return InvalidRequest(
            f"The JSON body is nested too deeply (limit {settings.MAX_JSON_DEPTH} levels).",
            code="json_too_deep",
        )
    param = _printable(_path_to(root, node))
    where = f"'{param}'" if param else "the request body"
    if kind == "surrogate":
        return InvalidRequest(
            f"Invalid {where}: the text contains a lone UTF-16 surrogate escape (\\ud800–\\udfff "
            "without its pair), which is not valid Unicode text.",
            param=param,
            code="invalid_value",
        )
    if kind == "integer":
        return InvalidRequest(
            f"Invalid {where}: integer has too many digits.",
            param=param,
            code="invalid_value",
        )
    return InvalidRequest(
        f"Invalid {where}: number is out of range (expected a finite number).",
        param=param,
        code="invalid_value",
    )


def parse_json_body(raw: bytes) -> Any:
    """Decode a JSON request body, enforcing ``settings.MAX_JSON_DEPTH`` and refusing values
    that cannot be stored or sent on (see the module docstring)."""
    if not raw.strip():
        raise MalformedJson()
    try:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
                raise
            # The int-conversion limit: parse again, marking such integers, to name the param.
            value = json.loads(raw, parse_int=_parse_int)
    except RecursionError as exc:
        # The C decoder gives up on very deep nesting with RecursionError: that is the client's
        # doing, so it is a 400 like any other over-deep document.
        raise InvalidRequest(
            f"The JSON body is nested too deeply (limit {settings.MAX_JSON_DEPTH} levels).",
            code="json_too_deep",
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedJson() from exc
    strings = _SURROGATE_ESCAPE.search(raw) is not None
    found = _problem(value, limit=settings.MAX_JSON_DEPTH, strings=strings)
    if found is not None:
        raise _refuse(*found, value)
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    value = parse_json_body(raw)
    if not isinstance(value, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return value
