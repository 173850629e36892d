"""A Redis restart, provoked for real: a private redis-server without persistence (the shared one
is never touched) is the broker, cache, cancel-flag store and live event log of a daphne and a
Celery worker with beat started by this module; it is killed with SIGKILL and started again on
the same port, so everything it held is gone.

* tasks Redis lost are caught by the sweepers under beat: a tool-output deadline whose scheduled
  task died with Redis still expires the session (a later submission gets 410), and a background
  response whose run message died with Redis ends ``failed``, never stuck ``queued``;
* a background response running across the restart ends in a terminal state, and a reader
  following it through the restart sees no gap and no duplicate;
* the live event log heals: a writer whose stream was lost re-sends its history before anything
  new, so a reader resuming after the restart sees contiguous sequence numbers;
* while Redis is down and right after it is back the web API answers, and every error is an
  OpenAI envelope, never an HTML page (a background create cannot enqueue its run while the
  broker is down: a 503 envelope, and the row it stored is failed at once); once Redis is back,
  everything succeeds again.

Two defects this found are fixed and stay tested here: the Celery worker exited on a broker
connection loss while it held an unacknowledged message (config/kombu_fixes.py), and a key first
used while Redis was down got Django's HTML 500 from the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import httpx
import pytest
from asgiref.sync import sync_to_async

from engines.models import EngineReplica, ServedModel
from responses.models import ResponseSession, StoredResponse
from responses.services.event_log import EventSink, RedisEventLog
from testsupport.fake_vllm import FakeBehavior, FakeToolCall
from testsupport.fixtures import fake_vllm_fixture
from testsupport.live_server import DaphneProcess
from testsupport.redis_servers import PrivateRedis
from testsupport.sse import parse_sse, text_of
from testsupport.stored_responses import wait_for_status
from testsupport.waiting import await_until
from testsupport.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 1.5
QUEUED_TIMEOUT_SECONDS = 3
TERMINAL = {"completed", "failed", "incomplete", "cancelled"}
_BEHAVIORS: dict[str, FakeBehavior] = {
    "up-quick": FakeBehavior(text="one two three four five", delay=0.01),
    "up-medium": FakeBehavior(text=" ".join(f"m{i}" for i in range(20)), delay=0.03),
    "up-slow": FakeBehavior(text=" ".join(f"w{i}" for i in range(150)), delay=0.03),
    "up-tool": FakeBehavior(
        text="", tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', "call_paris")]
    ),
}
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]


upstream = fake_vllm_fixture(by_model=_BEHAVIORS)


class Stack:
    """The private Redis and the platform processes that use it (and only it)."""

    def __init__(self, log_dir) -> None:
        self.redis = PrivateRedis()
        on_redis = {"REDIS_URL": self.redis.url, "QUOTA_REDIS_URL": ""}
        self.daphne = DaphneProcess(
            on_redis | {"BACKGROUND_QUEUED_TIMEOUT_SECONDS": str(QUEUED_TIMEOUT_SECONDS)}
        )
        self.worker = Worker(
            log_dir,
            env=on_redis
            | {"BACKGROUND_LEASE_SECONDS": str(LEASE_SECONDS), "SWEEP_INTERVAL_SECONDS": "0.5"},
        )
        self._dead_worker_logs: list[str] = []

    def restart_redis(self, *, while_down=None):
        """SIGKILL, run ``while_down`` against the platform without Redis (its result is
        returned), start Redis again on the same port, empty."""
        self.redis.kill()
        try:
            return while_down() if while_down is not None else None
        finally:
            self.redis.start()

    def supervise_worker(self) -> bool:
        """What a process supervisor does: start the worker again if it died. True if it was
        still running."""
        if self.worker.running:
            return True
        self._dead_worker_logs.append(self.worker.log())
        self.worker.start()
        return False

    def worker_logs(self) -> list[str]:
        """The logs of every worker this module started, the running one last."""
        return [*self._dead_worker_logs, self.worker.log()]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.worker.stop()
        with contextlib.suppress(Exception):
            self.daphne.stop()
        if self.redis.process is not None and self.redis.process.poll() is None:
            self.redis.kill()


@pytest.fixture(scope="module")
def stack(django_db_setup, tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("redis-restart"))
    try:
        running.redis.start()
        running.daphne.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def models(transactional_cast, upstream, stack):
    names = {}
    for upstream_name in _BEHAVIORS:
        kind = upstream_name.removeprefix("up-")
        model = ServedModel.objects.create(
            name=f"rr-{kind}-{upstream.port}", upstream_model=upstream_name
        )
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    return names


def _load(public_id: str) -> StoredResponse:
    return StoredResponse.objects.get(public_id=public_id)


def assert_openai_answer(response: httpx.Response) -> None:
    """Success, or an error in OpenAI's envelope: never an HTML page."""
    kind = response.headers.get("content-type", "")
    assert "html" not in kind, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}, error
    elif kind.startswith("text/event-stream"):
        events = parse_sse(response.content)
        assert events and events[-1]["type"] in (
            "response.completed",
            "response.failed",
            "response.incomplete",
        ), events[-3:]


