"""The Conversations endpoints in the OpenAPI document (see :mod:`api.openapi`)."""

from __future__ import annotations

from typing import Any

from api.openapi.components import errors, json_answer, ref
from conversations.requests import MAX_ITEMS_PER_CALL
from responses.requests import validation as v

TAG = {
    "name": "Conversations",
    "description": "Durable conversations: create one, add and list its items, and pass "
    "`conversation` to `POST /v1/responses` so each turn's input and output are appended.",
}

_METADATA = {
    "type": ["object", "null"],
    "maxProperties": v.METADATA_MAX_KEYS,
    "propertyNames": {"maxLength": v.METADATA_MAX_KEY_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": v.METADATA_MAX_VALUE_LENGTH},
}
_ITEMS = {
    "type": "array",
    "maxItems": MAX_ITEMS_PER_CALL,
    "description": f"Input items (as in `POST /v1/responses`), at most {MAX_ITEMS_PER_CALL} "
    "per call.",
    "items": {"type": "object", "additionalProperties": True},
}
_STRING_OR_NULL = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "ConversationCreate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"metadata": _METADATA, "items": {**_ITEMS, "type": ["array", "null"]}},
    },
    "ConversationUpdate": {
        "type": "object",
        "required": ["metadata"],
        "additionalProperties": False,
        "properties": {"metadata": _METADATA},
    },
    "ConversationItemsCreate": {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {"items": {**_ITEMS, "minItems": 1}},
    },
    "Conversation": {
        "type": "object",
        "required": ["id", "object", "created_at", "metadata"],
        "properties": {
            "id": {"type": "string", "pattern": "^conv_"},
            "object": {"const": "conversation"},
            "created_at": {"type": "integer"},
            "metadata": {"type": "object"},
        },
    },
    "ConversationDeleted": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "conversation.deleted"},
            "deleted": {"const": True},
        },
    },
    "ConversationItem": {
        "type": "object",
        "required": ["type", "id"],
        "description": "A message, function call, function call output, reasoning or "
        "compaction item.",
        "properties": {"type": {"type": "string"}, "id": {"type": "string"}},
    },
    "ConversationItemList": {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref("ConversationItem")},
            "first_id": _STRING_OR_NULL,
            "last_id": _STRING_OR_NULL,
            "has_more": {"type": "boolean"},
        },
    },
}

_CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^conv_[A-Za-z0-9]+$"},
}
_ITEM_ID = {
    "name": "item_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
}
_INCLUDE_QUERY = {
    "name": "include",
    "in": "query",
    "required": False,
    "description": "Also accepted as `include[]`; same values as on `POST /v1/responses`.",
    "schema": {"type": "array", "items": {"type": "string", "enum": list(v.INCLUDABLE)}},
    "style": "form",
    "explode": True,
}
_TAGS = ["Conversations"]


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


PATHS: dict[str, Any] = {
    "/v1/conversations": {
        "post": {
            "operationId": "createConversation",
            "tags": _TAGS,
            "summary": "Create a conversation, optionally with its first items",
            "requestBody": _body("ConversationCreate"),
            "responses": {"200": json_answer("The conversation.", ref("Conversation")),
                          **errors()},
        }
    },
    "/v1/conversations/{conversation_id}": {
        "get": {
            "operationId": "getConversation",
            "tags": _TAGS,
            "summary": "Retrieve a conversation",
            "parameters": [_CONVERSATION_ID],
            "responses": {"200": json_answer("The conversation.", ref("Conversation")),
                          **errors()},
        },
        "post": {
            "operationId": "updateConversation",
            "tags": _TAGS,
            "summary": "Replace a conversation's metadata (`null` clears it)",
            "parameters": [_CONVERSATION_ID],
            "requestBody": _body("ConversationUpdate"),
            "responses": {"200": json_answer("The conversation.", ref("Conversation")),
                          **errors()},
        },
        "delete": {
            "operationId": "deleteConversation",
            "tags": _TAGS,
            "summary": "Delete a conversation and its items (responses stay)",
            "parameters": [_CONVERSATION_ID],
            "responses": {"200": json_answer("Deleted.", ref("ConversationDeleted")),
                          **errors()},
        },
    },
    "/v1/conversations/{conversation_id}/items": {
        "get": {
            "operationId": "listConversationItems",
            "tags": _TAGS,
            "summary": "List a conversation's items",
            "parameters": [
                _CONVERSATION_ID,
                {"name": "after", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "order", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"}},
                _INCLUDE_QUERY,
            ],
            "responses": {"200": json_answer("A page of items.", ref("ConversationItemList")),
                          **errors()},
        },
        "post": {
            "operationId": "createConversationItems",
            "tags": _TAGS,
            "summary": "Append items to a conversation",
            "parameters": [_CONVERSATION_ID, _INCLUDE_QUERY],
            "requestBody": _body("ConversationItemsCreate"),
            "responses": {"200": json_answer("The items added.", ref("ConversationItemList")),
                          **errors()},
        },
    },
    "/v1/conversations/{conversation_id}/items/{item_id}": {
        "get": {
            "operationId": "getConversationItem",
            "tags": _TAGS,
            "summary": "Retrieve one item of a conversation",
            "parameters": [_CONVERSATION_ID, _ITEM_ID, _INCLUDE_QUERY],
            "responses": {"200": json_answer("The item.", ref("ConversationItem")), **errors()},
        },
        "delete": {
            "operationId": "deleteConversationItem",
            "tags": _TAGS,
            "summary": "Delete one item; answers the conversation",
            "parameters": [_CONVERSATION_ID, _ITEM_ID],
            "responses": {"200": json_answer("The conversation.", ref("Conversation")),
                          **errors()},
        },
    },
}  # fmt: skip
