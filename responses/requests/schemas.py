"""JSON Schemas a client sends (``text.format.schema``, ``tools[i].parameters``) are checked
before admission, so a schema the engine cannot compile into a grammar is a 400 naming the
parameter, not a 502 after the response was stored and billed.

Two checks, both pure:

* the JSON Schema meta-schema (draft 2020-12, with its ``regex`` format: a ``pattern`` or a
  ``patternProperties`` key that does not compile is refused here);
* what guided decoding can turn into a grammar: only local JSON-pointer references (``#`` or
  ``#/…``) that resolve, and no reference loop that consumes nothing (``{"$ref": "#"}`` at the root,
  ``a → b → a`` through ``$ref``/``allOf``/``anyOf``/``oneOf``). Recursion through structure (an
  array of nodes whose items refer back to the node) is fine, as in OpenAI's strict mode.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from responses.requests import checks as c

_META = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)
# Keywords whose values are data, not subschemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
_COMBINATORS = ("allOf", "anyOf", "oneOf")
_CACHED_SCHEMA_CHARS = 32 * 1024


class _Refused(Exception):
    def __init__(self, message: str, path: Iterable[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = tuple(path)


def check_schema(schema: dict[str, Any], *, param: str, what: str, code: str) -> None:
    """400 ``code`` naming ``param`` (and where inside the schema) if ``schema`` is not usable.

    ``what`` names the schema in the message, as OpenAI does ("response_format 'out'",
    "function 'get_weather'")."""
    canonical = json.dumps(schema, sort_keys=True, ensure_ascii=False)
    # Large schemas are checked every time: remembering them could hold a lot of memory.
    verdict = _verdict if len(canonical) <= _CACHED_SCHEMA_CHARS else _verdict.__wrapped__
    refused = verdict(canonical)
    if refused is not None:
        where = _join(param, refused.path)
        c.fail(
            f"Invalid schema for {what}: In context={refused.path!r}, {refused.message}",
            param=where,
            code=code,
        )


@functools.lru_cache(maxsize=512)
def _verdict(canonical: str) -> _Refused | None:
    """Checking a schema costs milliseconds (the meta-schema walk); clients send the same tool
    and format schemas with every request, so the verdict is remembered per canonical text."""
    try:
        _check(json.loads(canonical))
    except _Refused as refused:
        return refused
    return None


def _check(schema: dict[str, Any]) -> None:
    error = best_match(_META.iter_errors(schema))
    if error is not None:
        raise _Refused(error.message, error.absolute_path)
    _check_references(schema)


def _join(param: str, path: tuple[str | int, ...]) -> str:
    out = param
    for part in path:
        out = c.at(out, part) if isinstance(part, int) else c.child(out, str(part))
    return out


def _subschemas(node: Any, path: tuple[str | int, ...]):
    """Every object inside ``node`` that sits in a schema position, with its path."""
    stack = [(node, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            yield current, where
            for key, value in current.items():
                if key not in _DATA_KEYWORDS and isinstance(value, dict | list):
                    stack.append((value, (*where, key)))
        elif isinstance(current, list):
            for index, value in enumerate(current):
                if isinstance(value, dict | list):
                    stack.append((value, (*where, index)))


def _resolve(root: dict[str, Any], ref: str, path: tuple[str | int, ...]) -> Any:
    if not ref.startswith("#"):
        raise _Refused(
            f"reference {ref!r} is not supported: only references within the schema "
            "('#' or '#/$defs/…') can be used.",
            (*path, "$ref"),
        )
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        raise _Refused(
            f"reference {ref!r} is not supported: use a JSON pointer ('#/$defs/…').",
            (*path, "$ref"),
        )
    target: Any = root
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            raise _Refused(f"reference {ref!r} does not resolve.", (*path, "$ref"))
    if not isinstance(target, dict | bool):
        raise _Refused(f"reference {ref!r} does not point to a schema.", (*path, "$ref"))
    return target


def _check_references(root: dict[str, Any]) -> None:
    # Edges of the "no progress" graph: a schema leads, without consuming any input, to the
    # target of its $ref and to the members of its combinators. A cycle there has no grammar.
    edges: dict[int, list[Any]] = {}
    paths: dict[int, tuple[str | int, ...]] = {}
    for node, path in _subschemas(root, ()):
        paths[id(node)] = path
        targets: list[Any] = []
        ref = node.get("$ref")
        if isinstance(ref, str):
            targets.append(_resolve(root, ref, path))
        for keyword in _COMBINATORS:
            members = node.get(keyword)
            if isinstance(members, list):
                targets.extend(member for member in members if isinstance(member, dict))
        edges[id(node)] = targets

    done: set[int] = set()
    for start in list(edges):
        if start in done:
            continue
        on_path: set[int] = set()
        stack: list[tuple[int, int]] = [(start, 0)]
        on_path.add(start)
        while stack:
            node, index = stack[-1]
            targets = edges.get(node, [])
            if index >= len(targets):
                stack.pop()
                on_path.discard(node)
                done.add(node)
                continue
            stack[-1] = (node, index + 1)
            target = id(targets[index])
            if target in on_path:
                raise _Refused(
                    "the schema refers to itself in a loop without any structure in between "
                    "(a $ref cycle), which cannot be generated.",
                    paths.get(node, ()),
                )
            if target not in done and target in edges:
                on_path.add(target)
                stack.append((target, 0))
