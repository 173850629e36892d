"""The stored response's state machine. Only this module changes ``StoredResponse.status``.

Every transition is one conditional UPDATE (``… WHERE status = <from>``): if another process
(a second web worker, a Celery worker, a sweeper) got there first, ``updated != 1`` and this one
backs off. No long locks, and it holds across daphne and Celery processes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from conversations.services import conversation_after_finalize
from core.db import commit_without_flush_wait
from responses.models import ResponseEvent, StoredResponse
from responses.services.sessions import session_after_finalize
from tenants.models import ApiKey, Organization, Project

Status = StoredResponse.Status
T = TypeVar("T")

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    Status.QUEUED: {Status.IN_PROGRESS, Status.CANCELLED, Status.FAILED},
    Status.IN_PROGRESS: {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INCOMPLETE},
}


class TransitionRefused(Exception):
    """The response was no longer in the expected state (someone else moved it)."""


def response_record_create(
    *,
    public_id: str,
    organization: Organization,
    project: Project | None,
    api_key: ApiKey | None,
    previous: StoredResponse | None,
    model: str,
    status: str,
    background: bool,
    request_id: str,
    body: dict[str, Any],
    input_items: list[dict[str, Any]],
    lease_expires_at: datetime | None = None,
    background_job: dict[str, Any] | None = None,
    also: Callable[[], Any] | None = None,
) -> StoredResponse:
    """Insert the response's row. ``also``: more to write in the same transaction, after the row
    (the quota reservation's ledger row: the two exist together or not at all, for one round
    trip to the database). Inside a caller's transaction the row joins it."""
    # Written before the first event: see commit_without_flush_wait for why the commit may skip
    # the flush wait.
    outermost = not transaction.get_connection().in_atomic_block
    with (
        transaction.atomic(savepoint=False),
        commit_without_flush_wait() if outermost else contextlib.nullcontext(),
    ):
        record = StoredResponse.objects.create(
            public_id=public_id,
            organization=organization,
            project=project,
            api_key=api_key,
            previous_response=previous,
            model=model,
            status=status,
            background=background,
            request_id=request_id,
            body=body,
            input_items=input_items,
            chain_length=(previous.chain_length + 1) if previous else 1,
            lease_expires_at=lease_expires_at,
            background_job=background_job,
            # The input's share of the storage cap; the final body's is added when the
            # response is finalized.
            stored_bytes=len(json.dumps(input_items)),
        )
        if also is not None:
            also()
        return record


def _transition(
    *,
    response_pk: int,
    from_status: str,
    to_status: str,
    body: dict[str, Any] | None = None,
    add_stored_bytes: int = 0,
    end_reason: str | None = None,
) -> bool:
    if to_status not in ALLOWED_TRANSITIONS.get(from_status, set()):
        raise ValueError(f"{from_status} → {to_status} is not a valid transition")
    changes: dict[str, Any] = {"status": to_status, "updated_at": timezone.now()}
    if body is not None:
        changes["body"] = body
    if add_stored_bytes:
        changes["stored_bytes"] = F("stored_bytes") + add_stored_bytes
    if to_status in StoredResponse.TERMINAL:
        changes["completed_at"] = timezone.now()
    if end_reason is not None:
        changes["end_reason"] = end_reason
    return StoredResponse.objects.filter(pk=response_pk, status=from_status).update(**changes) == 1


def response_transition(
    *,
    response_pk: int,
    from_status: str,
    to_status: str,
    body: dict[str, Any] | None = None,
    add_stored_bytes: int = 0,
) -> None:
    if not _transition(
        response_pk=response_pk,
        from_status=from_status,
        to_status=to_status,
        body=body,
        add_stored_bytes=add_stored_bytes,
    ):
        raise TransitionRefused(f"response {response_pk} is no longer {from_status}")


def response_finalize(
    *,
    response_pk: int,
    from_status: str,
    body: dict[str, Any],
    events: list[dict[str, Any]],
    end_reason: str | None = None,
    links: tuple[int, int | None] | None = None,
) -> bool:
    """Store the final Response object and the events that were streamed, and move the session
    and the conversation with them, inside the caller's transaction (:func:`response_close`):
    a reader never sees a terminal status without its event log. False, with nothing written,
    when the response is no longer ``from_status``. ``end_reason``: why it ended early, when its
    Response object cannot say it (a disconnect: the object keeps OpenAI's vocabulary, whose
    incomplete reasons do not cover it). ``links``: the row's organization and previous response
    (pks), when the caller has them (they are then not read again)."""
    if not _transition(
        response_pk=response_pk,
        from_status=from_status,
        to_status=body["status"],
        body=body,
        add_stored_bytes=len(json.dumps(body)),
        end_reason=end_reason,
    ):
        return False
    events_store(response_pk=response_pk, events=events)
    # The chain's session (pending tool calls, deadline) follows the turn's outcome atomically.
    session_after_finalize(response_pk=response_pk, body=body, links=links)
    # A response created with ``conversation`` adds its input and output to it, in this same
    # transaction (the order of concurrent responses: conversations.services).
    conversation_after_finalize(response_pk=response_pk, body=body)
    return True


def response_close(
    *,
    response_pk: int | None,
    body: dict[str, Any],
    events: list[dict[str, Any]],
    end_reason: str | None = None,
    links: tuple[int, int | None] | None = None,
    also: Callable[[], T] | None = None,
) -> tuple[bool, T | None]:
    """The end of a generation, in one transaction and one round trip to the database: its
    outcome (:func:`response_finalize`, when it is stored: ``response_pk``) and ``also`` (the
    quota settlement's ledger half), which runs last so that the organization's usage counters,
    which every response of the organization updates, stay locked only for the end of the
    transaction. Returns whether the outcome was stored (False: someone else, a cancel that
    found this process unresponsive or the sweeper, gave the response its final state first;
    theirs stands, and ``also`` runs all the same) and what ``also`` returned."""
    with transaction.atomic():
        finalized = response_pk is not None and response_finalize(
            response_pk=response_pk,
            from_status=Status.IN_PROGRESS,
            body=body,
            events=events,
            end_reason=end_reason,
            links=links,
        )
        return finalized, also() if also is not None else None


def events_store(*, response_pk: int, events: list[dict[str, Any]]) -> None:
    """Append events to a response's stored log. On PostgreSQL through ``COPY``: a 256-token
    answer is ~265 rows, and the INSERT path (client-side quoting of every JSON document)
    was the largest single cost of finishing a stream (docs/performance.md)."""
    if not events:
        return
    connection = connections[ResponseEvent.objects.db]
    if connection.vendor != "postgresql":
        ResponseEvent.objects.bulk_create(
            [
                ResponseEvent(
                    response_id=response_pk, sequence_number=event["sequence_number"], data=event
                )
                for event in events
            ],
            batch_size=500,
        )
        return
    table = connection.ops.quote_name(ResponseEvent._meta.db_table)
    copy_sql = f"COPY {table} (response_id, sequence_number, data) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(copy_sql) as copy,
    ):
        for event in events:
            copy.write_row((response_pk, event["sequence_number"], json.dumps(event)))


def response_row_delete(*, response: StoredResponse) -> None:
    response.delete()
