"""Quotas through the API in-process (AsyncClient, the whole middleware stack, the scripted
engine): 429 bodies and headers, token reservations and refunds, concurrency, budgets, the
ledger for every way a response can end, H5 events, and the Redis-down policy."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import aclosing

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from engines.runtime.types import EngineUnavailable
from quotas.models import MonthlyUsage, UsageDaily, UsageRecord
from quotas.selectors import budget_status_list
from quotas.services.headers import UNLIMITED, go_duration
from quotas.services.ledger import usage_reconcile
from quotas.services.limiter import RedisLimiter, set_limiter
from quotas.services.limits import limits_set
from responses.models import StoredResponse
from responses.services.create import response_prepare
from responses.services.generation import generate_events
from testsupport.conformance import check_stream
from testsupport.scripted_engine import build_script
from testsupport.sse import streamed_events
from testsupport.waiting import await_until

pytestmark = pytest.mark.django_db(transaction=True)

GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?(ms|s))?$")
RATE_HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for what in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
]


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def create(client, persona, *, headers=None, **body):
    body.setdefault("model", "scripted")
    body.setdefault("input", "hi")
    return await client.post(
        "/v1/responses",
        json.dumps(body),
        content_type="application/json",
        headers={**persona.headers, **(headers or {})},
    )


def assert_openai_rate_headers(response, *, kinds=("requests", "tokens")):
    for kind in kinds:
        assert int(response[f"x-ratelimit-limit-{kind}"]) >= 1
        assert int(response[f"x-ratelimit-remaining-{kind}"]) >= 0
        assert GO_DURATION.match(response[f"x-ratelimit-reset-{kind}"]), response[
            f"x-ratelimit-reset-{kind}"
        ]


async def set_limits(persona, **values):
    return await sync_to_async(limits_set)(organization=persona.organization, **values)


# --- requests per minute --------------------------------------------------------------------


@pytest.mark.compliance("M3", "M5")
async def test_five_per_minute_gives_five_answers_then_429s(
    client, transactional_cast, engine, any_frozen_limiter
):
    alice = transactional_cast.alice
    await set_limits(alice, requests_per_minute=5, tokens_per_minute=1_000_000)
    answers = [await create(client, alice) for _ in range(7)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 2
    for n, answer in enumerate(answers[:5]):
        assert_openai_rate_headers(answer)
        assert answer["x-ratelimit-limit-requests"] == "5"
        assert answer["x-ratelimit-remaining-requests"] == str(4 - n)
        assert answer["x-ratelimit-reset-requests"] == go_duration(12_000 * (n + 1))
    refused = answers[5]
    assert refused.json()["error"] == {
        "message": refused.json()["error"]["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    message = refused.json()["error"]["message"]
    assert "requests per min (RPM): Limit 5, Used 5, Requested 1" in message
    assert f"organization {alice.organization.public_id}" in message
    assert refused["retry-after"] == "12" and refused["retry-after-ms"] == "12000"
    assert_openai_rate_headers(refused)
    assert refused["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in refused  # a plain 429: the SDK retries after retry-after-ms

    assert await UsageRecord.objects.acount() == 5
    rollup = await UsageDaily.objects.aget(organization=alice.organization)
    assert (rollup.requests, rollup.rate_limited, rollup.quota_exceeded) == (5, 2, 0)
    assert not await StoredResponse.objects.filter(status="in_progress").aexists()


async def test_the_limit_resets_with_time(
    client, transactional_cast, engine, frozen_limiter, clock
):
    alice = transactional_cast.alice
    await set_limits(alice, requests_per_minute=2)
    assert [(await create(client, alice)).status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(29_999)
    refused = await create(client, alice)
    assert refused.status_code == 429 and refused["retry-after-ms"] == "1"
    assert refused["retry-after"] == "1"  # whole seconds, at least 1
    clock.advance(1)
    assert (await create(client, alice)).status_code == 200


async def test_the_tightest_scope_applies(client, transactional_cast, engine, frozen_limiter):
    alice = transactional_cast.alice
    await set_limits(alice, requests_per_minute=10)
    await sync_to_async(limits_set)(
        organization=alice.organization, api_key=alice.api_key, requests_per_minute=2
    )
    answers = [await create(client, alice) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0]["x-ratelimit-limit-requests"] == "2"  # the key's, not the org's
    assert "for API key sk-" in answers[2].json()["error"]["message"]
    # The organization was charged only for what was admitted.
    models = await client.get("/v1/models", headers=alice.headers)
    assert models["x-ratelimit-limit-requests"] == "2"
    assert models["x-ratelimit-remaining-requests"] == "0"


# --- tokens per minute (reliability §8 test 9) -------------------------------------------------


async def test_tokens_are_reserved_at_admission_and_refunded_at_settlement(
    client, transactional_cast, engine, frozen_limiter
):
    alice = transactional_cast.alice
    await set_limits(alice, tokens_per_minute=10_000)
    engine.script = build_script(text="short answer", input_tokens=10, output_tokens=90)
    first = await create(client, alice, max_output_tokens=9_000, stream=True)
    assert first.status_code == 200  # admitted; it runs while the stream is read
    reserved = 10_000 - int(first["x-ratelimit-remaining-tokens"])
    assert 9_000 < reserved < 9_200  # max_output_tokens + the prompt's upper bound

    second = await create(client, alice, max_output_tokens=2_000)
    assert second.status_code == 429
    error = second.json()["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert "tokens per min (TPM): Limit 10000" in error["message"]
    assert int(second["retry-after-ms"]) > 0

    check_stream(await streamed_events(first))  # the first response ends, using 100 tokens
    third = await create(client, alice, max_output_tokens=2_000)
    assert third.status_code == 200
    record = await UsageRecord.objects.aget(response_id=third.json()["id"])
    assert record.total_tokens == 100 and record.reserved_tokens > 2_000


async def test_a_request_larger_than_the_token_limit_is_not_to_be_retried(
    client, transactional_cast, engine, frozen_limiter
):
    alice = transactional_cast.alice
    await set_limits(alice, tokens_per_minute=1_000)
    refused = await create(client, alice, max_output_tokens=5_000)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
    assert "Request too large" in refused.json()["error"]["message"]
    assert refused["x-should-retry"] == "false"


# --- concurrency ----------------------------------------------------------------------------------


async def test_concurrent_responses_are_limited_and_freed_however_they_end(
    client, transactional_cast, engine, frozen_limiter
):
    alice = transactional_cast.alice
    await set_limits(alice, max_concurrent=1)
    running = await create(client, alice, stream=True)
    assert running.status_code == 200
    refused = await create(client, alice)
    assert refused.status_code == 429
    assert "concurrent requests: Limit 1 in progress" in refused.json()["error"]["message"]
    assert int(refused["retry-after"]) >= 1
    await streamed_events(running)
    assert (await create(client, alice)).status_code == 200
    engine.fail_after = 1
    engine.error = EngineUnavailable("no replica")
    assert (await create(client, alice)).status_code == 503  # failed: the slot is freed too
    engine.fail_after = None
    assert (await create(client, alice)).status_code == 200


# --- budgets --------------------------------------------------------------------------------------


async def test_a_hard_budget_gives_insufficient_quota(client, transactional_cast, engine):
    alice = transactional_cast.alice
    await set_limits(alice, monthly_token_budget=1_000)
    engine.script = build_script(text="ok", input_tokens=40, output_tokens=60)
    refused = await create(client, alice, max_output_tokens=2_000)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    assert refused["x-should-retry"] == "false"
    assert int(refused["retry-after"]) >= 1
    served = [await create(client, alice, max_output_tokens=200) for _ in range(12)]
    statuses = [s.status_code for s in served]
    # Each reserves 267 (200 + the prompt's bound) and uses 100: served while used + 267 fits.
    assert statuses == [200] * 8 + [429] * 4
    counter = await MonthlyUsage.objects.aget(organization=alice.organization, project=None)
    assert (counter.used_tokens, counter.reserved_tokens) == (800, 0)
    rollup = await UsageDaily.objects.aget(organization=alice.organization)
    assert rollup.quota_exceeded == 5
    assert await sync_to_async(usage_reconcile)(organization_id=alice.organization.pk) == []


async def test_a_soft_budget_is_served_and_flagged(client, transactional_cast, engine):
    alice = transactional_cast.alice
    await set_limits(alice, monthly_token_budget=10, budget_is_hard=False)
    assert [(await create(client, alice)).status_code for _ in range(3)] == [200] * 3
    statuses = await sync_to_async(budget_status_list)(organization=alice.organization)
    assert [(s.state, s.hard) for s in statuses] == [("over", False)]


def test_parallel_budget_reservations_never_overspend(transactional_cast):
    """Reliability §8 test 11: 50 threads (own connections) reserve 100 tokens each against a
    budget of 1000: exactly 10 get through, and the counter never passes the budget."""
    import threading

    from django.db import connection

    from quotas.services.ledger import (
        BudgetExhausted,
        BudgetHold,
        TokenUsage,
        usage_record_open,
        usage_record_settle,
    )

    if connection.vendor != "postgresql":
        pytest.skip("threads on SQLite's shared in-memory test database lock tables, not rows")
    organization = transactional_cast.alice.organization
    hold = BudgetHold(project_id=None, budget=1_000, label="organization")
    barrier = threading.Barrier(50)
    opened: list[str] = []
    refused: list[str] = []

    def reserve(n: int) -> None:
        barrier.wait()
        try:
            usage_record_open(
                response_id=f"resp_parallel{n}",
                request_id="",
                organization_id=organization.pk,
                project_id=None,
                api_key_id=None,
                model="m",
                service_tier="default",
                stored=False,
                reserved_tokens=100,
                holds=(hold,),
            )
            opened.append(f"resp_parallel{n}")
        except BudgetExhausted:
            refused.append(f"resp_parallel{n}")
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(opened), len(refused)) == (10, 40)
    counter = MonthlyUsage.objects.get(organization=organization, project=None)
    assert (counter.used_tokens, counter.reserved_tokens) == (0, 1_000)
    for response_id in opened:
        assert usage_record_settle(
            response_id=response_id, status="completed", usage=TokenUsage(40, 0, 60, 0)
        )
        assert not usage_record_settle(  # a second settlement is a no-op
            response_id=response_id, status="completed", usage=TokenUsage(40, 0, 60, 0)
        )
    counter.refresh_from_db()
    assert (counter.used_tokens, counter.reserved_tokens) == (1_000, 0)
    assert usage_reconcile(organization_id=organization.pk) == []


# --- the ledger: one row per turn, however it ends ---------------------------------------------


async def test_the_ledger_has_one_row_per_turn_however_it_ends(client, transactional_cast, engine):
    alice = transactional_cast.alice
    await set_limits(
        alice, requests_per_minute=1_000, tokens_per_minute=10_000_000, max_concurrent=5
    )
    engine.script = build_script(text="one two three four five six", input_tokens=12)
    expected: dict[str, tuple[str, int | None]] = {}  # response id -> (status, total tokens)

    completed = (await create(client, alice)).json()
    expected[completed["id"]] = ("completed", completed["usage"]["total_tokens"])

    events = await streamed_events(await create(client, alice, stream=True))
    expected[events[-1]["response"]["id"]] = (
        "completed",
        events[-1]["response"]["usage"]["total_tokens"],
    )

    unstored = (await create(client, alice, store=False)).json()
    expected[unstored["id"]] = ("completed", unstored["usage"]["total_tokens"])

    engine.script = build_script(text="cut short here", finish="length", input_tokens=12)
    cut = (await create(client, alice, max_output_tokens=16)).json()
    expected[cut["id"]] = ("incomplete", cut["usage"]["total_tokens"])

    engine.fail_after = 2
    engine.error = EngineUnavailable("no replica could be reached")
    failed = await create(client, alice)
    assert failed.status_code == 503
    failed_row = await StoredResponse.objects.filter(status="failed").afirst()
    expected[failed_row.public_id] = ("failed", None)
    engine.fail_after = None

    # A client that goes away after three events (E5): the generator is closed mid-stream.
    engine.script = build_script(text=" ".join(["word"] * 50), input_tokens=12)
    engine.delay = 0.005
    prepared = await response_prepare(
        principal=await _principal(alice),
        request_id="req_dc",
        body={
            "model": "scripted",
            "input": "hi",
            "stream": True,
        },
    )
    async with aclosing(generate_events(prepared.generation)) as stream:
        seen = 0
        async for item in stream:
            batch = item if isinstance(item, list) else []
            seen += sum(event["type"] == "response.output_text.delta" for event in batch)
            if seen >= 3:
                break
    expected[prepared.generation.response_id] = ("incomplete", None)

    # Cancelled while running (R4).
    engine.script = build_script(text=" ".join(["word"] * 200), input_tokens=12)
    engine.delay = 0.02
    running = asyncio.create_task(create(client, alice))
    assert await engine.wait_until(lambda e: e.yielded >= 3 and e.active == 1, within=5)
    # The engine request starts alongside the row's INSERT: wait for the row, not just deltas.
    stored = await await_until(
        lambda: StoredResponse.objects.filter(status="in_progress").afirst(),
        within=5,
        what="the in_progress row",
    )
    cancelled = await client.post(f"/v1/responses/{stored.public_id}/cancel", headers=alice.headers)
    assert cancelled.json()["status"] == "cancelled"
    await running
    expected[stored.public_id] = ("cancelled", None)
    await asyncio.sleep(0)

    rows = {row.response_id: row async for row in UsageRecord.objects.all()}
    assert set(rows) == set(expected)  # exactly one row per turn, nothing else
    for response_id, (status, total) in expected.items():
        row = rows[response_id]
        assert row.status == status, response_id
        if total is not None:
            assert row.total_tokens == total and not row.usage_estimated
    assert rows[prepared.generation.response_id].output_tokens >= 1  # estimated from the stream
    assert rows[unstored["id"]].stored is False
    problems = await sync_to_async(usage_reconcile)(organization_id=alice.organization.pk)
    assert problems == []
    daily = await UsageDaily.objects.aget(organization=alice.organization)
    assert daily.requests == len(expected) and daily.failed_requests == 1
    assert daily.total_tokens == sum(row.total_tokens for row in rows.values())


async def _principal(persona):
    from tenants.principal import ApiPrincipal

    def load():
        key = (
            type(persona.api_key)
            .objects.select_related("organization", "project")
            .get(pk=persona.api_key.pk)
        )
        return ApiPrincipal(api_key=key, organization=key.organization, project=key.project)

    return await sync_to_async(load)()


async def test_expired_reservations_are_settled_by_the_sweeper(client, transactional_cast, engine):
    """A process killed between admission and settlement (the generation never runs)."""
    from datetime import timedelta

    from responses.services.usage import response_reservations_expire

    alice = transactional_cast.alice
    await set_limits(alice, monthly_token_budget=100_000)
    prepared = await response_prepare(
        principal=await _principal(alice),
        request_id="req_dead",
        body={"model": "scripted", "input": "hi"},
    )
    row = await UsageRecord.objects.aget(response_id=prepared.generation.response_id)
    assert row.status == "reserved" and row.budget_holds
    assert await sync_to_async(response_reservations_expire)(older_than=timedelta(hours=1)) == 0
    assert await sync_to_async(response_reservations_expire)(older_than=timedelta(0)) == 1
    await row.arefresh_from_db()
    assert row.status == "expired" and row.usage_estimated
    counter = await MonthlyUsage.objects.aget(organization=alice.organization, project=None)
    assert counter.reserved_tokens == 0
    assert await sync_to_async(usage_reconcile)(organization_id=alice.organization.pk) == []


# --- H5 -----------------------------------------------------------------------------------------


@pytest.mark.compliance("H5")
async def test_rate_limit_events_only_for_clients_that_opt_in(
    client, transactional_cast, engine, frozen_limiter
):
    alice = transactional_cast.alice
    await set_limits(alice, requests_per_minute=60, tokens_per_minute=100_000)
    plain = await streamed_events(await create(client, alice, stream=True))
    check_stream(plain)  # exactly OpenAI's stream
    assert all(e["type"] != "response.rate_limits.updated" for e in plain)

    opted = await streamed_events(
        await create(client, alice, stream=True, headers={"X-Rate-Limit-Events": "true"})
    )
    types = [e["type"] for e in opted]
    assert [e["sequence_number"] for e in opted] == list(range(len(opted)))
    assert types[:3] == ["response.created", "response.in_progress", "response.rate_limits.updated"]
    assert types[-2:] == ["response.completed", "response.rate_limits.updated"]
    admitted, settled = opted[2]["rate_limits"], opted[-1]["rate_limits"]
    assert [r["name"] for r in admitted] == ["requests", "tokens"]
    assert admitted[0] == {"name": "requests", "limit": 60, "remaining": 58, "reset_seconds": 2.0}
    assert settled[0]["remaining"] == 58
    assert settled[1]["remaining"] > admitted[1]["remaining"]  # the unused reservation came back
    # The events are stored with the stream: a replay is the same series, with no gaps (L6).
    replay = await streamed_events(
        await client.get(
            f"/v1/responses/{opted[0]['response']['id']}?stream=true", headers=alice.headers
        )
    )
    assert replay == opted


# --- headers on every authenticated answer (M5) ---------------------------------------------


@pytest.mark.compliance("M5")
async def test_other_endpoints_carry_the_current_state(
    client, transactional_cast, engine, frozen_limiter
):
    alice, charlie = transactional_cast.alice, transactional_cast.charlie
    await set_limits(alice, requests_per_minute=3, tokens_per_minute=50_000)
    await create(client, alice)
    for path in ("/v1/models", "/v1/models/scripted", "/v1/responses/resp_nothere"):
        answer = await client.get(path, headers=alice.headers)
        assert_openai_rate_headers(answer)
        assert answer["x-ratelimit-remaining-requests"] == "2"  # a peek takes nothing
    unlimited = await client.get("/v1/models", headers=charlie.headers)
    assert_unlimited(unlimited, "requests", "tokens")  # no limits: all six, unlimited
    anonymous = await client.get("/v1/models")
    assert anonymous.status_code == 401 and "x-ratelimit-limit-requests" not in anonymous


def assert_unlimited(answer, *kinds: str) -> None:
    assert all(name in answer for name in RATE_HEADERS)
    for kind in kinds:
        assert answer[f"x-ratelimit-limit-{kind}"] == str(UNLIMITED)
        assert answer[f"x-ratelimit-remaining-{kind}"] == str(UNLIMITED)
        assert answer[f"x-ratelimit-reset-{kind}"] == "0s"


@pytest.mark.compliance("M5")
async def test_one_configured_dimension_still_gets_all_six_headers(
    client, transactional_cast, engine, frozen_limiter
):
    alice = transactional_cast.alice
    await set_limits(alice, requests_per_minute=5)
    created = await create(client, alice)
    assert created["x-ratelimit-limit-requests"] == "5"
    assert created["x-ratelimit-remaining-requests"] == "4"
    assert_unlimited(created, "tokens")
    peeked = await client.get("/v1/models", headers=alice.headers)
    assert peeked["x-ratelimit-remaining-requests"] == "4"
    assert_unlimited(peeked, "tokens")
    await set_limits(alice, requests_per_minute=None, tokens_per_minute=1_000_000)
    other = await client.get("/v1/models", headers=alice.headers)
    assert other["x-ratelimit-limit-tokens"] == "1000000"
    assert_unlimited(other, "requests")


def test_sync_views_get_the_headers_too(transactional_cast, settings):
    from django.test import Client

    from quotas.services.limiter import LocalLimiter

    set_limiter(LocalLimiter())
    limits_set(organization=transactional_cast.alice.organization, requests_per_minute=7)
    answer = Client().get("/v1/models", headers=transactional_cast.alice.headers)
    assert answer["x-ratelimit-limit-requests"] == "7"
    assert answer["x-ratelimit-remaining-requests"] == "7"


# --- the limiter's Redis is down (reliability §8 test 10) ----------------------------------------


async def test_a_dead_limiter_fails_open_without_a_500(client, transactional_cast, engine, caplog):
    alice = transactional_cast.alice
    set_limiter(RedisLimiter(url="redis://127.0.0.1:1/0", prefix="x", retry_seconds=5))
    await set_limits(alice, requests_per_minute=1, tokens_per_minute=10, max_concurrent=1)
    started = time.monotonic()
    answers = [await create(client, alice) for _ in range(3)]
    assert time.monotonic() - started < 1
    assert [a.status_code for a in answers] == [200] * 3  # limits off, by policy
    assert_unlimited(answers[0], "requests", "tokens")  # admitted without limits, and says so
    assert await UsageRecord.objects.filter(status="completed").acount() == 3  # ledger still on
    assert sum("failing open" in r.message for r in caplog.records) == 1  # logged, not flooded
    models = await client.get("/v1/models", headers=alice.headers)
    assert models.status_code == 200
    assert_unlimited(models, "requests", "tokens")


async def test_a_background_response_is_settled_by_its_worker(
    transactional_cast, engine, frozen_limiter
):
    """Admitted by the web process, run by a worker (here: in-process), settled by response id
    from the ledger row: the slot and the unused tokens come back, the usage is recorded."""
    from responses.services.background import background_run

    alice = transactional_cast.alice
    await set_limits(alice, max_concurrent=1, tokens_per_minute=100_000)
    engine.script = build_script(text="done in the background", input_tokens=9)
    prepared = await response_prepare(
        principal=await _principal(alice),
        request_id="req_bg",
        body={"model": "scripted", "input": "hi", "background": True, "store": True},
    )
    response_id = prepared.generation.response_id
    row = await UsageRecord.objects.aget(response_id=response_id)
    assert row.status == "reserved" and len(row.limiter_checks) == 2
    await background_run(response_pk=prepared.generation.record_pk)
    await row.arefresh_from_db()
    assert (row.status, row.input_tokens, row.output_tokens) == ("completed", 9, 4)
    # The in-flight slot is free again and the unused reservation came back.
    state = await frozen_limiter.peek(
        [c for c in (await sync_to_async(_checks_of)(row)) if c.kind == "tokens"]
    )
    assert state[0].remaining == 100_000 - 13
    second = await response_prepare(
        principal=await _principal(alice),
        request_id="req_bg2",
        body={"model": "scripted", "input": "hi", "background": True, "store": True},
    )
    assert second.generation.response_id != response_id  # admitted: the slot was released


def _checks_of(row):
    from quotas.services.admission import _check_load

    return [_check_load(c) for c in row.limiter_checks]
