"""Parsing request bodies safely: malformed JSON and nesting bombs are a 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from api.errors import InvalidRequest, MalformedJson


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative walk: recursion here would reintroduce the very RecursionError we guard against.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def parse_json_body(raw: bytes) -> Any:
    """Decode a JSON request body, enforcing ``settings.MAX_JSON_DEPTH``."""
    if not raw.strip():
        raise MalformedJson()
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        # The C decoder gives up on very deep nesting with RecursionError: that is the client's
        # doing, so it is a 400 like any other over-deep document.
        raise InvalidRequest(
            f"The JSON body is nested too deeply (limit {settings.MAX_JSON_DEPTH} levels).",
            code="json_too_deep",
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedJson() from exc
    if _depth_exceeds(value, settings.MAX_JSON_DEPTH):
        raise InvalidRequest(
            f"The JSON body is nested too deeply (limit {settings.MAX_JSON_DEPTH} levels).",
            code="json_too_deep",
        )
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    value = parse_json_body(raw)
    if not isinstance(value, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return value
