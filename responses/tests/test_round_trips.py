"""What one streamed response costs the database, pinned so that it cannot silently grow back
(issue 12: "one transaction for the reservation and the row" before the first event; "finalize,
event log, settlement and ledger in one transaction" after the last one).

A *hop* is one hand-off of ORM work from the event loop to the database executor
(``core.db.db_async``: a thread switch there and back, and a connection checked out of the pool);
within a hop the probe counts the SQL statements Django runs and the transactions it commits.
The event log's ``COPY`` does not go through Django's cursor wrapper, so it is not a statement
here (it is one per finalize).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient

from core import db as core_db
from quotas.models import UsageRecord
from responses.models import ResponseEvent, StoredResponse

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Hop:
    name: str
    statements: int = 0
    commits: int = 0


class DatabaseProbe:
    def __init__(self) -> None:
        self.hops: list[Hop] = []

    def since(self, mark: int) -> list[Hop]:
        return self.hops[mark:]


def _hop_name(call) -> str:
    # asgiref hands the executor a partial whose last argument is the bound call (core.db's
    # wrapper, which carries the name of the function it wraps).
    target = call.args[-1] if isinstance(call, functools.partial) and call.args else call
    while True:
        if isinstance(target, functools.partial):
            target = target.func
        elif getattr(target, "__wrapped__", None) is not None:
            target = target.__wrapped__
        else:
            break
    return getattr(target, "__qualname__", repr(target))


@contextlib.contextmanager
def database_probe() -> Iterator[DatabaseProbe]:
    executor = core_db._database_executor()
    submit = executor.submit
    probe = DatabaseProbe()

    def counting_submit(fn, /, *args, **kwargs):
        hop = Hop(_hop_name(fn))
        probe.hops.append(hop)

        def statement(execute, sql, params, many, context):
            hop.statements += 1
            return execute(sql, params, many, context)

        def counted():
            connection = connections["default"]
            commit = connection.commit

            def counting_commit():
                hop.commits += 1
                return commit()

            connection.commit = counting_commit
            try:
                with connection.execute_wrapper(statement):
                    return fn(*args, **kwargs)
            finally:
                del connection.commit

        return submit(counted)

    executor.submit = counting_submit
    try:
        yield probe
    finally:
        del executor.submit


async def _stream(client: AsyncClient, persona, probe: DatabaseProbe, **body):
    """One streamed response; the hops before ``response.created`` reached the client, and the
    hops after the terminal event did (until the stream closed, its outcome stored and its usage
    settled)."""
    start = len(probe.hops)
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "stream": True, **body}),
        content_type="application/json",
        headers=persona.headers,
    )
    assert response.status_code == 200
    before: list[Hop] | None = None
    last: int | None = None
    async for chunk in response.streaming_content:
        if before is None and b"response.created" in chunk:
            before = probe.since(start)
        if b"response.completed" in chunk:
            last = len(probe.hops)
    assert before is not None and last is not None
    return before, probe.since(last)


def _report(hops: list[Hop]) -> str:
    return ", ".join(f"{h.name} ({h.statements} statements, {h.commits} commits)" for h in hops)


async def test_a_streamed_response_costs_few_database_round_trips(transactional_cast, engine):
    client = AsyncClient()
    alice = transactional_cast.alice
    with database_probe() as probe:
        # The first request of a process also loads and caches the caller's limits.
        await _stream(client, alice, probe)
        before, after = await _stream(client, alice, probe)
    # Authentication, the context (model, previous response), then the in_progress row and
    # the ledger reservation in one transaction.
    assert len(before) <= 3, _report(before)
    assert sum(hop.commits for hop in before) <= 1, _report(before)
    assert before[-1].statements <= 3, _report(before)  # synchronous_commit off, two INSERTs
    # The outcome (the row, the event log, the session) and the ledger settlement (the row,
    # the monthly counter, the daily rollup) in one transaction.
    assert len(after) <= 1, _report(after)
    assert sum(hop.commits for hop in after) <= 1, _report(after)
    # The row's UPDATE, the session's INSERT, the ledger row's UPDATE, the monthly counter's
    # and the daily rollup's (and the event log's COPY, which the probe does not see).
    assert sum(hop.statements for hop in after) <= 5, _report(after)
    rows = await StoredResponse.objects.filter(organization=alice.organization).acount()
    assert rows == 2
    assert await UsageRecord.objects.filter(status="completed").acount() == 2
    assert await ResponseEvent.objects.acount() > 0


async def _events(client: AsyncClient, persona, **body) -> list[bytes]:
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "stream": True, **body}),
        content_type="application/json",
        headers=persona.headers,
    )
    return [chunk async for chunk in response.streaming_content]


async def test_a_response_not_stored_settles_in_one_round_trip(transactional_cast, engine):
    client = AsyncClient()
    alice = transactional_cast.alice
    with database_probe() as probe:
        await _stream(client, alice, probe, store=False)
        before, after = await _stream(client, alice, probe, store=False)
    # Authentication, the context, the ledger reservation; then the settlement alone.
    assert len(before) <= 3 and len(after) <= 1, (_report(before), _report(after))
    assert await UsageRecord.objects.filter(status="completed").acount() == 2


async def test_usage_settles_when_someone_else_finalized_the_response_first(
    transactional_cast, engine
):
    """A cancel that found the process unresponsive (or the sweeper) moved the row to its final
    state while the stream ran: theirs stands, and the usage is settled all the same."""
    client = AsyncClient()
    alice = transactional_cast.alice
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "stream": True}),
        content_type="application/json",
        headers=alice.headers,
    )
    chunks = aiter(response.streaming_content)
    first = await anext(chunks)
    response_id = json.loads(first.split(b"data: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
    await StoredResponse.objects.filter(public_id=response_id).aupdate(status="cancelled")
    rest = [chunk async for chunk in chunks]
    assert any(b"response.completed" in chunk for chunk in rest)
    row = await StoredResponse.objects.aget(public_id=response_id)
    assert row.status == "cancelled"
    usage = await UsageRecord.objects.aget(response_id=response_id)
    assert usage.status == "completed" and usage.output_tokens > 0


async def test_usage_settles_when_the_outcome_cannot_be_stored(
    transactional_cast, engine, monkeypatch
):
    """The outcome and the settlement share a transaction; when storing the outcome fails, the
    usage is written on its own, and the row is left to the lease sweeper."""
    from responses.services import lifecycle

    def broken(**kwargs):
        raise RuntimeError("the session could not be written")

    monkeypatch.setattr(lifecycle, "session_after_finalize", broken)
    chunks = await _events(AsyncClient(), transactional_cast.alice)
    assert any(b"response.completed" in chunk for chunk in chunks)
    usage = await UsageRecord.objects.aget()
    assert usage.status == "completed" and usage.output_tokens > 0
    row = await StoredResponse.objects.aget(public_id=usage.response_id)
    assert row.status == "in_progress" and not await ResponseEvent.objects.aexists()


async def test_a_hard_budget_refusing_in_that_transaction_leaves_nothing_and_reaches_no_engine(
    transactional_cast, engine
):
    """The ledger row holds the hard budget inside the transaction that writes the response's
    row: when the budget cannot cover the request, neither row stays, the limiter gets its
    reservation back, the refusal is counted, and the engine request never went out."""
    from quotas.models import UsageDaily
    from quotas.services.limits import limits_set

    alice = transactional_cast.alice
    await sync_to_async(limits_set)(
        organization=alice.organization, monthly_token_budget=100, max_concurrent=1
    )
    body = {"model": "scripted", "input": "hi", "max_output_tokens": 500}
    client = AsyncClient()
    for _ in range(2):  # the concurrency slot came back: the second is refused the same way
        refused = await client.post(
            "/v1/responses",
            json.dumps(body),
            content_type="application/json",
            headers=alice.headers,
        )
        assert refused.status_code == 429, refused.content
        assert refused.json()["error"]["code"] == "insufficient_quota"
    assert engine.requests == []
    assert not await StoredResponse.objects.aexists()
    assert not await UsageRecord.objects.aexists()
    rollup = await UsageDaily.objects.aget(organization=alice.organization)
    assert rollup.quota_exceeded == 2
