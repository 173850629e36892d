"""Response sessions: the durable state of a conversation chain between turns, and the
``POST /v1/responses/{id}/tool_outputs`` submissions (deadlines, concurrent and duplicate
submissions).

This module owns ``ResponseSession.status``::

    active ──(a turn ends with function calls)──▶ awaiting_tool_outputs
    awaiting_tool_outputs ──(the last output arrives)──▶ active   (the continuation runs)
    awaiting_tool_outputs ──(deadline)──▶ expired
    active ──(a turn ends without calls)──▶ completed ──(a new turn)──▶ active
    active ──(the continuation fails, or cannot start)──▶ awaiting_tool_outputs   (re-submit)
    any open state ──(a turn is cancelled)──▶ cancelled

**A continuation that fails goes back to ``awaiting_tool_outputs``** (:func:`session_reopen`):
the session's head stays the response whose function calls are still unanswered, the submitted
outputs are cleared and a fresh deadline starts, so the caller re-submits the outputs exactly as
before (a new request; a retry with the same ``Idempotency-Key`` gets the first, failed, answer
again). ``awaiting_tool_outputs`` means precisely "these calls have no answered continuation",
which is true after a failure; ``completed`` would have moved the head to a failed response
without an answer, and ``active`` (what was left before) refused every later submission (409)
forever. The failed continuation stays stored and readable. It applies whether the continuation
failed while generating (engine error, through ``response_finalize``), could not start at all
(``response_prepare`` refused it: quota, caps, model gone), or was failed by the sweeper without
``response_finalize`` (its worker or web process died): :func:`sessions_repair`, under beat,
moves sessions whose continuation ended that way, with the same rules as a finalized turn.

Every change is a conditional UPDATE on ``version`` (optimistic concurrency): two submitters for
different call ids in two processes both read version v, one wins v → v+1, the other reloads and
applies its outputs on top, so neither is lost and exactly one of them sees the set complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ApiError, Conflict, Gone, InvalidRequest, error_body
from responses.models import ResponseSession, StoredResponse, ToolOutputSubmission
from responses.services.idempotency import reused
from tenants.models import Organization

SessionStatus = ResponseSession.Status
_OPEN = (SessionStatus.ACTIVE, SessionStatus.AWAITING_TOOL_OUTPUTS, SessionStatus.COMPLETED)
_MAX_ATTEMPTS = 50
# An ``active`` session without a continuation this long after its outputs completed lost the
# request that was preparing it (its web process died): it is reopened for the outputs.
UNLINKED_GRACE = timedelta(minutes=5)


def _pending_calls(body: dict[str, Any]) -> list[str]:
    return [
        item["call_id"]
        for item in body.get("output") or []
        if item.get("type") == "function_call" and item.get("call_id")
    ]


def _tokens(body: dict[str, Any]) -> int:
    usage = body.get("usage") or {}
    return int(usage.get("total_tokens") or 0)


def session_after_finalize(
    *, response_pk: int, body: dict[str, Any], links: tuple[int, int | None] | None = None
) -> None:
    """Called inside ``response_finalize``'s transaction: the turn ended with ``body``.
    ``links``: the response's organization and previous response (pks), when the caller has
    them (then they are not read again)."""
    if links is None:
        row = (
            StoredResponse.objects.filter(pk=response_pk)
            .values_list("organization_id", "previous_response_id")
            .first()
        )
        if row is None:
            return
        links = row
    organization_id, previous_pk = links
    session = None
    if previous_pk:
        session = ResponseSession.objects.filter(head_response_id=previous_pk).first()
    if session is not None and _continuation_failed(session, response_pk=response_pk, body=body):
        session_reopen(session=session)
        return
    _turn_ended(
        session,
        response_pk=response_pk,
        organization_id=organization_id,
        body=body,
    )


def _continuation_failed(
    session: ResponseSession, *, response_pk: int, body: dict[str, Any]
) -> bool:
    """The turn that ended is the running continuation of ``session`` and it failed."""
    return (
        body.get("status") == StoredResponse.Status.FAILED
        and session.status == SessionStatus.ACTIVE
        and session.continuation_id in (None, response_pk)
    )


def _turn_ended(
    session: ResponseSession | None,
    *,
    response_pk: int,
    organization_id: int,
    body: dict[str, Any],
    expected_version: int | None = None,
) -> bool:
    """The session's head moves to the turn that ended (a new session if it has none)."""
    pending = _pending_calls(body) if body.get("status") == "completed" else []
    if body.get("status") == "cancelled":
        status = SessionStatus.CANCELLED
    elif pending:
        status = SessionStatus.AWAITING_TOOL_OUTPUTS
    else:
        status = SessionStatus.COMPLETED
    deadline = None
    if pending:
        timeout = (
            StoredResponse.objects.filter(pk=response_pk)
            .values_list("organization__tool_output_timeout_seconds", flat=True)
            .first()
        )
        assert timeout is not None  # the response's row is there: its session points at it
        deadline = timezone.now() + timedelta(seconds=timeout)
    changes: dict[str, Any] = dict(
        head_response_id=response_pk,
        status=status,
        pending_call_ids=pending,
        submitted_outputs={},
        deadline=deadline,
        continuation=None,
    )
    if session is None:
        session = ResponseSession.objects.create(
            organization_id=organization_id,
            root_response_id=response_pk,
            token_footprint=_tokens(body),
            **changes,
        )
    else:
        # The head moves to the turn that just ended; nobody else moves a session whose head is
        # still running, so no version check is needed here, only the bump (the repair sweep,
        # which may run twice at once, passes the version it read).
        sessions = ResponseSession.objects.filter(pk=session.pk)
        if expected_version is not None:
            sessions = sessions.filter(version=expected_version)
        if not sessions.update(
            version=session.version + 1,
            token_footprint=session.token_footprint + _tokens(body),
            updated_at=timezone.now(),
            **changes,
        ):
            return False
    if deadline is not None:
        _schedule_expiry(session.pk, deadline)
    return True


