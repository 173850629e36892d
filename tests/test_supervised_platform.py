"""``make run`` stays up (issue 10, item 1): its supervisor restarts a process that dies while the
others keep serving, and the embedded broker survives minutes of beat sweeps and traffic.

Both tests run the real supervisor (``scripts/supervise.py``) over web, worker and beat on the
embedded default (SQLite, the filesystem broker), with a fake vLLM at the engine seam and the
official SDK as the client.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from testsupport.embedded import SupervisedPlatform, bootstrap, embedded_env
from testsupport.fake_vllm import FakeBehavior, FakeVllm
from testsupport.waiting import wait_until

QUICK_TEXT = "one two three four five six"
_BEHAVIORS = {"up-quick": FakeBehavior(text=QUICK_TEXT, delay=0.005)}
# How long the soak runs: at least five minutes in CI (the embedded `make run` used to die
# after about three); shorter runs are for trying a change locally.
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))


@pytest.fixture
def platform(tmp_path):
    upstream = FakeVllm()
    upstream.behavior_for = lambda body: _BEHAVIORS.get(body.get("model"))
    upstream.start()
    models = [{"name": "emb-quick", "upstream_model": "up-quick", "replicas": [upstream.base_url]}]
    # Beat sweeps every half second: the traffic that used to hit the broker's race.
    env = embedded_env(tmp_path, models, SWEEP_INTERVAL_SECONDS="0.5", LOG_LEVEL="INFO")
    key = bootstrap(env)
    supervised = SupervisedPlatform(tmp_path, env)
    try:
        supervised.start()
        client = openai.OpenAI(
            base_url=f"{supervised.base_url}/v1", api_key=key, max_retries=0, timeout=30
        )
        yield supervised, client
        client.close()
    finally:
        supervised.stop()
        upstream.stop()


def _finished(client: openai.OpenAI, response_id: str):
    response = client.responses.retrieve(response_id)
    return response if response.status not in {"queued", "in_progress"} else None


def test_a_killed_worker_is_restarted_and_finishes_the_queued_work(platform):
    supervised, client = platform
    warm = client.responses.create(model="emb-quick", input="Warm up.", background=True)
    assert wait_until(lambda: _finished(client, warm.id), within=60).status == "completed"

    worker_pid = supervised.pid_of("worker")
    os.kill(worker_pid, signal.SIGKILL)
    supervised.wait_for_line(
        r"supervise\s+\| worker killed by SIGKILL; restarting it in", within=10
    )

    # Meanwhile the API keeps answering and accepts work for the worker that is not there.
    assert httpx.get(f"{supervised.base_url}/healthz", timeout=5).status_code == 200
    queued = [
        client.responses.create(model="emb-quick", input=f"Job {n}.", background=True)
        for n in range(3)
    ]
    assert all(response.status == "queued" for response in queued)

    supervised.wait_for_line(r"supervise\s+\| restarting worker \(restart 1\)", within=30)
    assert supervised.pid_of("worker") != worker_pid
    for response in queued:
        done = wait_until(lambda r=response: _finished(client, r.id), within=90)
        assert done.status == "completed", done.error
        assert done.output_text == QUICK_TEXT
    assert supervised.process.poll() is None, "the supervisor itself must keep running"


@pytest.mark.timeout(SOAK_SECONDS + 300)  # the soak itself, then draining the background runs
def test_soak_the_embedded_platform_keeps_every_process_up(platform):
    supervised, client = platform
    started = time.monotonic()
    pending: list[str] = []
    completed_in_background = streamed = 0

    def collect_finished() -> None:
        nonlocal completed_in_background
        for response_id in list(pending):
            done = _finished(client, response_id)
            if done is not None:
                assert done.status == "completed", (response_id, done.error)
                pending.remove(response_id)
                completed_in_background += 1

    while time.monotonic() - started < SOAK_SECONDS:
        # Steady, not flooding: a few background runs in flight at any time, next to one stream
        # at a time and beat's sweeps every half second.
        if len(pending) < 3:
            pending.append(
                client.responses.create(model="emb-quick", input="Soak.", background=True).id
            )
        with client.responses.create(model="emb-quick", input="Stream.", stream=True) as stream:
            events = [event.type for event in stream]
        assert events[-1] == "response.completed", events
        streamed += 1
        collect_finished()

    wait_until(
        lambda: collect_finished() or not pending, within=120, what="the last background runs"
    )
    exits = supervised.matching(r"supervise\s+\| \w+ (exited|killed)")
    assert exits == [], "\n".join(exits)
    assert supervised.matching("Unrecoverable error") == []
    assert streamed > 0 and completed_in_background > 0
