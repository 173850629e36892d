"""``POST /v1/responses/{id}/tool_outputs`` across daphne processes sharing the test database and
Redis.

* Concurrent submissions for different call ids, answered by two different processes (E3): both
  outputs are recorded, exactly one request gets the continuation (200, the other 202), and
  exactly one continuation reaches the engine, with both outputs in its input. Repeated over
  several chains so that the two submissions really race (released together by a barrier).
* A continuation whose web process is killed (SIGKILL) mid-stream: the sweeper fails it once its
  lease runs out, and the session goes back to ``awaiting_tool_outputs`` (outputs can be
  submitted again) instead of staying ``active`` forever.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from engines.models import EngineReplica, ServedModel
from responses.models import ResponseSession, StoredResponse
from testsupport.fake_vllm import FakeBehavior, FakeToolCall
from testsupport.live_server import DaphneProcess

pytestmark = pytest.mark.django_db(transaction=True)

CHAINS = 6
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
CALLS = FakeBehavior(
    text="",
    tool_calls=[
        FakeToolCall("get_weather", '{"city": "Paris"}', "call_paris"),
        FakeToolCall("get_weather", '{"city": "Oslo"}', "call_oslo"),
    ],
)
ANSWER = FakeBehavior(text="Sunny in Paris, snowing in Oslo.")
SLOW_ANSWER = FakeBehavior(text=" ".join(f"w{i}" for i in range(200)), delay=0.05)


@pytest.fixture(scope="module")
def second_daphne(django_db_setup):
    daphne = DaphneProcess()
    try:
        yield daphne.start().base_url
    finally:
        daphne.stop()


def _behavior(body: dict) -> FakeBehavior:
    # The first turn asks for both calls; a turn that carries tool results answers in text.
    if not any(m.get("role") == "tool" for m in body.get("messages", [])):
        return CALLS
    return SLOW_ANSWER if body.get("model") == "up-slow" else ANSWER


def _served(name: str, upstream_model: str, fake_vllm) -> str:
    served = ServedModel.objects.create(name=name, upstream_model=upstream_model)
    EngineReplica.objects.create(model=served, base_url=fake_vllm.base_url)
    return served.name


@pytest.fixture
def model(transactional_cast, fake_vllm):
    fake_vllm.behavior_for = _behavior
    return _served(f"mp-{fake_vllm.port}", "up", fake_vllm)


def _submit_together(requests: list[tuple[str, str, dict]], headers: dict) -> list[httpx.Response]:
    """POST each (base_url, path, body) from its own thread, released at the same moment."""
    barrier = threading.Barrier(len(requests))
    answers: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def run(index: int, base_url: str, path: str, body: dict) -> None:
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
                http.get("/healthz")  # connected before the barrier: only the POSTs race
                barrier.wait(timeout=30)
                answers[index] = http.post(path, json=body)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            answers[index] = exc
            barrier.abort()

    threads = [
        threading.Thread(target=run, args=(index, *request))
        for index, request in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for answer in answers:
        if not isinstance(answer, httpx.Response):
            raise AssertionError(f"a submitter failed: {answer!r}")
    return answers


@pytest.mark.compliance("C1", "C3", "E3")
def test_two_processes_submit_different_call_ids_and_one_continuation_runs(
    transactional_cast, model, fake_vllm, live_daphne, second_daphne
):
    alice = transactional_cast.alice
    for _ in range(CHAINS):
        with httpx.Client(base_url=live_daphne, headers=alice.headers, timeout=30) as http:
            first = http.post(
                "/v1/responses", json={"model": model, "input": "Paris and Oslo?", "tools": TOOLS}
            )
        assert first.status_code == 200, first.text
        first = first.json()
        assert [item["call_id"] for item in first["output"]] == ["call_paris", "call_oslo"]
        engine_calls_before = len(fake_vllm.chat_requests())

        path = f"/v1/responses/{first['id']}/tool_outputs"
        paris = {"tool_outputs": [{"call_id": "call_paris", "output": "sun"}]}
        oslo = {"tool_outputs": [{"call_id": "call_oslo", "output": "snow"}]}
        answers = _submit_together(
            [(live_daphne, path, paris), (second_daphne, path, oslo)], alice.headers
        )

        assert sorted(a.status_code for a in answers) == [200, 202], [a.text for a in answers]
        continued = next(a for a in answers if a.status_code == 200).json()
        assert continued["status"] == "completed", continued
        assert continued["previous_response_id"] == first["id"]
        continuations = StoredResponse.objects.filter(previous_response__public_id=first["id"])
        assert [c.public_id for c in continuations] == [continued["id"]]
        # Both outputs were recorded and both reached the one continuation's prompt.
        assert {item["call_id"]: item["output"] for item in continuations[0].input_items} == {
            "call_paris": "sun",
            "call_oslo": "snow",
        }
        engine_calls = fake_vllm.chat_requests()[engine_calls_before:]
        assert len(engine_calls) == 1
        tool_messages = [m for m in engine_calls[0].body["messages"] if m["role"] == "tool"]
        assert {(m["tool_call_id"], m["content"]) for m in tool_messages} == {
            ("call_paris", "sun"),
            ("call_oslo", "snow"),
        }
        session = ResponseSession.objects.get(root_response__public_id=first["id"])
        assert session.status == "completed"
        assert session.head_response.public_id == continued["id"]


@pytest.mark.compliance("C3")
def test_a_continuation_lost_with_its_web_process_reopens_the_session(
    transactional_cast, fake_vllm, live_daphne
):
    from responses.services.background import background_sweep
    from responses.tasks import sessions_expire_task

    alice = transactional_cast.alice
    fake_vllm.behavior_for = _behavior
    slow = _served(f"mp-slow-{fake_vllm.port}", "up-slow", fake_vllm)
    with httpx.Client(base_url=live_daphne, headers=alice.headers, timeout=30) as http:
        first = http.post("/v1/responses", json={"model": slow, "input": "?", "tools": TOOLS})
    first = first.json()
    doomed = DaphneProcess({"BACKGROUND_LEASE_SECONDS": "1.5"})
    try:
        doomed.start()
        outputs = [
            {"call_id": "call_paris", "output": "sun"},
            {"call_id": "call_oslo", "output": "snow"},
        ]
        with (
            httpx.Client(base_url=doomed.base_url, headers=alice.headers, timeout=30) as http,
            http.stream(
                "POST",
                f"/v1/responses/{first['id']}/tool_outputs",
                json={"tool_outputs": outputs, "stream": True},
            ) as live,
        ):
            buffer = b""
            for chunk in live.iter_bytes():
                buffer += chunk
                if buffer.count(b"event: response.output_text.delta") >= 3:
                    break
            doomed.kill()  # the web process running the continuation is gone
    finally:
        doomed.stop()
    session = ResponseSession.objects.get(root_response__public_id=first["id"])
    assert session.status == "active" and session.continuation_id is not None

    deadline = time.monotonic() + 20
    while not background_sweep():  # beat's sweeper, once the lease has run out
        assert time.monotonic() < deadline, "the continuation was never swept"
        time.sleep(0.2)
    lost = StoredResponse.objects.get(pk=session.continuation_id)
    assert lost.status == "failed"
    sessions_expire_task()  # beat's session sweep
    session.refresh_from_db()
    assert session.status == "awaiting_tool_outputs"
    assert session.head_response_id == lost.previous_response_id and session.submitted_outputs == {}
    with httpx.Client(base_url=live_daphne, headers=alice.headers, timeout=30) as http:
        again = http.post(
            f"/v1/responses/{first['id']}/tool_outputs",
            json={"tool_outputs": [{"call_id": "call_oslo", "output": "snow"}]},
        )
    assert again.status_code == 202, again.text
    assert again.json()["pending_call_ids"] == ["call_paris"]
