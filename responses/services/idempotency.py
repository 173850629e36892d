"""``Idempotency-Key`` on ``POST /v1/responses`` (and the body check shared with
``…/tool_outputs``).

Per organization, for :data:`KEY_LIFETIME`: the first request with a key claims it (a row with a
unique constraint decides between concurrent duplicates); a retry with the same body gets that
request's answer again, and waits for it while it is still running, so exactly one generation
runs however many duplicates arrive; a retry with another body is refused (422
``idempotency_key_reused``). A request refused before anything ran (validation, quota) releases
the key: nothing was done, so a retry may run it.

What a retry gets: a stored response is read back from ``StoredResponse`` (as JSON once it has
ended, or as its events over SSE when the first request streamed: live while it runs); a
``store: false`` response has no other copy, so its final answer (or its events) is kept on the
key's row when the first request ends.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ApiError, InvalidRequest
from responses.models import CreateIdempotencyKey, StoredResponse
from tenants.models import Organization

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# A key still "pending" this long after its claim belongs to a request whose process died before
# its response existed (preparing takes milliseconds): a retry takes the key over.
ABANDONED_AFTER = timedelta(minutes=2)
State = CreateIdempotencyKey.State


class IdempotencyKeyReused(ApiError):
    status = 422
    code = "idempotency_key_reused"


def idempotency_key_parse(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header, or None; 400 when it cannot be a key."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not value.isprintable():
        raise InvalidRequest(
            f"Invalid 'Idempotency-Key' header: expected 1 to {MAX_KEY_LENGTH} printable "
            "characters.",
            param="Idempotency-Key",
            code="invalid_value",
        )
    return value


def body_digest(body: Any) -> str:
    """The same request, whatever its key order or whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def reused(key: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"The Idempotency-Key '{key}' was already used with a different request body. Use a "
        "new key for a new request; a retry must send exactly the same body.",
        param="Idempotency-Key",
    )


def create_key_claim(
    *, organization: Organization, key: str, digest: str
) -> CreateIdempotencyKey | None:
    """None when this request now owns ``key``; otherwise the earlier request's row (same
    body), or 422 when the earlier request had another body."""
    with transaction.atomic():
        row, created = CreateIdempotencyKey.objects.get_or_create(
            organization=organization, key=key, defaults={"body_digest": digest}
        )
    if created:
        return None
    now = timezone.now()
    stale = row.created_at < now - KEY_LIFETIME or (
        row.state == State.PENDING and row.updated_at < now - ABANDONED_AFTER
    )
    if stale:
        # Conditional on the row as read: of two retries taking it over, one wins.
        taken = CreateIdempotencyKey.objects.filter(pk=row.pk, updated_at=row.updated_at).update(
            body_digest=digest,
            state=State.PENDING,
            response_public_id="",
            stored=True,
            stream=False,
            status_code=200,
            answer=None,
            created_at=now,
            updated_at=now,
        )
        if taken:
            return None
        row.refresh_from_db()
    if row.body_digest != digest:
        raise reused(key)
    return row


def create_key_release(*, organization: Organization, key: str) -> None:
    """The request was refused before anything ran: a retry may run it."""
    CreateIdempotencyKey.objects.filter(
        organization=organization, key=key, state=State.PENDING
    ).delete()


def create_key_started(
    *, organization: Organization, key: str, response_id: str, stored: bool, stream: bool
) -> None:
    CreateIdempotencyKey.objects.filter(organization=organization, key=key).update(
        state=State.RUNNING,
        response_public_id=response_id,
        stored=stored,
        stream=stream,
        updated_at=timezone.now(),
    )


def create_key_finished(
    *, organization: Organization, key: str, status_code: int, answer: Any
) -> None:
    """The first request's answer: an error envelope, a ``store: false`` response's JSON, or
    ``{"events": [...]}`` of a ``store: false`` stream. None for a stored success (the stored
    response is the answer)."""
    CreateIdempotencyKey.objects.filter(organization=organization, key=key).update(
        state=State.DONE, status_code=status_code, answer=answer, updated_at=timezone.now()
    )


def create_key_reload(row: CreateIdempotencyKey) -> CreateIdempotencyKey | None:
    return CreateIdempotencyKey.objects.filter(pk=row.pk).first()


def create_key_response(row: CreateIdempotencyKey) -> StoredResponse | None:
    return StoredResponse.objects.filter(
        organization_id=row.organization_id, public_id=row.response_public_id
    ).first()


def idempotency_keys_purge() -> int:
    """Keys past their lifetime (the retention sweep calls this)."""
    cutoff = timezone.now() - KEY_LIFETIME
    return CreateIdempotencyKey.objects.filter(created_at__lt=cutoff).delete()[0]
