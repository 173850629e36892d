"""Celery tasks of the responses app. Each one fetches by id and calls one service; the
services are idempotent (conditional updates), so a redelivered message is harmless."""

from __future__ import annotations

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from celery import shared_task
from django.conf import settings

from responses.services.background import background_run, background_sweep
from responses.services.retention import responses_purge
from responses.services.sessions import session_expire, sessions_repair
from responses.services.usage import response_reservations_expire

logger = logging.getLogger(__name__)


@shared_task(name="responses.run_background")
def response_run_task(response_pk: int) -> None:
    # async_to_sync (not asyncio.run): the run's ORM calls go through core.db.db_async, which
    # takes and gives back a connection per call, as in the web process.
    async_to_sync(background_run)(response_pk=response_pk)


@shared_task(name="responses.sweep_background")
def responses_sweep_task() -> int:
    return background_sweep()


@shared_task(name="responses.expire_session")
def session_expire_task(session_pk: int) -> int:
    return session_expire(session_pk=session_pk)


@shared_task(name="responses.expire_sessions")
def sessions_expire_task() -> int:
    # Catches deadlines whose own task never ran (worker down, broker restarted), and
    # sessions whose continuation ended without response_finalize (failed by the sweeper).
    # Returns how many sessions expired (the repaired ones are logged).
    expired = session_expire()
    repaired = sessions_repair()
    if repaired:
        logger.warning("%d session(s) moved after their continuation ended unfinalized", repaired)
    return expired


@shared_task(name="responses.purge")
def responses_purge_task() -> int:
    return responses_purge().responses


# The name is the quotas job's, as beat schedules and routes it (config/settings.py); it lives
# here because settling a dead turn reads the usage its stored response recorded.
@shared_task(name="quotas.expire_reservations")
def usage_reservations_expire_task() -> int:
    return response_reservations_expire(
        older_than=timedelta(seconds=settings.QUOTA_RESERVATION_TTL_SECONDS)
    )