def probe_api(base_url: str, persona, models: dict[str, str], response_id: str) -> list[int]:
    """A read, the model list, a create, a streamed create, a background create (with a key
    this process has used already); returns the HTTP statuses."""
    with httpx.Client(base_url=base_url, headers=persona.headers, timeout=30) as http:
        answers = [
            http.get(f"/v1/responses/{response_id}"),
            http.get("/v1/models"),
            http.post("/v1/responses", json={"model": models["quick"], "input": "hi"}),
            http.post(
                "/v1/responses", json={"model": models["medium"], "input": "hi", "stream": True}
            ),
            http.post(
                "/v1/responses", json={"model": models["quick"], "input": "hi", "background": True}
            ),
        ]
    for answer in answers:
        assert_openai_answer(answer)
    return [answer.status_code for answer in answers]


def api_recovers(base_url: str, persona, models: dict[str, str], response_id: str) -> None:
    """Once Redis is back, every probe succeeds again within a few seconds (connections that
    died with the old server may each fail once; every failure is still an envelope)."""
    deadline = time.monotonic() + 15
    while (statuses := probe_api(base_url, persona, models, response_id)) != [200] * 5:
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)


async def follow(http: httpx.AsyncClient, response_id: str, seen: list[dict]) -> None:
    """Collect the events of ``GET …?stream=true`` as they arrive."""
    url = f"/v1/responses/{response_id}"
    async with http.stream("GET", url, params={"stream": "true"}) as live:
        assert live.status_code == 200
        buffer = b""
        async for chunk in live.aiter_bytes():
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            seen.extend(parse_sse(b"\n\n".join(frames) + b"\n\n") if frames else [])


