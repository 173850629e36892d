"""The official ``openai`` SDK as the client of the Responses API, against a live daphne server.

Everything goes over real sockets: the SDK (sync ``OpenAI`` and ``AsyncOpenAI``, no retries) →
daphne (``live_daphne``, another process) → the platform's vLLM engine → a fake vLLM replica that
this module runs in a thread. Every streamed event is checked against the SDK's own types and the
stream rules of reference §4 (``check_event`` / ``check_stream``).

The fake answers per *upstream* model name, so one replica serves a plain text model, a slow
model (for cancellation), and a tool-calling model side by side. Public model names carry the
fake's port: daphne caches engines per model name for a while, and another module's fake may
have served the same name on another port earlier in the session.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest

from engines.models import EngineReplica, ServedModel
from testsupport.conformance import check_event, check_response, check_stream
from testsupport.fake_vllm import FakeBehavior, FakeToolCall, FakeVllm, count_prompt_tokens
from testsupport.fixtures import fake_vllm_fixture
from testsupport.sse import parse_sse, text_of

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "The quick brown fox jumps over the lazy dog."
SLOW_TEXT = " ".join(f"word{i}" for i in range(400))  # 400 chunks at 20 ms: 8 s if never stopped
TOOL_ANSWER = "It is sunny in Paris."
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def _tools_behavior(body: dict[str, Any]) -> FakeBehavior:
    """First turn: call get_weather. Once the tool's output is in the prompt: answer in text."""
    if any(message.get("role") == "tool" for message in body.get("messages") or []):
        return FakeBehavior(text=TOOL_ANSWER)
    return FakeBehavior(
        text="",
        tool_calls=[
            FakeToolCall(name="get_weather", arguments='{"city": "Paris"}', call_id="call_w1")
        ],
    )


_BEHAVIORS = {
    "up-text": lambda body: FakeBehavior(text=TEXT, prompt_tokens=11),
    "up-slow": lambda body: FakeBehavior(text=SLOW_TEXT, delay=0.02),
    "up-tools": _tools_behavior,
}


upstream = fake_vllm_fixture(behavior=FakeBehavior(text=TEXT), by_model=_BEHAVIORS)


@dataclass
class Models:
    text: str
    slow: str
    tools: str


