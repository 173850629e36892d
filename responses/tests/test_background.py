"""Background mode against a real Celery worker process (not eager mode), real Redis (broker,
cache and the live event log), the test database, and a fake vLLM replica over HTTP.

* a background response completes; ``GET ?stream=true&starting_after=N`` yields contiguous
  sequence numbers after N, and the deltas add up to the final text;
* a reader that disconnects mid-run and resumes (in another web process) sees no gap and no
  duplicate;
* a web process other than the one that accepted the request streams and cancels it, and the
  upstream request is aborted within about a second;
* ``kill -9`` of the worker mid-run: the sweeper (beat, in the next worker) marks it failed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient

from engines.models import EngineReplica, ServedModel
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture
from testsupport.sse import parse_sse, streamed_events, text_of
from testsupport.stored_responses import wait_for_status
from testsupport.waiting import await_until
from testsupport.worker import Worker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)"),
]

LEASE_SECONDS = 1.5
LONG_TEXT = " ".join(f"w{i}" for i in range(400))

_BEHAVIORS: dict[str, FakeBehavior] = {
    "up-quick": FakeBehavior(text="one two three four five six seven eight", delay=0.01),
    "up-slow": FakeBehavior(text=LONG_TEXT, delay=0.05),
}


def _declare_queues() -> None:
    # The root conftest clears the cache around every test, and with Redis that is FLUSHDB,
    # which also drops kombu's queue bindings: declare them again so publishing still routes.
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).declare()


upstream = fake_vllm_fixture(by_model=_BEHAVIORS)


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    from config.celery import app

    app.control.purge()  # messages of an earlier run must not reach this test database
    running = Worker(
        tmp_path_factory.mktemp("celery"),
        env={"BACKGROUND_LEASE_SECONDS": str(LEASE_SECONDS), "SWEEP_INTERVAL_SECONDS": "0.5"},
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def models(transactional_cast, upstream, worker):
    _declare_queues()
    names = {}
    for upstream_name in _BEHAVIORS:
        kind = upstream_name.removeprefix("up-")
        model = ServedModel.objects.create(
            name=f"bg-{kind}-{upstream.port}", upstream_model=upstream_name
        )
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    return names


async def create(persona, **body) -> dict:
    response = await AsyncClient().post(
        "/v1/responses",
        json.dumps({"input": "Tell me a story.", "background": True, **body}),
        content_type="application/json",
        headers=persona.headers,
    )
    assert response.status_code == 200, response.content
    return response.json()


async def replay(persona, response_id: str, starting_after: int | None = None) -> list[dict]:
    query = "stream=true" + (
        f"&starting_after={starting_after}" if starting_after is not None else ""
    )
    response = await AsyncClient().get(
        f"/v1/responses/{response_id}?{query}", headers=persona.headers
    )
    return await streamed_events(response)


async def test_a_background_response_runs_in_the_worker_and_replays_from_any_point(
    models, transactional_cast
):
    alice = transactional_cast.alice
    queued = await create(alice, model=models["quick"])
    assert queued["status"] == "queued" and queued["background"] is True
    row = await wait_for_status(queued["id"], {"completed", "failed"}, within=20)
    assert row.status == "completed", row.body
    polled = await AsyncClient().get(f"/v1/responses/{queued['id']}", headers=alice.headers)
    assert polled.json()["output"][0]["content"][0]["text"] == _BEHAVIORS["up-quick"].text

    events = await replay(alice, queued["id"])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert events[0]["response"]["status"] == "queued"
    assert events[-1]["type"] == "response.completed"
    assert text_of(events) == _BEHAVIORS["up-quick"].text
    tail = await replay(alice, queued["id"], starting_after=4)
    assert tail == events[5:]


@pytest.mark.compliance("L6")
async def test_a_reader_that_disconnects_resumes_without_gap_or_duplicate_in_another_process(
    models, transactional_cast, live_daphne
):
    alice = transactional_cast.alice
    accepted = await AsyncClient().post(
        "/v1/responses",
        json.dumps(
            {
                "model": models["slow"],
                "input": "x",
                "background": True,
                "stream": True,
                "max_output_tokens": 60,
            }
        ),
        content_type="application/json",
        headers=alice.headers,
    )
    seen: list[dict] = []
    # The accepting process streams the live events; the reader goes away after a few deltas.
    async for chunk in accepted.streaming_content:
        seen.extend(parse_sse(chunk))
        if len([e for e in seen if e["type"] == "response.output_text.delta"]) >= 5:
            break
    await accepted.streaming_content.aclose()
    response_id = seen[0]["response"]["id"]
    # Resume in another web process (daphne) after the last event it saw.
    async with httpx.AsyncClient(base_url=live_daphne, headers=alice.headers, timeout=30) as http:
        resumed = await http.get(
            f"/v1/responses/{response_id}",
            params={"stream": "true", "starting_after": seen[-1]["sequence_number"]},
        )
        rest = parse_sse(resumed.content)
    events = seen + rest
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    assert text_of(events) == events[-1]["response"]["output"][0]["content"][0]["text"]


async def test_another_web_process_streams_and_cancels_a_background_response(
    models, transactional_cast, live_daphne, upstream
):
    alice = transactional_cast.alice
    queued = await create(alice, model=models["slow"])  # accepted by this (test) process
    aborted_before = upstream.aborted_streams
    async with httpx.AsyncClient(base_url=live_daphne, headers=alice.headers, timeout=30) as http:
        async with http.stream(
            "GET", f"/v1/responses/{queued['id']}", params={"stream": "true"}
        ) as live:
            deltas = 0
            buffer = b""
            async for chunk in live.aiter_bytes():
                buffer += chunk
                deltas = buffer.count(b"event: response.output_text.delta")
                if deltas >= 3:
                    break
        assert deltas >= 3
        started = time.monotonic()
        cancelled = await http.post(f"/v1/responses/{queued['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert await upstream.await_until(lambda f: f.aborted_streams > aborted_before, within=2)
        assert time.monotonic() - started < 2.0
        again = await http.post(f"/v1/responses/{queued['id']}/cancel")  # idempotent
        assert again.json()["status"] == "cancelled"
    events = await replay(alice, queued["id"])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_a_worker_killed_mid_run_leaves_the_response_failed(
    models, transactional_cast, worker, upstream
):
    alice = transactional_cast.alice
    queued = await create(alice, model=models["slow"])
    await wait_for_status(queued["id"], {"in_progress"}, within=20)
    assert await upstream.await_until(lambda f: f.active_streams > 0, within=10)  # mid-run
    worker.kill()
    worker.start()  # its beat runs the sweeper
    row = await wait_for_status(queued["id"], {"failed", "completed"}, within=LEASE_SECONDS + 15)
    assert row.status == "failed"
    assert row.body["error"]["code"] == "server_error"
    events = await replay(alice, queued["id"])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.failed"


def test_the_sweeper_is_scheduled_under_beat() -> None:
    schedule: dict[str, Any] = settings.CELERY_BEAT_SCHEDULE
    assert "responses.sweep_background" in {entry["task"] for entry in schedule.values()}


def test_periodic_upkeep_never_queues_in_front_of_background_runs() -> None:
    """Sweeps go to a queue of their own that every worker also consumes, and a stale one
    expires: with one queue, a worker that fell behind beat made background runs wait minutes."""
    from config.celery import app

    def queue_of(task: str) -> str:
        return app.amqp.router.route({}, task)["queue"].name

    schedule: dict[str, Any] = settings.CELERY_BEAT_SCHEDULE
    assert {queue_of(entry["task"]) for entry in schedule.values()} == {"upkeep"}
    assert queue_of("responses.run_background") == "celery"
    assert {"celery", "upkeep"} <= set(app.amqp.queues)
    assert all(
        entry["options"]["expires"] >= 60 for entry in schedule.values() if "options" in entry
    )


@pytest.mark.compliance("E2")
async def test_a_tool_output_deadline_fires_in_the_worker(models, transactional_cast, engine):
    from responses.models import ResponseSession
    from testsupport.scripted_engine import build_script

    alice = transactional_cast.alice
    org = alice.organization
    org.tool_output_timeout_seconds = 1
    await sync_to_async(org.save)()
    engine.script = build_script(tool_calls=[("get_weather", '{"city": "Paris"}', "call_1")])
    first = await AsyncClient().post(
        "/v1/responses",
        json.dumps(
            {
                "model": "scripted",
                "input": "Weather?",
                "tools": [
                    {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
                ],
            }
        ),
        content_type="application/json",
        headers=alice.headers,
    )
    response_id = first.json()["id"]
    await await_until(
        lambda: ResponseSession.objects.filter(
            head_response__public_id=response_id, status="expired"
        ).aexists(),
        within=15,
        what="the session expires",
    )
    gone = await AsyncClient().post(
        f"/v1/responses/{response_id}/tool_outputs",
        json.dumps({"tool_outputs": [{"call_id": "call_1", "output": "sun"}]}),
        content_type="application/json",
        headers=alice.headers,
    )
    assert gone.status_code == 410


async def test_deleting_a_running_background_response_stops_it_settles_and_frees_the_slot(
    models, transactional_cast, upstream, worker
):
    """Issue 10, item 4: the worker used to crash appending events to the deleted row, leaving
    its ledger row reserved and its concurrency slot taken."""
    from quotas.models import UsageRecord
    from quotas.services.limits import limits_set
    from responses.models import StoredResponse
    from responses.services.event_log import live_event_log

    alice = transactional_cast.alice
    await sync_to_async(limits_set)(organization=alice.organization, max_concurrent=1)
    earlier = {id(record) for record in upstream.chat_requests()}
    queued = await create(alice, model=models["slow"])
    await wait_for_status(queued["id"], {"in_progress"}, within=20)
    streams_before = upstream.aborted_streams
    # Generating for real (a few deltas in the live log) before the delete: a cancel reaches
    # the worker within milliseconds, so an open stream alone may not have produced any yet.
    assert await upstream.await_until(
        lambda f: any(r.events_sent >= 3 for r in f.chat_requests() if id(r) not in earlier),
        within=10,
    )

    stored = await StoredResponse.objects.aget(public_id=queued["id"])
    log = live_event_log()

    async def generating():
        events = await log.read(response_pk=stored.pk, public_id=queued["id"], after=-1, wait=0.5)
        return any(e["type"] == "response.output_text.delta" for e in events)

    try:
        await await_until(generating, within=20, what="a delta in the live event log")
    finally:
        await log.close()

    deleted = await AsyncClient().delete(f"/v1/responses/{queued['id']}", headers=alice.headers)
    assert deleted.status_code == 200, deleted.content
    assert deleted.json() == {"id": queued["id"], "object": "response", "deleted": True}
    gone = await AsyncClient().get(f"/v1/responses/{queued['id']}", headers=alice.headers)
    assert gone.status_code == 404
    assert await upstream.await_until(lambda f: f.aborted_streams > streams_before, within=5)

    async def settled():
        record = await UsageRecord.objects.filter(response_id=queued["id"]).afirst()
        return record if record and record.status != UsageRecord.Status.RESERVED else None

    record = await await_until(settled, within=10, what="the ledger row is settled")
    assert record.status == UsageRecord.Status.CANCELLED
    assert record.output_tokens > 0, "what was generated is billed"
    # The slot is free at once: the next response is admitted, not refused with a 429.
    follow_up = await create(alice, model=models["quick"])
    assert follow_up["status"] == "queued"
    assert worker.running
    assert "IntegrityError" not in worker.log() and "FOREIGN KEY" not in worker.log()
