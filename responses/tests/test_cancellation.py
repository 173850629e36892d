"""The per-process cancel watcher (responses.services.cancellation): a cancel raised anywhere
reaches the generation through the Redis channel at once, with no reading of flags in between;
what the channel cannot carry (a cancel raised before the generation registered) is found by
the sweep of the flags."""

from __future__ import annotations

import asyncio
import threading

import pytest

from responses.services import cancellation
from testsupport.waiting import await_until


@pytest.fixture
def flag_reads(monkeypatch):
    """Every read of the flags, by the watcher's sweep: a list of the key lists."""
    reads: list[list[str]] = []
    raised = cancellation._raised

    async def counting(keys):
        reads.append(keys)
        return await raised(keys)

    monkeypatch.setattr(cancellation, "_raised", counting)
    return reads


def _cancel_from_elsewhere(response_id: str) -> None:
    """What another process's cancel endpoint does: the flag and the announcement, from another
    thread (so no cancel_local on this loop)."""
    thread = threading.Thread(
        target=cancellation.cancel_request, kwargs={"response_id": response_id}
    )
    thread.start()
    thread.join()


async def test_a_cancel_from_another_process_arrives_through_the_channel(monkeypatch, flag_reads):
    # No sweep for an hour: only the channel can deliver this cancel.
    monkeypatch.setattr(cancellation, "FLAG_SWEEP_SECONDS", 3600.0)
    cancelled = asyncio.Event()
    with cancellation.watch(response_id="resp_channel", record_pk=None, on_cancel=cancelled.set):
        # Subscribed once its first sweep (the one that follows each subscription) ran.
        await await_until(lambda: flag_reads, within=5, what="the watcher subscribed")
        await asyncio.to_thread(_cancel_from_elsewhere, "resp_channel")
        async with asyncio.timeout(5):
            await cancelled.wait()
    assert len(flag_reads) == 1


async def test_open_streams_cost_no_reads_while_nobody_cancels(monkeypatch, flag_reads):
    monkeypatch.setattr(cancellation, "FLAG_SWEEP_SECONDS", 3600.0)
    listening: list[float] = []
    listen = cancellation._Watcher._listen

    async def recorded(self, pubsub, seconds: float) -> bool:
        listening.append(seconds)
        return await listen(self, pubsub, seconds)

    monkeypatch.setattr(cancellation._Watcher, "_listen", recorded)
    with cancellation.watch(response_id="resp_quiet", record_pk=None, on_cancel=lambda: None):
        await await_until(lambda: flag_reads, within=5, what="the watcher subscribed")
        # Its next wake-up is decided when it parks on the channel: not before several of the
        # old polling intervals (nothing is due until the lease renewal).
        await await_until(lambda: listening, within=5, what="the watcher listening")
        assert listening[-1] >= 4 * cancellation.CHECK_INTERVAL_SECONDS
    assert len(flag_reads) == 1  # the old watcher read every flag four times a second


async def test_a_cancel_raised_before_the_generation_registered_is_found(flag_reads):
    await asyncio.to_thread(_cancel_from_elsewhere, "resp_early")
    cancelled = asyncio.Event()
    with cancellation.watch(response_id="resp_early", record_pk=None, on_cancel=cancelled.set):
        async with asyncio.timeout(cancellation.FLAG_SWEEP_SECONDS + 5):
            await cancelled.wait()


UNREACHABLE_REDIS = {
    "default": {"BACKEND": "core.cache.SharedPoolRedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
}


async def test_leases_are_renewed_while_redis_is_away(transactional_cast, settings):
    """The watcher's jobs are independent: with the channel and the flags unreachable, the
    lease of a running stream is still renewed (else the sweeper would fail it)."""
    from asgiref.sync import sync_to_async
    from django.test import override_settings
    from django.utils import timezone

    from responses.models import StoredResponse
    from responses.services import lifecycle

    settings.BACKGROUND_LEASE_SECONDS = 1.5
    alice = transactional_cast.alice
    row = await sync_to_async(lifecycle.response_record_create)(
        public_id="resp_lease",
        organization=alice.organization,
        project=None,
        api_key=alice.api_key,
        previous=None,
        model="scripted",
        status=StoredResponse.Status.IN_PROGRESS,
        background=False,
        request_id="req_lease",
        body={},
        input_items=[],
        lease_expires_at=timezone.now(),
    )
    first = row.lease_expires_at

    async def renewed():
        lease = (await StoredResponse.objects.aget(pk=row.pk)).lease_expires_at
        return lease > first

    with (
        override_settings(CACHES=UNREACHABLE_REDIS),
        cancellation.watch(response_id="resp_lease", record_pk=row.pk, on_cancel=print),
    ):
        await await_until(renewed, within=10, what="the lease renewed")