def _schedule_expiry(session_pk: int, deadline) -> None:
    from responses.tasks import session_expire_task

    # robust: a broker that cannot take the task right now (Redis restarting) must not fail
    # the transaction's caller; the periodic sweeper expires the session instead.
    transaction.on_commit(
        lambda: session_expire_task.apply_async((session_pk,), eta=deadline), robust=True
    )


def session_reopen(*, session: ResponseSession) -> bool:
    """``active`` → ``awaiting_tool_outputs`` after its continuation failed or could not start
    (see the module doc): same head, outputs cleared, a fresh deadline. Conditional on the
    version read; False if someone else moved the session first."""
    timeout = (
        Organization.objects.filter(pk=session.organization_id)
        .values_list("tool_output_timeout_seconds", flat=True)
        .first()
    )
    deadline = timezone.now() + timedelta(seconds=timeout or 0)
    updated = ResponseSession.objects.filter(
        pk=session.pk, version=session.version, status=SessionStatus.ACTIVE
    ).update(
        status=SessionStatus.AWAITING_TOOL_OUTPUTS,
        submitted_outputs={},
        deadline=deadline,
        continuation=None,
        version=session.version + 1,
        updated_at=timezone.now(),
    )
    if updated:
        _schedule_expiry(session.pk, deadline)
    return bool(updated)


def sessions_repair(*, limit: int = 500) -> int:
    """Sessions left ``active`` by a continuation that ended without ``response_finalize`` (the
    sweeper failed it, a cancel found its process gone, its client left before it started), or
    that never got one (the request preparing it died): each moves as a finalized turn would.
    Returns how many moved. Safe to run concurrently with itself (conditional updates)."""
    moved = 0
    ended = (
        ResponseSession.objects.filter(
            status=SessionStatus.ACTIVE, continuation__status__in=StoredResponse.TERMINAL
        )
        .select_related("continuation")
        .order_by("updated_at")[:limit]
    )
    for session in ended:
        continuation = session.continuation
        assert continuation is not None  # the filter above joined it
        with transaction.atomic():
            if _continuation_failed(session, response_pk=continuation.pk, body=continuation.body):
                moved += session_reopen(session=session)
            else:
                moved += _turn_ended(
                    session,
                    response_pk=continuation.pk,
                    organization_id=session.organization_id,
                    body=continuation.body,
                    expected_version=session.version,
                )
    unlinked = ResponseSession.objects.filter(
        status=SessionStatus.ACTIVE,
        continuation=None,
        updated_at__lt=timezone.now() - UNLINKED_GRACE,
    ).order_by("updated_at")[:limit]
    for session in unlinked:
        with transaction.atomic():
            moved += session_reopen(session=session)
    return moved


def session_expire(*, session_pk: int | None = None) -> int:
    """Expire sessions whose tool-output deadline passed (one, or all of them for the sweeper)."""
    sessions = ResponseSession.objects.filter(
        status=SessionStatus.AWAITING_TOOL_OUTPUTS, deadline__lte=timezone.now()
    )
    if session_pk is not None:
        sessions = sessions.filter(pk=session_pk)
    return sessions.update(status=SessionStatus.EXPIRED, updated_at=timezone.now())


def session_state(session: ResponseSession) -> dict[str, Any]:
    return {
        "object": "response.session",
        "response_id": session.head_response.public_id,
        "status": session.status,
        "pending_call_ids": [
            c for c in session.pending_call_ids if c not in session.submitted_outputs
        ],
        "submitted_call_ids": list(session.submitted_outputs),
        "expires_at": int(session.deadline.timestamp()) if session.deadline else None,
        "token_footprint": session.token_footprint,
    }


@dataclass
class Submission:
    session: ResponseSession
    complete: bool
    """True for the one request whose outputs completed the set: it runs the continuation."""
    outputs: list[dict[str, Any]]
    """Every output, in the order of the response's calls (for the continuation's input)."""


