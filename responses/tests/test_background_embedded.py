"""The embedded default end to end, as ``make run`` starts it: no ``DATABASE_URL``, no
``REDIS_URL`` (SQLite, Celery over the filesystem transport, the live event log in the database,
a per-process cache), every process a subprocess sharing one ``PLATFORM_DATA_DIR``:
``manage.py migrate`` and ``bootstrap`` (the demo key, the models of ``ENGINE_MODELS``, here a
fake vLLM), daphne and a Celery worker with beat (``platform/Procfile``). The test talks to it
only through the official ``openai`` SDK:

* a background response is polled until it completes;
* a running one is streamed, the reader disconnects and resumes with ``starting_after``: the
  sequence numbers are contiguous and the deltas add up to the final text;
* another one is cancelled mid-run: ``cancelled``, and the fake engine sees its request aborted.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import openai
import pytest

from testsupport.embedded import bootstrap, embedded_env, manage
from testsupport.fake_vllm import FakeBehavior, FakeVllm
from testsupport.live_server import DaphneProcess
from testsupport.sse import text_of
from testsupport.waiting import wait_until
from testsupport.worker import Worker

QUICK_TEXT = "one two three four five six"
SLOW_TEXT = " ".join(f"w{i}" for i in range(80))
_BEHAVIORS = {
    "up-quick": FakeBehavior(text=QUICK_TEXT, delay=0.01),
    "up-slow": FakeBehavior(text=SLOW_TEXT, delay=0.05),
    "up-long": FakeBehavior(text=" ".join(f"w{i}" for i in range(1200)), delay=0.05),
}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """(SDK client, fake upstream) for a migrated, bootstrapped embedded platform."""
    upstream = FakeVllm()
    upstream.behavior_for = lambda body: _BEHAVIORS.get(body.get("model"))
    upstream.start()
    data_dir = tmp_path_factory.mktemp("embedded")
    models = [
        {"name": "emb-quick", "upstream_model": "up-quick", "replicas": [upstream.base_url]},
        {"name": "emb-slow", "upstream_model": "up-slow", "replicas": [upstream.base_url]},
        {"name": "emb-long", "upstream_model": "up-long", "replicas": [upstream.base_url]},
    ]
    # Limits changed with setlimits apply to the very next request (no limits cache).
    env = embedded_env(data_dir, models, QUOTA_LIMITS_CACHE_SECONDS="0")
    upstream.env = env  # for tests that run manage.py against the same data directory
    daphne = DaphneProcess(env)
    worker = Worker(data_dir, env=env)
    try:
        key = bootstrap(env)
        # Both start in parallel: each takes a few seconds on a loaded machine.
        failures: list[BaseException] = []

        def start(process) -> None:
            try:
                process.start()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failures.append(exc)

        starters = [threading.Thread(target=start, args=(p,)) for p in (daphne, worker)]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        if failures:
            raise failures[0]
        client = openai.OpenAI(
            base_url=f"{daphne.base_url}/v1", api_key=key, max_retries=0, timeout=30
        )
        yield client, upstream
        client.close()
    finally:
        if worker.running:
            # Not a warm shutdown: with the filesystem transport and beat in the same process it
            # takes ~15 s, and nothing in this throwaway data directory needs saving.
            worker.kill()
        daphne.stop()
        upstream.stop()


def _poll(client: openai.OpenAI, response_id: str, statuses: set[str], *, within: float):
    deadline = time.monotonic() + within
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in statuses:
            return response
        assert time.monotonic() < deadline, f"{response_id} still {response.status}"
        time.sleep(0.1)


def test_a_background_response_completes_and_is_polled(embedded):
    client, _ = embedded
    queued = client.responses.create(model="emb-quick", input="Count.", background=True)
    assert queued.status == "queued" and queued.background is True
    done = _poll(client, queued.id, {"completed", "failed", "cancelled"}, within=40)
    assert done.status == "completed", done.error
    assert done.output_text == QUICK_TEXT


@pytest.mark.compliance("L6")
def test_a_reader_resumes_a_running_background_stream_with_starting_after(embedded):
    client, _ = embedded
    queued = client.responses.create(model="emb-slow", input="Tell me.", background=True)
    seen = []
    with client.responses.retrieve(queued.id, stream=True) as stream:
        for event in stream:
            seen.append(event.model_dump())
            if sum(e["type"] == "response.output_text.delta" for e in seen) >= 5:
                break  # the reader goes away mid-run
    assert _poll(client, queued.id, {"in_progress", "completed"}, within=5).status == (
        "in_progress"
    ), "the response finished before the reader resumed: the test proves nothing"
    with client.responses.retrieve(
        queued.id, stream=True, starting_after=seen[-1]["sequence_number"]
    ) as stream:
        seen += [event.model_dump() for event in stream]
    numbers = [event["sequence_number"] for event in seen]
    assert numbers == list(range(len(numbers))), numbers
    assert [e["type"] for e in seen[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert seen[-1]["type"] == "response.completed"
    assert text_of(seen) == SLOW_TEXT == seen[-1]["response"]["output"][0]["content"][0]["text"]


def test_a_running_background_response_is_cancelled(embedded):
    client, upstream = embedded
    aborted_before = upstream.aborted_streams
    queued = client.responses.create(model="emb-slow", input="Tell me.", background=True)
    with client.responses.retrieve(queued.id, stream=True) as stream:
        for event in stream:  # until the engine is generating
            if event.type == "response.output_text.delta":
                break
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert upstream.wait_until(lambda fake: fake.aborted_streams > aborted_before, within=5)
    assert client.responses.retrieve(queued.id).status == "cancelled"
    assert client.responses.cancel(queued.id).status == "cancelled"  # idempotent


def test_deleting_a_running_background_response_settles_it_and_frees_the_slot(embedded):
    """Issue 10, item 4, on the embedded broker, where the live event log is the database: the
    worker used to crash appending to the deleted row ("FOREIGN KEY constraint failed"), its
    ledger row stayed reserved and the organization stayed at 429."""
    client, upstream = embedded
    manage(upstream.env, "setlimits", "--org", "demo", "--concurrency", "1")
    try:
        running = client.responses.create(model="emb-long", input="Tell me.", background=True)
        with client.responses.retrieve(running.id, stream=True) as stream:
            for event in stream:  # until the engine is generating
                if event.type == "response.output_text.delta":
                    break

        def refused() -> bool:
            try:
                client.responses.create(model="emb-quick", input="More?", background=True)
            except openai.RateLimitError:
                return True
            return False

        assert refused(), "the running response holds the only slot"
        aborted_before = upstream.aborted_streams
        client.responses.delete(running.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(running.id)
        assert upstream.wait_until(lambda fake: fake.aborted_streams > aborted_before, within=5)
        # The slot is free again (settlement follows the cancellation within moments).
        admitted = wait_until(
            lambda: not refused(), within=3, every=0.2, what="a new response is admitted"
        )
        assert admitted
        ledger = sqlite3.connect(upstream.env["PLATFORM_DATA_DIR"] + "/platform.sqlite3")
        try:
            status, output_tokens = ledger.execute(
                "SELECT status, output_tokens FROM quotas_usagerecord WHERE response_id = ?",
                (running.id,),
            ).fetchone()
        finally:
            ledger.close()
        assert status == "cancelled" and output_tokens > 0
    finally:
        manage(upstream.env, "setlimits", "--org", "demo", "--concurrency", "none")
