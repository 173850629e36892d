"""Changes to conversations: create, update, delete, add and delete items, the append that
finishes a response created with ``conversation``, and retention.

Order of items: every append (an ``items`` call, or a finished response's input and output)
locks the conversation row and takes the next positions, so each append is contiguous and
appends are ordered by when they commit. Two responses running on one conversation therefore
both start from the items present when each was created, and their items are added in the order
the responses *finish* — the first to complete comes first — never interleaved, never lost.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation, ConversationItem
from core.errors import InvalidRequest
from responses.requests import resolve_item_references, stored_input_items
from tenants.models import Organization
from tenants.principal import ApiPrincipal

# A finished response adds its items to its conversation only in these states: a failed or
# cancelled turn leaves the conversation as it was.
APPENDED_STATUSES = ("completed", "incomplete")


def conversation_create(
    *, principal: ApiPrincipal, metadata: dict[str, str], items: tuple[dict[str, Any], ...]
) -> Conversation:
    with transaction.atomic():
        conversation = Conversation.objects.create(
            organization=principal.organization, project=principal.project, metadata=metadata
        )
        if items:
            conversation_items_add(conversation=conversation, items=items)
    return conversation


def conversation_update(*, conversation: Conversation, metadata: dict[str, str]) -> Conversation:
    conversation.metadata = metadata
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=["metadata", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    # Its items go with it; the responses that used it keep their own copies of their input and
    # output (OpenAI: "items in the conversation will not be deleted" from those responses).
    conversation.delete()


def conversation_items_add(
    *,
    conversation: Conversation,
    items: tuple[dict[str, Any], ...] | list[dict[str, Any]],
    response_id: str = "",
) -> list[dict[str, Any]]:
    """Append canonical input items (``item_reference``s resolved against the conversation's own
    items) and return them as stored, with their ids."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        existing = dict(
            ConversationItem.objects.filter(conversation=locked).values_list("public_id", "data")
        )
        resolved = resolve_item_references(items, known=existing, param="items")
        records = _unique_ids(stored_input_items(resolved), taken=set(existing))
        _storage_check(
            organization_id=locked.organization_id,
            incoming=sum(len(json.dumps(record)) for record in records),
        )
        _append(locked, records, response_id=response_id)
    return records


def conversation_item_delete(*, conversation: Conversation, item: ConversationItem) -> None:
    with transaction.atomic():
        item.delete()
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())


def conversation_after_finalize(*, response_pk: int, body: dict[str, Any]) -> None:
    """Append a finished response's input and output items to its conversation (in the caller's
    transaction: the response's final state and the conversation's new items commit together).
    A conversation deleted in the meantime is simply gone: nothing to append to."""
    reference = body.get("conversation")
    if not reference or body.get("status") not in APPENDED_STATUSES:
        return
    from responses.models import StoredResponse

    response = (
        StoredResponse.objects.filter(pk=response_pk)
        .values("organization_id", "input_items", "public_id")
        .first()
    )
    if response is None:
        return
    conversation = (
        Conversation.objects.select_for_update()
        .filter(organization_id=response["organization_id"], public_id=reference["id"])
        .first()
    )
    if conversation is None:
        return
    taken = set(
        ConversationItem.objects.filter(conversation=conversation).values_list(
            "public_id", flat=True
        )
    )
    items = [*response["input_items"], *(body.get("output") or [])]
    # Counted toward the organization's stored bytes; never refused here: the response already
    # passed the cap when it was created, and refusing now would lose a finished turn.
    _append(conversation, _unique_ids(items, taken=taken), response_id=response["public_id"])


def conversations_purge(
    *, organization: Organization, cutoff: datetime, dry_run: bool = False
) -> int:
    """Delete the organization's conversations untouched since ``cutoff`` (retention)."""
    stale = Conversation.objects.filter(organization=organization, updated_at__lt=cutoff)
    if dry_run:
        return stale.count()
    return stale.delete()[1].get("conversations.Conversation", 0)


def _append(conversation: Conversation, records: list[dict[str, Any]], *, response_id: str) -> None:
    """Add ``records`` after the newest item; the caller holds the conversation's row lock."""
    if not records:
        return
    first = conversation.last_position + 1
    now = timezone.now()
    ConversationItem.objects.bulk_create(
        [
            ConversationItem(
                conversation=conversation,
                public_id=record["id"],
                position=first + offset,
                data=record,
                stored_bytes=len(json.dumps(record)),
                response_id=response_id,
                created_at=now,
            )
            for offset, record in enumerate(records)
        ]
    )
    conversation.last_position = first + len(records) - 1
    conversation.updated_at = now
    conversation.save(update_fields=["last_position", "updated_at"])


def _unique_ids(records: list[dict[str, Any]], *, taken: set[str]) -> list[dict[str, Any]]:
    """An id already in the conversation (an item re-sent or referenced) gets a fresh one: the
    SDK pages with ``after=<id>``, so ids must be unique within a conversation."""
    unique: list[dict[str, Any]] = []
    for record in records:
        if record.get("id") in taken:
            record = copy.deepcopy(record)
            record.pop("id")
            record = stored_input_items([record])[0]
        taken.add(record["id"])
        unique.append(record)
    return unique


def _storage_check(*, organization_id: int, incoming: int) -> None:
    from responses.services.retention import stored_bytes_used

    organization = Organization.objects.only("max_stored_bytes").get(pk=organization_id)
    if not organization.max_stored_bytes:
        return
    used = stored_bytes_used(organization_id=organization_id)
    if used + incoming > organization.max_stored_bytes:
        raise InvalidRequest(
            f"Your organization's stored responses and conversations use {used} of "
            f"{organization.max_stored_bytes} bytes; delete some before adding items.",
            param="items",
            code="storage_limit_exceeded",
        )
