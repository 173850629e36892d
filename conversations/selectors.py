"""Reads of conversations, always scoped to the caller's organization: another organization's
conversation (or item) is indistinguishable from one that never existed (404)."""

from __future__ import annotations

from typing import Any

from conversations.models import Conversation, ConversationItem
from core.errors import InvalidRequest, NotFound
from tenants.models import Organization


def conversation_not_found(conversation_id: str, *, param: str = "conversation_id") -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param)


def conversation_get(
    *, organization: Organization, conversation_id: str, param: str = "conversation_id"
) -> Conversation:
    conversation = Conversation.objects.filter(
        organization=organization, public_id=conversation_id
    ).first()
    if conversation is None:
        raise conversation_not_found(conversation_id, param=param)
    return conversation


def conversation_items(*, conversation: Conversation) -> list[dict[str, Any]]:
    """Every item, oldest first: the context a response on this conversation starts from."""
    return list(
        ConversationItem.objects.filter(conversation=conversation)
        .order_by("position")
        .values_list("data", flat=True)
    )


def conversation_item_get(*, conversation: Conversation, item_id: str) -> ConversationItem:
    item = ConversationItem.objects.filter(conversation=conversation, public_id=item_id).first()
    if item is None:
        raise NotFound(
            f"Item with id '{item_id}' not found in conversation '{conversation.public_id}'.",
            param="item_id",
        )
    return item


def conversation_items_page(
    *, conversation: Conversation, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """One page of ``GET /v1/conversations/{id}/items``; the cursor is the last item's id (the
    SDK asks for ``after=<last_id>`` while ``has_more``)."""
    rows = ConversationItem.objects.filter(conversation=conversation)
    if after is not None:
        cursor = rows.filter(public_id=after).values_list("position", flat=True).first()
        if cursor is None:
            raise InvalidRequest(
                f"No item with id '{after}' in conversation '{conversation.public_id}'.",
                param="after",
            )
        rows = (
            rows.filter(position__gt=cursor) if order == "asc" else rows.filter(position__lt=cursor)
        )
    rows = rows.order_by("position" if order == "asc" else "-position")
    page = list(rows.values_list("data", flat=True)[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": has_more,
    }


def conversation_object(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.public_id,
        "object": "conversation",
        "created_at": int(conversation.created_at.timestamp()),
        "metadata": conversation.metadata or {},
    }