@pytest.fixture
def models(transactional_cast, upstream) -> Models:
    names = {}
    for kind in ("text", "slow", "tools"):
        model = ServedModel.objects.create(
            name=f"sdk-{kind}-{upstream.port}",
            upstream_model=f"up-{kind}",
            tool_call_parser="hermes",
        )
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    return Models(**names)


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    def __iter__(self):
        for chunk in self.inner:
            self.sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _AsyncTee(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    async def __aiter__(self):
        async for chunk in self.inner:
            self.sink.extend(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def _is_sse(response: httpx2.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


class RecordingTransport(httpx2.HTTPTransport):
    """Keeps the raw bytes of every SSE body the SDK reads: the wire is what gets checked, not
    the SDK's rebuilt models (its ``responses.stream()`` helper rewrites events)."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[bytearray] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        if _is_sse(response):
            self.streams.append(bytearray())
            response.stream = _Tee(response.stream, self.streams[-1])
        return response

    def last_events(self) -> list[dict[str, Any]]:
        return parse_sse(bytes(self.streams[-1]))


class AsyncRecordingTransport(httpx2.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.streams: list[bytearray] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        if _is_sse(response):
            self.streams.append(bytearray())
            response.stream = _AsyncTee(response.stream, self.streams[-1])
        return response

    def last_events(self) -> list[dict[str, Any]]:
        return parse_sse(bytes(self.streams[-1]))


@dataclass
class Clients:
    alice: openai.OpenAI
    alice_again: openai.OpenAI
    charlie: openai.OpenAI
    wire: RecordingTransport
    """Raw SSE bodies read by ``alice``."""


def _client(base_url: str, secret: str, transport: RecordingTransport | None = None):
    return openai.OpenAI(
        base_url=f"{base_url}/v1",
        api_key=secret,
        max_retries=0,
        timeout=30,
        http_client=openai.DefaultHttpxClient(transport=transport or RecordingTransport()),
    )


@pytest.fixture
def clients(live_daphne, transactional_cast):
    wire = RecordingTransport()
    made = Clients(
        alice=_client(live_daphne, transactional_cast.alice.secret, wire),
        alice_again=_client(live_daphne, transactional_cast.alice.secret),
        charlie=_client(live_daphne, transactional_cast.charlie.secret),
        wire=wire,
    )
    yield made
    for client in (made.alice, made.alice_again, made.charlie):
        client.close()


@dataclass
class AsyncAlice:
    client: openai.AsyncOpenAI
    wire: AsyncRecordingTransport


@pytest.fixture
def async_alice(live_daphne, transactional_cast) -> AsyncAlice:
    wire = AsyncRecordingTransport()
    client = openai.AsyncOpenAI(
        base_url=f"{live_daphne}/v1",
        api_key=transactional_cast.alice.secret,
        max_retries=0,
        timeout=30,
        http_client=openai.DefaultAsyncHttpxClient(transport=wire),
    )
    return AsyncAlice(client=client, wire=wire)


def as_dict(event: Any) -> dict[str, Any]:
    """The event as it came over the wire: the SDK builds its models without validation and
    ``to_dict`` keeps exactly the keys that were sent. The ``responses.stream()`` helper adds a
    client-side ``snapshot`` to text deltas; that is not ours."""
    data = event.to_dict()
    data.pop("snapshot", None)
    return data


def fake_record(upstream: FakeVllm, request_id: str):
    """The fake's record of the chat request the platform sent for ``request_id`` (L7)."""
    for record in upstream.chat_requests():
        if record.headers.get("x-request-id") == request_id:
            return record
    raise AssertionError(f"the fake never saw request {request_id}")


# --- create -------------------------------------------------------------------------------------


@pytest.mark.compliance("L7")
def test_a_text_turn(clients, models, upstream):
    raw = clients.alice.responses.with_raw_response.create(model=models.text, input="Say hello")
    response = raw.parse()
    check_response(response.to_dict())
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.output[0].type == "message"
    assert response.output[0].id.startswith("msg_")
    assert response.usage.input_tokens == 11
    assert response.usage.output_tokens > 0
    assert response.model == models.text
    # The platform's request id reached the engine (L7) with the prompt.
    record = fake_record(upstream, raw.headers["x-request-id"])
    assert record.body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert upstream.wait_until(lambda _: record.outcome == "completed"), record.outcome


@pytest.mark.compliance("L1")
def test_a_streamed_create(clients, models):
    stream = clients.alice.responses.create(model=models.text, input="Say hello", stream=True)
    with stream:
        events = [as_dict(event) for event in stream]
    check_stream(events)
    assert clients.wire.last_events() == events  # what the SDK yields is what was sent
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert text_of(events) == TEXT
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == TEXT


def test_the_stream_helper_gives_the_final_response(clients, models):
    with clients.alice.responses.stream(model=models.text, input="Say hello") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    events = check_stream(clients.wire.last_events())
    assert types == [event["type"] for event in events]
    assert final.output_text == TEXT
    assert final.status == "completed"
    assert final.id == events[0]["response"]["id"]


@pytest.mark.compliance("L1")
async def test_the_async_client_creates_and_streams(async_alice, models):
    client, wire = async_alice.client, async_alice.wire
    async with client:
        response = await client.responses.create(model=models.text, input="Say hello")
        assert response.output_text == TEXT
        stream = await client.responses.create(model=models.text, input="hi", stream=True)
        events = [as_dict(event) async for event in stream]
        check_stream(events)
        assert wire.last_events() == events
        assert text_of(events) == TEXT
        async with client.responses.stream(model=models.text, input="hi") as helper:
            types = [event.type async for event in helper]
            final = await helper.get_final_response()
        helper_events = check_stream(wire.last_events())
        assert types == [event["type"] for event in helper_events]
        assert final.output_text == TEXT


# --- tools -------------------------------------------------------------------------------------


@pytest.mark.compliance("C1")
def test_a_tool_round_trip_through_previous_response_id(clients, models, upstream):
    first = clients.alice.responses.create(
        model=models.tools, input="What is the weather in Paris?", tools=[WEATHER_TOOL]
    )
    check_response(first.to_dict())
    assert first.status == "completed"
    [call] = first.output
    assert call.type == "function_call"
    assert call.id.startswith("fc_")
    assert call.name == "get_weather"
    assert call.arguments == '{"city": "Paris"}'
    assert call.call_id == "call_w1"

    raw = clients.alice.responses.with_raw_response.create(
        model=models.tools,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24C"}],
        tools=[WEATHER_TOOL],
    )
    second = raw.parse()
    check_response(second.to_dict())
    assert second.previous_response_id == first.id
    assert second.output_text == TOOL_ANSWER
    # The engine saw the whole chain: question, the assistant's call, the tool's answer.
    messages = fake_record(upstream, raw.headers["x-request-id"]).body["messages"]
    assert messages[0] == {"role": "user", "content": "What is the weather in Paris?"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["id"] == "call_w1"
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2]["role"] == "tool"
    assert messages[2]["tool_call_id"] == "call_w1"
    assert messages[2]["content"] == "sunny, 24C"


@pytest.mark.compliance("L1")
def test_a_streamed_tool_call(clients, models):
    with clients.alice.responses.stream(
        model=models.tools, input="Weather in Paris?", tools=[WEATHER_TOOL]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    events = check_stream(clients.wire.last_events())
    types = [event["type"] for event in events]
    assert "response.function_call_arguments.delta" in types
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_weather"
    assert done["arguments"] == '{"city": "Paris"}'
    assert final.output[0].type == "function_call"


# --- stored responses --------------------------------------------------------------------------


def test_retrieve_returns_the_stored_response(clients, models):
    created = clients.alice.responses.create(model=models.text, input="Say hello")
    again = clients.alice.responses.retrieve(created.id)
    check_response(again.to_dict())
    assert again.to_dict() == created.to_dict()


def test_input_items_page_by_page(clients, models):
    created = clients.alice.responses.create(
        model=models.text,
        input=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ],
    )
    # OpenAI's default order is newest first (desc).
    first_page = clients.alice.responses.input_items.list(created.id, limit=1, order="asc")
    pages = list(first_page.iter_pages())
    assert [len(page.data) for page in pages] == [1, 1, 1, 1]
    assert [page.has_more for page in pages] == [True, True, True, False]
    items = [item for page in pages for item in page.data]
    assert [item.role for item in items] == ["system", "user", "assistant", "user"]
    assert items[1].content[0].text == "First question"
    assert len({item.id for item in items}) == 4
    # Auto-pagination (the SDK follows `after=<last id>` while has_more) gives the same items.
    paged = clients.alice.responses.input_items.list(created.id, limit=1, order="asc")
    assert [item.id for item in paged] == [item.id for item in items]
    newest_first = clients.alice.responses.input_items.list(created.id)
    assert [item.id for item in newest_first.data] == [item.id for item in reversed(items)]
    assert not newest_first.has_more
    paged_desc = clients.alice.responses.input_items.list(created.id, limit=1)
    assert [item.id for item in paged_desc] == [item.id for item in reversed(items)]


def test_delete_then_everything_is_not_found(clients, models):
    created = clients.alice.responses.create(model=models.text, input="Say hello")
    deleted = clients.alice.responses.delete(created.id)
    assert deleted is None or getattr(deleted, "deleted", True)  # the SDK returns None
    with pytest.raises(openai.NotFoundError):
        clients.alice.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        clients.alice.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        clients.alice.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        clients.alice.responses.cancel(created.id)
    with pytest.raises(openai.NotFoundError) as chained:
        clients.alice.responses.create(
            model=models.text, input="more", previous_response_id=created.id
        )
    assert chained.value.code == "previous_response_not_found"


@pytest.mark.compliance("L6")
def test_replay_of_a_stored_stream(clients, models):
    with clients.alice.responses.create(model=models.text, input="hi", stream=True) as stream:
        events = [as_dict(event) for event in stream]
    check_stream(events)
    rid = events[0]["response"]["id"]
    with clients.alice.responses.retrieve(rid, stream=True) as replay:
        replayed = [as_dict(event) for event in replay]
    assert clients.wire.last_events() == replayed
    assert replayed == events  # the same events with their original sequence numbers (L6)
    with clients.alice.responses.retrieve(rid, stream=True, starting_after=4) as tail:
        rest = [as_dict(event) for event in tail]
    assert rest == events[5:]
    assert [e["sequence_number"] for e in rest] == list(range(5, len(events)))
    for event in rest:
        check_event(event)
    # The stream helper resumes from a response id, too.
    with clients.alice.responses.stream(response_id=rid) as resumed:
        for _ in resumed:
            pass
        final = resumed.get_final_response()
    assert clients.wire.last_events() == events
    assert final.output_text == TEXT


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_an_in_progress_stream(clients, models, upstream):
    events: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    streaming = threading.Event()
    request_id: list[str] = []

    def consume() -> None:
        try:
            stream = clients.alice.responses.create(model=models.slow, input="go", stream=True)
            request_id.append(stream.response.headers["x-request-id"])
            with stream:
                for event in stream:
                    events.append(as_dict(event))
                    if text_of(events).count("word") >= 3:
                        streaming.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
        finally:
            streaming.set()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    assert streaming.wait(15), "the slow stream never started"
    assert not failures, failures
    rid = events[0]["response"]["id"]

    started = time.monotonic()
    cancelled = clients.alice_again.responses.cancel(rid)  # a second connection, same key
    assert cancelled.status == "cancelled"
    check_response(cancelled.to_dict())
    reader.join(10)
    assert not reader.is_alive(), "the cancelled stream did not end"
    assert not failures, failures
    assert time.monotonic() - started < 2.0
    # The stream just ends: no terminal event for a cancellation (reference §4.4).
    assert clients.wire.last_events() == events
    for event in events:
        check_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    lifecycle = [e["type"] for e in events if "response" in e]
    assert lifecycle == ["response.created", "response.in_progress"]
    # The engine's request was aborted, and what was produced so far is kept.
    record = fake_record(upstream, request_id[0])
    assert upstream.wait_until(lambda _: record.outcome == "aborted", within=1.0), record.outcome
    stored = clients.alice.responses.retrieve(rid)
    check_response(stored.to_dict())
    assert stored.status == "cancelled"
    assert stored.output[0].status == "incomplete"
    partial = stored.output[0].content[0].text
    assert partial.startswith(text_of(events))
    assert SLOW_TEXT.startswith(partial) and len(partial) < len(SLOW_TEXT)
    # Cancelling again is a no-op that reports the same response.
    assert clients.alice.responses.cancel(rid).status == "cancelled"


def test_cancel_of_a_finished_foreground_response_is_refused(clients, models):
    created = clients.alice.responses.create(model=models.text, input="Say hello")
    with pytest.raises(openai.BadRequestError) as refused:
        clients.alice.responses.cancel(created.id)
    assert refused.value.param == "response_id"
    assert clients.alice.responses.retrieve(created.id).status == "completed"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.compliance("M2")
def test_unknown_model(clients, models):
    with pytest.raises(openai.NotFoundError) as missing:
        clients.alice.responses.create(model="no-such-model", input="hi")
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"
    assert missing.value.request_id.startswith("req_")
    # A stream request fails the same way, before any event.
    with pytest.raises(openai.NotFoundError) as streamed:
        clients.alice.responses.create(model="no-such-model", input="hi", stream=True)
    assert streamed.value.code == "model_not_found"


@pytest.mark.compliance("M2")
def test_bad_parameters_name_the_parameter(clients, models):
    with pytest.raises(openai.BadRequestError) as out_of_range:
        clients.alice.responses.create(model=models.text, input="hi", temperature=5)
    assert out_of_range.value.param == "temperature"
    assert out_of_range.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as unknown:
        clients.alice.responses.create(model=models.text, input="hi", extra_body={"bogus": 1})
    assert unknown.value.param == "bogus"
    with pytest.raises(openai.BadRequestError) as bad_item:
        clients.alice.responses.create(
            model=models.text, input=[{"role": "user", "content": "ok"}, {"type": "nonsense"}]
        )
    assert bad_item.value.param.startswith("input[1]")


def test_another_organization_sees_nothing(clients, models):
    created = clients.alice.responses.create(model=models.text, input="Acme's secret")
    charlie = clients.charlie
    with pytest.raises(openai.NotFoundError):
        charlie.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        charlie.responses.retrieve(created.id, stream=True)
    with pytest.raises(openai.NotFoundError):
        charlie.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        charlie.responses.cancel(created.id)
    with pytest.raises(openai.NotFoundError):
        charlie.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as chained:
        charlie.responses.create(
            model=models.text, input="what did they say?", previous_response_id=created.id
        )
    assert chained.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        charlie.responses.input_tokens.count(
            model=models.text, input="hi", previous_response_id=created.id
        )
    # Alice's response is untouched, and what Charlie creates is invisible to Alice.
    assert clients.alice.responses.retrieve(created.id).to_dict() == created.to_dict()
    his = charlie.responses.create(model=models.text, input="Globex's own")
    with pytest.raises(openai.NotFoundError):
        clients.alice.responses.retrieve(his.id)


# --- input tokens ------------------------------------------------------------------------------


def test_input_tokens_are_counted_by_the_engine(clients, models, upstream):
    counted = clients.alice.responses.input_tokens.count(
        model=models.text, input="one two three", instructions="Answer briefly."
    )
    assert counted.object == "response.input_tokens"
    tokenize = [r for r in upstream.requests if r.path == "/tokenize"][-1]
    assert counted.input_tokens == count_prompt_tokens(messages=tokenize.body["messages"])
    assert counted.input_tokens == 7  # <|system|> Answer briefly. <|user|> one two three
    with_tools = clients.alice.responses.input_tokens.count(
        model=models.text, input="one two three", tools=[WEATHER_TOOL]
    )
    assert with_tools.input_tokens > 4
