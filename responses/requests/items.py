"""Canonical input items → the stored items ``GET /v1/responses/{id}/input_items`` returns.

The shapes are the ``openai`` SDK's ``ResponseItem`` members, which is what the SDK parses the
list into:

* user/system/developer messages → ``ResponseInputMessageItem``
  (``{"id": "msg_…", "type": "message", "role", "content": [input_text…], "status"}``);
* assistant messages → ``ResponseOutputMessage`` (``output_text`` parts with ``annotations``,
  ``refusal`` parts, ``phase`` when given);
* ``function_call`` → ``ResponseFunctionToolCallItem`` (``fc_`` id, ``status``);
* ``function_call_output`` → ``ResponseFunctionToolCallOutputItem`` (``fco_`` id, ``status``);
* ``reasoning`` → ``ResponseReasoningItem`` (its id is always the client's).

Two steps, in this order: :func:`resolve_item_references` (the service passes the stored items the
caller may reference) and :func:`stored_input_items` (ids and statuses). Ids the client sent are
kept, so an item re-sent from an earlier output keeps its identity; within one list every id
is unique, because the SDK paginates with ``after=<id>``.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from core.errors import InvalidRequest
from responses.streaming import ids

_STATUS_DEFAULT = "completed"


def function_call_output_id() -> str:
    """``fco_`` + 48 hex characters, the length of the other item ids (see ``streaming.ids``)."""
    return f"fco_{secrets.token_hex(24)}"


def compaction_id() -> str:
    return f"cmp_{secrets.token_hex(24)}"


_NEW_ID = {
    "message": ids.message_id,
    "function_call": ids.function_call_id,
    "function_call_output": function_call_output_id,
    "reasoning": ids.reasoning_id,
    "compaction": compaction_id,
}
# Kinds whose stored form has no ``status`` (the SDK's item type has none).
_NO_STATUS = ("compaction",)


def resolve_item_references(
    items: Iterable[dict[str, Any]],
    *,
    known: Mapping[str, dict[str, Any]],
    param: str = "input",
) -> list[dict[str, Any]]:
    """Replace each ``item_reference`` by a copy of the stored item it names.

    ``known`` maps item id → stored item, limited by the caller to what this request may see
    (the organization's own, stored responses). An unknown id is a 400 naming ``input[i]``.
    """
    resolved: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if item.get("type") != "item_reference":
            resolved.append(item)
            continue
        target = known.get(item["id"])
        if target is None:
            raise InvalidRequest(
                f"Item with id '{item['id']}' not found.",
                param=f"{param}[{index}]",
                code="invalid_value",
            )
        resolved.append(copy.deepcopy(target))
    return resolved


def stored_input_items(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Canonical (and reference-resolved) input items → stored items with ids, in order."""
    stored: list[dict[str, Any]] = []
    used: set[str] = set()
    for item in items:
        kind = item["type"]  # canonical items always have one
        if kind == "item_reference":
            raise ValueError("resolve item references before storing input items")
        record = _stored_item(item)
        item_id = record.get("id")
        if not item_id or item_id in used:
            # A repeated id (the same message sent twice, one item referenced twice) would make
            # cursor pagination ambiguous.
            item_id = _NEW_ID[kind]()
        record["id"] = item_id
        used.add(item_id)
        stored.append(_ordered(record))
    return stored


def _stored_item(item: dict[str, Any]) -> dict[str, Any]:
    kind = item["type"]
    if kind not in _NEW_ID:
        raise ValueError(f"not a canonical input item type: {kind!r}")
    record = copy.deepcopy(item)
    if kind == "message" and record["role"] != "assistant":
        record.pop("phase", None)
    if kind not in _NO_STATUS:
        record.setdefault("status", _STATUS_DEFAULT)
    return record


# Key order of OpenAI's own objects, so stored items read like theirs.
_KEY_ORDER = ("id", "type", "status", "role", "content", "phase", "call_id", "name", "namespace",
              "arguments", "output", "summary")  # fmt: skip


def _ordered(record: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: record[key] for key in _KEY_ORDER if key in record}
    ordered.update({key: value for key, value in record.items() if key not in ordered})
    return ordered
