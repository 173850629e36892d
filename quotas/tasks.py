"""Celery tasks of the quotas app (idempotent: settlement is a conditional update)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from quotas.services.ledger import usage_reservations_expire


@shared_task(name="quotas.expire_reservations")
def quota_reservations_expire_task() -> int:
    return usage_reservations_expire(
        older_than=timedelta(seconds=settings.QUOTA_RESERVATION_TTL_SECONDS)
    )
