"""Bounded storage: retention of stored responses, cleanup of expired sessions and of
orphaned live event logs, and the per-organization caps checked before a response is stored."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from conversations.models import ConversationItem
from conversations.services import conversations_purge
from core.errors import InvalidRequest
from responses.models import ResponseSession, StoredResponse
from responses.services.event_log import event_log_delete
from responses.services.idempotency import idempotency_keys_purge
from tenants.models import Organization

logger = logging.getLogger(__name__)

_BATCH = 500


@dataclass
class PurgeReport:
    responses: int = 0
    sessions: int = 0
    conversations: int = 0


def responses_purge(*, dry_run: bool = False) -> PurgeReport:
    """Delete stored responses older than their organization's retention (their events and
    sessions go by cascade; their live logs, if any, explicitly), and sessions that expired
    longer ago than that. Finished rows only: a running response is never pulled away."""
    now = timezone.now()
    report = PurgeReport()
    if not dry_run:
        idempotency_keys_purge()
    # Per organization (few rows) so the cutoff is a plain datetime on every database backend.
    for organization in Organization.objects.only("pk", "response_retention_days"):
        cutoff = now - timedelta(days=organization.response_retention_days)
        expired = StoredResponse.objects.filter(
            organization=organization,
            status__in=StoredResponse.TERMINAL,
            created_at__lt=cutoff,
        )
        sessions = ResponseSession.objects.filter(
            organization=organization,
            status__in=[ResponseSession.Status.EXPIRED, ResponseSession.Status.CANCELLED],
            updated_at__lt=cutoff,
        )
        # Conversations untouched for as long as the retention go too (with their items).
        report.conversations += conversations_purge(
            organization=organization, cutoff=cutoff, dry_run=dry_run
        )
        if dry_run:
            report.responses += expired.count()
            report.sessions += sessions.count()
            continue
        report.sessions += sessions.delete()[1].get("responses.ResponseSession", 0)
        while True:
            batch = list(expired.values_list("pk", "public_id")[:_BATCH])
            if not batch:
                break
            StoredResponse.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
            event_log_delete(public_ids=[public_id for _, public_id in batch])
            report.responses += len(batch)
    return report


def storage_check(
    *, organization: Organization, previous: StoredResponse | None, incoming_bytes: int
) -> None:
    """400 before anything is generated when storing this response would pass a cap."""
    if (
        previous is not None
        and organization.max_chain_length
        and previous.chain_length + 1 > organization.max_chain_length
    ):
        raise InvalidRequest(
            f"This conversation reached the maximum of {organization.max_chain_length} "
            "turns; start a new one (without previous_response_id).",
            param="previous_response_id",
            code="chain_length_exceeded",
        )
    if organization.max_stored_bytes:
        used = stored_bytes_used(organization_id=organization.pk)
        if used + incoming_bytes > organization.max_stored_bytes:
            raise InvalidRequest(
                f"Your organization's stored responses use {used} of "
                f"{organization.max_stored_bytes} bytes; delete some responses or send "
                "store=false.",
                param="store",
                code="storage_limit_exceeded",
            )


def stored_bytes_used(*, organization_id: int) -> int:
    """What the organization's stored responses take, as of at most
    ``STORAGE_USAGE_CACHE_SECONDS`` ago.

    A SUM over every stored response of the organization costs time in proportion to how many
    there are; run on every request it was already ~2 ms with a few thousand rows. The cap is a
    safeguard against runaway storage, not a quota billed to the byte, so a figure a few seconds
    old (shared by every process through the cache) is enough."""
    key = f"stored-bytes:{organization_id}"
    try:
        used = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: count, do not fail the request
        logger.warning(
            "cache unavailable; counting stored bytes of organization %s", organization_id
        )
        return _stored_bytes_sum(organization_id)
    if used is None:
        used = _stored_bytes_sum(organization_id)
        with contextlib.suppress(Exception):
            cache.set(key, used, timeout=settings.STORAGE_USAGE_CACHE_SECONDS)
    return used


def _stored_bytes_sum(organization_id: int) -> int:
    responses = StoredResponse.objects.filter(organization_id=organization_id).aggregate(
        total=Sum("stored_bytes")
    )["total"]
    conversations = ConversationItem.objects.filter(
        conversation__organization_id=organization_id
    ).aggregate(total=Sum("stored_bytes"))["total"]
    return (responses or 0) + (conversations or 0)
