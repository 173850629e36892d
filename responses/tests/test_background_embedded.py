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

import json
import os
import re
import subprocess
import sys
import threading
import time

import openai
import pytest

from conftest import REPO_ROOT, DaphneProcess
from engines.testing.fake_vllm import FakeBehavior, FakeVllm
from responses.tests.conftest import Worker, text_of

QUICK_TEXT = "one two three four five six"
SLOW_TEXT = " ".join(f"w{i}" for i in range(80))
_BEHAVIORS = {
    "up-quick": FakeBehavior(text=QUICK_TEXT, delay=0.01),
    "up-slow": FakeBehavior(text=SLOW_TEXT, delay=0.05),
}


def _embedded_env(data_dir, upstream: FakeVllm) -> dict[str, str]:
    """Overrides that turn the test environment into the embedded default (an empty value is
    an unset setting)."""
    models = [
        {"name": "emb-quick", "upstream_model": "up-quick", "replicas": [upstream.base_url]},
        {"name": "emb-slow", "upstream_model": "up-slow", "replicas": [upstream.base_url]},
    ]
    return {
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "QUOTA_REDIS_URL": "",
        "SECRET_KEY": "",  # generated once into the data directory, shared by every process
        "API_KEY_PEPPER": "",
        "ALLOWED_HOSTS": "localhost,127.0.0.1,[::1]",  # the default (empty would mean none)
        "SECURE_SSL_REDIRECT": "",
        "PLATFORM_DATA_DIR": str(data_dir),
        "ENGINE_MODELS": json.dumps(models),
        "LOG_LEVEL": "WARNING",
    }


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """(SDK client, fake upstream) for a migrated, bootstrapped embedded platform."""
    upstream = FakeVllm()
    upstream.behavior_for = lambda body: _BEHAVIORS.get(body.get("model"))
    upstream.start()
    data_dir = tmp_path_factory.mktemp("embedded")
    env = _embedded_env(data_dir, upstream)
    daphne = DaphneProcess(env)
    worker = Worker(data_dir, env=env)
    try:
        _manage(env, "migrate", "--noinput")
        key = re.search(r"sk-rp-[A-Za-z0-9]+", _manage(env, "bootstrap")).group(0)
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
        "response.created", "response.queued", "response.in_progress"
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