@pytest.mark.compliance("E2")
async def test_tasks_redis_lost_are_caught_by_the_sweepers(models, transactional_cast, stack):
    alice = transactional_cast.alice
    org = alice.organization
    org.tool_output_timeout_seconds = 2
    await sync_to_async(org.save)()
    await asyncio.to_thread(stack.worker.stop)  # nobody takes the messages before Redis loses them
    async with httpx.AsyncClient(
        base_url=stack.daphne.base_url, headers=alice.headers, timeout=30
    ) as http:
        called = await http.post(
            "/v1/responses", json={"model": models["tool"], "input": "Weather?", "tools": TOOLS}
        )
        assert called.status_code == 200, called.text
        called = called.json()
        assert [item["type"] for item in called["output"]] == ["function_call"]
        queued = await http.post(
            "/v1/responses", json={"model": models["quick"], "input": "x", "background": True}
        )
        queued = queued.json()
        assert queued["status"] == "queued", queued

    def while_down() -> list[str]:
        probe_api(stack.daphne.base_url, alice, models, called["id"])
        with httpx.Client(base_url=stack.daphne.base_url, headers=alice.headers, timeout=30) as h:
            # A background run cannot be enqueued: a 503 the client may retry, and the row it
            # stored is failed at once rather than left queued.
            refused = h.post(
                "/v1/responses", json={"model": models["quick"], "input": "hi", "background": True}
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "service_unavailable"
            assert int(refused.headers["retry-after-ms"]) >= 1000  # M3
            # A deadline set while the broker is unreachable: its task cannot even be sent.
            answer = h.post(
                "/v1/responses", json={"model": models["tool"], "input": "Again?", "tools": TOOLS}
            )
        assert_openai_answer(answer)
        return [answer.json()["id"]] if answer.status_code == 200 else []

    # The deadline task (ETA) and the run message are in Redis only: the restart loses both.
    called_while_down = await asyncio.to_thread(stack.restart_redis, while_down=while_down)
    await asyncio.to_thread(api_recovers, stack.daphne.base_url, alice, models, called["id"])
    await asyncio.to_thread(stack.worker.start)

    deadline = time.monotonic() + 20
    while True:
        sessions = await sync_to_async(list)(
            ResponseSession.objects.filter(
                head_response__public_id__in=[called["id"], *called_while_down]
            ).values_list("status", flat=True)
        )
        if sessions == ["expired"] * (1 + len(called_while_down)):
            break
        assert time.monotonic() < deadline, sessions
        await asyncio.sleep(0.1)
    # Only the sweeper can have done it: the task scheduled for the deadline died with Redis.
    # The sweep's "succeeded" line is written after its transaction commits: wait for it.
    swept = r"responses\.expire_sessions\[[^\]]+\] succeeded in \S+: [12]$"
    await await_until(
        lambda: re.search(swept, stack.worker.log(), re.M), within=10, what="the sweep's log line"
    )
    assert "responses.expire_session[" not in stack.worker.log()
    row = await wait_for_status(queued["id"], TERMINAL, within=QUEUED_TIMEOUT_SECONDS + 20)
    assert row.status == "failed" and row.body["error"]["code"] == "server_error"
    async with httpx.AsyncClient(
        base_url=stack.daphne.base_url, headers=alice.headers, timeout=30
    ) as http:
        gone = await http.post(
            f"/v1/responses/{called['id']}/tool_outputs",
            json={"tool_outputs": [{"call_id": "call_paris", "output": "sun"}]},
        )
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"]["message"]
        polled = await http.get(f"/v1/responses/{queued['id']}")
        assert polled.json()["status"] == "failed"
    # Nothing the outage touched stays open (the probes' own background creates included).
    deadline = time.monotonic() + QUEUED_TIMEOUT_SECONDS + 20
    while open_rows := await sync_to_async(list)(
        StoredResponse.objects.exclude(status__in=TERMINAL).values_list("public_id", "status")
    ):
        assert time.monotonic() < deadline, open_rows
        await asyncio.sleep(0.2)


async def test_a_background_response_running_across_a_restart_ends_terminal(
    models, transactional_cast, stack
):
    alice = transactional_cast.alice
    await asyncio.to_thread(stack.supervise_worker)
    async with httpx.AsyncClient(
        base_url=stack.daphne.base_url, headers=alice.headers, timeout=60
    ) as http:
        queued = await http.post(
            "/v1/responses", json={"model": models["slow"], "input": "x", "background": True}
        )
        queued = queued.json()
        seen: list[dict] = []
        follower = asyncio.create_task(follow(http, queued["id"], seen))
        try:
            deadline = time.monotonic() + 20
            while sum(e["type"] == "response.output_text.delta" for e in seen) < 5:
                assert time.monotonic() < deadline and not follower.done(), seen
                await asyncio.sleep(0.05)
            await asyncio.to_thread(
                stack.restart_redis,
                while_down=lambda: probe_api(stack.daphne.base_url, alice, models, queued["id"]),
            )
            deadline = time.monotonic() + LEASE_SECONDS + 30
            while (row := await sync_to_async(_load)(queued["id"])).status not in TERMINAL:
                # A worker that died is started again, as its supervisor would; its beat then
                # fails what the dead one left behind once the lease has run out.
                await asyncio.to_thread(stack.supervise_worker)
                assert time.monotonic() < deadline, row.status
                await asyncio.sleep(0.1)
            await asyncio.wait_for(follower, 30)  # the reader's stream ends with the response
        finally:
            follower.cancel()
    assert row.status in ("completed", "failed"), row.status
    numbers = [e["sequence_number"] for e in seen]
    assert numbers == list(range(len(numbers))), numbers  # no gap, no duplicate
    if row.status == "completed":
        assert seen[-1]["type"] == "response.completed"
        assert text_of(seen) == row.body["output"][0]["content"][0]["text"]
    # The worker survives the broker's restart (config/kombu_fixes.py).
    assert not any("Unrecoverable error" in log for log in stack.worker_logs())


async def test_the_live_event_log_heals_after_a_restart(stack):
    """Writer and reader of one stream, on the private Redis, across a real restart."""
    from responses.streaming import events as ev

    def event(n: int) -> dict:
        return ev.error(code="x", message=f"e{n}") | {"sequence_number": n}

    writer_log, reader_log = RedisEventLog(stack.redis.url), RedisEventLog(stack.redis.url)
    sink = EventSink(writer_log, response_pk=0, public_id=f"resp_heal_{time.monotonic_ns()}")
    read = []

    async def read_all(after: int) -> list[dict]:
        return await reader_log.read(response_pk=0, public_id=sink._public_id, after=after, wait=0)

    try:
        for n in range(10):
            sink.add(event(n))
        assert len(await sink.flush()) == 10
        read += await read_all(-1)
        assert [e["sequence_number"] for e in read] == list(range(10))

        await asyncio.to_thread(stack.redis.kill)
        sink.add(event(10))
        assert await sink.flush() == []  # kept, not lost, not raised
        assert await read_all(9) == []  # a reader sees "nothing new yet", not an exception
        await asyncio.to_thread(stack.redis.start)

        sink.add(event(11))
        deadline = time.monotonic() + 5
        while sink.due() is False:  # waits out the writer's retry pause
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert [e["sequence_number"] for e in await sink.flush()] == [10, 11]
        # The restart lost 0..9: they were re-sent first, so a reader starting over sees all.
        assert [e["sequence_number"] for e in await read_all(-1)] == list(range(12))
        assert [e["sequence_number"] for e in await read_all(9)] == [10, 11]
        sink.add(event(11))  # a retried batch is skipped, not duplicated
        sink.add(event(12))
        await sink.flush()
        assert [e["sequence_number"] for e in await read_all(-1)] == list(range(13))
    finally:
        if stack.redis.process.poll() is not None:  # failed while it was down
            await asyncio.to_thread(stack.redis.start)
        await writer_log.close()
        await reader_log.close()


def test_a_key_first_used_while_redis_is_down_gets_an_envelope(transactional_cast, stack):
    # A key this daphne has not seen yet: authentication marks its first use in the cache.
    stranger = transactional_cast.charlie

    def read_models() -> httpx.Response:
        return httpx.get(f"{stack.daphne.base_url}/v1/models", headers=stranger.headers, timeout=30)

    answer = stack.restart_redis(while_down=read_models)
    assert_openai_answer(answer)