def _check_outputs(tool_outputs: Any) -> dict[str, str]:
    if not isinstance(tool_outputs, list) or not tool_outputs:
        raise InvalidRequest("'tool_outputs' must be a non-empty array.", param="tool_outputs")
    outputs: dict[str, str] = {}
    for index, entry in enumerate(tool_outputs):
        param = f"tool_outputs[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("call_id"), str):
            raise InvalidRequest("Each tool output needs a string 'call_id'.", param=param)
        output = entry.get("output")
        if not isinstance(output, str):
            output = json.dumps(output)
        if entry["call_id"] in outputs:
            raise InvalidRequest(
                f"Duplicate call_id '{entry['call_id']}' in this request.", param=param
            )
        outputs[entry["call_id"]] = output
    return outputs


def tool_outputs_submit(*, response: StoredResponse, tool_outputs: Any) -> Submission:
    outputs = _check_outputs(tool_outputs)
    for _ in range(_MAX_ATTEMPTS):
        session = (
            ResponseSession.objects.select_related("head_response")
            .filter(head_response=response)
            .first()
        )
        if session is None or session.status == SessionStatus.COMPLETED:
            raise InvalidRequest(
                f"Response '{response.public_id}' is not waiting for tool outputs.",
                param="response_id",
            )
        if session.status == SessionStatus.EXPIRED or (
            session.status == SessionStatus.AWAITING_TOOL_OUTPUTS
            and session.deadline is not None
            and session.deadline <= timezone.now()
        ):
            session_expire(session_pk=session.pk)
            raise Gone(
                f"The deadline for tool outputs of response '{response.public_id}' has passed.",
                param="response_id",
            )
        for index, call_id in enumerate(outputs):
            if call_id not in session.pending_call_ids:
                raise InvalidRequest(
                    f"No function call with call_id '{call_id}' in response "
                    f"'{response.public_id}'.",
                    param=f"tool_outputs[{index}].call_id",
                )
            if call_id in session.submitted_outputs:
                raise Conflict(
                    f"An output for call_id '{call_id}' was already submitted.",
                    param=f"tool_outputs[{index}].call_id",
                    code="duplicate_tool_output",
                )
        if session.status != SessionStatus.AWAITING_TOOL_OUTPUTS:
            raise Conflict(
                f"Response '{response.public_id}' is {session.status}.", param="response_id"
            )
        submitted = {**session.submitted_outputs, **outputs}
        complete = set(submitted) >= set(session.pending_call_ids)
        updated = ResponseSession.objects.filter(
            pk=session.pk, version=session.version, status=SessionStatus.AWAITING_TOOL_OUTPUTS
        ).update(
            submitted_outputs=submitted,
            version=session.version + 1,
            status=SessionStatus.ACTIVE if complete else SessionStatus.AWAITING_TOOL_OUTPUTS,
            updated_at=timezone.now(),
        )
        if updated != 1:
            continue  # another submitter got there first: re-read and apply on top
        session.submitted_outputs = submitted
        session.version += 1
        session.status = SessionStatus.ACTIVE if complete else session.status
        ordered = [
            {"type": "function_call_output", "call_id": call_id, "output": submitted[call_id]}
            for call_id in session.pending_call_ids
            if call_id in submitted
        ]
        return Submission(session=session, complete=complete, outputs=ordered)
    raise Conflict("Too many concurrent submissions; retry.", param="response_id")


def session_link_continuation(*, session_pk: int, continuation_pk: int | None) -> None:
    ResponseSession.objects.filter(pk=session_pk).update(continuation_id=continuation_pk)


# --- Idempotency-Key -------------------------------------------------------------------------

_PENDING = 0


def idempotency_claim(
    *, response: StoredResponse, key: str, digest: str = ""
) -> ToolOutputSubmission | None:
    """Reserve ``key`` for this request; returns the earlier submission when there is one
    (422 when it was made with another body: replaying its answer would be wrong)."""
    with transaction.atomic():
        submission, created = ToolOutputSubmission.objects.get_or_create(
            organization_id=response.organization_id,
            response=response,
            idempotency_key=key,
            defaults={"status_code": _PENDING, "answer": {}, "body_digest": digest},
        )
    if created:
        return None
    if submission.body_digest and digest and submission.body_digest != digest:
        raise reused(key)
    if submission.status_code == _PENDING:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed.",
            param="Idempotency-Key",
        )
    return submission


def idempotency_store(
    *, response: StoredResponse, key: str, status_code: int, answer: dict[str, Any]
) -> None:
    ToolOutputSubmission.objects.filter(
        organization_id=response.organization_id, response=response, idempotency_key=key
    ).update(status_code=status_code, answer=answer)


def idempotency_release(*, response: StoredResponse, key: str) -> None:
    """The request failed before it changed anything: a retry may run it again."""
    ToolOutputSubmission.objects.filter(
        organization_id=response.organization_id,
        response=response,
        idempotency_key=key,
        status_code=_PENDING,
    ).delete()


def idempotent_error(error: ApiError) -> dict[str, Any]:
    return error_body(error.message, type=error.type, param=error.param, code=error.code)
