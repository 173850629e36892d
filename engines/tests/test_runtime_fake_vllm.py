"""The fake vLLM server itself: later tiers (Responses tests, the benchmark) rely on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from testsupport.fake_vllm import FakeBehavior, FakeToolCall, FakeVllm, split_tokens
from testsupport.fixtures import fake_vllm_fixture

REPO = Path(__file__).resolve().parents[2]


upstream = fake_vllm_fixture(scope="function", model="served", api_key="vllm-key")


def sdk(server: FakeVllm, *, api_key: str = "vllm-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=api_key, max_retries=0)


def test_split_tokens_round_trips() -> None:
    for text in ["", "a", "  lead", "trail  ", "two words", "multi\nline text"]:
        assert "".join(split_tokens(text)) == text


def test_official_sdk_streams_from_the_fake(upstream: FakeVllm) -> None:
    upstream.behavior = FakeBehavior(
        text="Hi!", tool_calls=[FakeToolCall(name="f", arguments='{"x": 1}', call_id="call_x")]
    )
    with sdk(upstream).chat.completions.create(
        model="served",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi!"
    calls = [
        c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls
    ]
    assert calls[0][0].id == "call_x" and calls[0][0].function.name == "f"
    assert "".join(c[0].function.arguments or "" for c in calls) == '{"x": 1}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 2
    assert upstream.wait_until(lambda s: s.completed_streams == 1)


def test_non_streaming_completion_and_max_tokens(upstream: FakeVllm) -> None:
    upstream.behavior = FakeBehavior(text="one two three four")
    completion = sdk(upstream).chat.completions.create(
        model="served", messages=[{"role": "user", "content": "count"}], max_tokens=2
    )
    assert completion.choices[0].message.content == "one two "
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2


def test_auth_model_name_and_models_list(upstream: FakeVllm) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(upstream, api_key="wrong").models.list()
    assert [m.id for m in sdk(upstream).models.list()] == ["served"]
    with pytest.raises(openai.NotFoundError):
        sdk(upstream).chat.completions.create(model="other", messages=[])


def test_health_toggle_and_tokenize(upstream: FakeVllm) -> None:
    assert httpx.get(f"{upstream.root_url}/health").status_code == 200
    upstream.healthy = False
    assert httpx.get(f"{upstream.root_url}/health").status_code == 503
    assert upstream.health_checks == 2

    answer = httpx.post(
        f"{upstream.root_url}/tokenize",
        json={"model": "served", "messages": [{"role": "user", "content": "a b c"}]},
    ).json()
    assert answer["count"] == 4


def test_restart_keeps_the_port_and_the_records(upstream: FakeVllm) -> None:
    base_url = upstream.base_url
    sdk(upstream).chat.completions.create(model="served", messages=[])
    upstream.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{upstream.root_url}/health")
    assert upstream.start() == base_url
    assert httpx.get(f"{upstream.root_url}/health").status_code == 200
    assert len(upstream.chat_requests()) == 1


def test_runs_as_a_module_for_benchmarks() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "testsupport.fake_vllm", "--port", "0", "--output-tokens", "5"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " at http://127.0.0.1:" in line
        base_url = line.rsplit(" at ", 1)[1].strip()
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        completion = client.chat.completions.create(model="any", messages=[])
        assert completion.choices[0].message.content == "lorem ipsum dolor sit amet"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode == 0
