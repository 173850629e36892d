"""Reads of stored responses, always scoped to the caller's organization: another organization's
response is indistinguishable from one that never existed (404)."""

from __future__ import annotations

from core.errors import NotFound
from responses.models import ResponseEvent, StoredResponse
from tenants.models import Organization


def response_not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def response_find(*, organization: Organization, response_id: str) -> StoredResponse | None:
    return StoredResponse.objects.filter(organization=organization, public_id=response_id).first()


def response_get(*, organization: Organization, response_id: str) -> StoredResponse:
    response = response_find(organization=organization, response_id=response_id)
    if response is None:
        raise response_not_found(response_id)
    return response


def previous_response_get(*, organization: Organization, response_id: str) -> StoredResponse:
    response = response_find(organization=organization, response_id=response_id)
    if response is None:
        raise NotFound(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return response


def chain_items(*, response: StoredResponse) -> list[dict]:
    """Input and output items of ``response`` and its ancestors, oldest turn first.

    The chain is ``previous.input + previous.output + …`` in order (Open Responses' rule);
    instructions are deliberately not part of it (they are not carried over).
    """
    turns: list[StoredResponse] = []
    current: StoredResponse | None = response
    while current is not None:
        turns.append(current)
        current = (
            StoredResponse.objects.filter(pk=current.previous_response_id).first()
            if current.previous_response_id
            else None
        )
    items: list[dict] = []
    for turn in reversed(turns):
        items.extend(turn.input_items)
        items.extend(turn.output_items)
    return items


def response_events(*, response: StoredResponse, starting_after: int | None) -> list[dict]:
    events = ResponseEvent.objects.filter(response=response).order_by("sequence_number")
    if starting_after is not None:
        events = events.filter(sequence_number__gt=starting_after)
    return [event.data for event in events]


def input_items_page(*, response: StoredResponse, query) -> dict:
    """One page of ``GET /v1/responses/{id}/input_items`` (cursor = item id, like the SDK's
    ``SyncCursorPage`` expects: it asks for ``after=<last id>`` while ``has_more``)."""
    from core.errors import InvalidRequest

    items = list(response.input_items)
    if query.order == "desc":
        items.reverse()
    if query.after is not None:
        positions = [index for index, item in enumerate(items) if item.get("id") == query.after]
        if not positions:
            raise InvalidRequest(
                f"No input item with id '{query.after}' in response '{response.public_id}'.",
                param="after",
            )
        items = items[positions[0] + 1 :]
    page = items[: query.limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > len(page),
    }
