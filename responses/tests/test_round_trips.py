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
    # Authentication, the context (model, previous response), the ledger reservation, the
    # in_progress row.
    assert len(before) <= 4, _report(before)
    # The ledger settlement, the finalize (the row, the event log, the session).
    assert len(after) <= 2, _report(after)
    rows = await StoredResponse.objects.filter(organization=alice.organization).acount()
    assert rows == 2
    assert await UsageRecord.objects.filter(status="completed").acount() == 2
    assert await ResponseEvent.objects.acount() > 0
