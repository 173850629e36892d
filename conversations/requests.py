"""Request bodies of the Conversations endpoints → validated values (pure, no database).

Items are checked by the Responses input-item rules (a conversation item is an input item) and
given ids the way a response's input items are; ``metadata`` follows the same 16 × 64/512 rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from responses.requests import checks as c
from responses.requests.input_items import parse_input
from responses.requests.validation import INCLUDABLE, parse_metadata

MAX_ITEMS_PER_CALL = 20


@dataclass(frozen=True, slots=True)
class CreateConversation:
    metadata: dict[str, str]
    items: tuple[dict[str, Any], ...]


def parse_conversation_create(body: Any) -> CreateConversation:
    obj = c.expect_object(body, param=None)
    c.reject_unknown_keys(obj, ("metadata", "items"), prefix=None)
    return CreateConversation(
        metadata=parse_metadata(obj.get("metadata")), items=_parse_items(obj.get("items"))
    )


def parse_conversation_update(body: Any) -> dict[str, str]:
    obj = c.expect_object(body, param=None)
    c.reject_unknown_keys(obj, ("metadata",), prefix=None)
    # OpenAI requires the key; null clears the metadata like an empty object.
    if "metadata" not in obj:
        c.fail_missing("metadata")
    return parse_metadata(obj.get("metadata"))


def parse_items_create(body: Any) -> tuple[dict[str, Any], ...]:
    obj = c.expect_object(body, param=None)
    c.reject_unknown_keys(obj, ("items",), prefix=None)
    items = _parse_items(c.required(obj, "items", prefix=None))
    if not items:
        c.expect_array([], param="items", min_length=1)
    return items


def parse_includes(values: list[str]) -> tuple[str, ...]:
    """``include`` / ``include[]`` query values (accepted like on the Responses endpoints)."""
    for index, value in enumerate(values):
        c.expect_enum(value, param=c.at("include", index), allowed=INCLUDABLE)
    return tuple(values)


def _parse_items(value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    c.expect_array(value, param="items", max_length=MAX_ITEMS_PER_CALL)
    return parse_input(value, param="items").items
