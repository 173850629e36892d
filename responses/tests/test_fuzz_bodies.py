"""Property: whatever body and headers a client sends to ``POST /v1/responses``,
``…/input_tokens`` and ``…/{id}/tool_outputs``, the answer is never a 5xx, and every error is
OpenAI's envelope (reliability issue, item 2). Hypothesis generates bodies that are mostly the
right shape with hostile values (lone surrogates, huge and non-finite numbers, wrong types,
odd schemas), plus raw byte mutations; the example count is bounded so the file runs in seconds.
"""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testsupport.scripted_engine import build_script
from testsupport.sse import parse_sse, streamed_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("E7")]

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: CI failures reproduce locally
    database=None,
)

# Text that includes what broke things before: lone surrogates, NUL, non-BMP characters.
text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "😀", "", "resp_", "scripted"]
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 16, 2**31, 2**63, 2**64, 1e400, -1e400]),
)
scalars = st.none() | st.booleans() | numbers | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)

schema_keywords = st.sampled_from(
    ["type", "properties", "items", "required", "pattern", "$ref", "$defs", "anyOf", "enum",
     "additionalProperties", "patternProperties", "minimum", "format"]
)  # fmt: skip
schemas = st.recursive(
    st.dictionaries(
        schema_keywords,
        st.sampled_from(["object", "string", "#", "#/$defs/a", "(", "[z-a]", "^a+$"]) | scalars,
        max_size=3,
    ),
    lambda children: st.dictionaries(
        schema_keywords, children | st.lists(children, max_size=2), max_size=3
    ),
    max_leaves=6,
)
content_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "bogus"]) | text},
    optional={"text": text | json_values, "image_url": text},
)
items = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["message", "function_call", "function_call_output", "item_reference", "reasoning"]
        )
        | text,
        "role": st.sampled_from(["user", "assistant", "system", "developer"]) | text,
        "content": text | st.lists(content_parts, max_size=2) | json_values,
        "call_id": text,
        "output": text | json_values,
        "arguments": text,
        "name": text,
        "id": text,
    },
)
tools = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "web_search"]) | text},
    optional={
        "name": st.sampled_from(["f", "g"]) | text,
        "description": text,
        "parameters": schemas | json_values,
        "strict": st.booleans() | json_values,
    },
)
text_param = st.fixed_dictionaries(
    {},
    optional={
        "format": st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema"]) | text},
            optional={
                "name": text | st.just("out"),
                "schema": schemas | json_values,
                "strict": st.booleans(),
            },
        )
        | json_values,
        "verbosity": text,
    },
)
common = {
    "input": text | st.lists(items, max_size=3) | json_values,
    "instructions": text | json_values,
    "previous_response_id": text | json_values,
    "tools": st.lists(tools, max_size=3) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required"])
    | st.fixed_dictionaries({"type": st.just("function"), "name": text})
    | json_values,
    "text": text_param | json_values,
    "reasoning": st.fixed_dictionaries({}, optional={"effort": text, "summary": text})
    | json_values,
    "truncation": st.sampled_from(["auto", "disabled"]) | json_values,
    "parallel_tool_calls": st.booleans() | json_values,
}
create_bodies = st.fixed_dictionaries(
    {"model": st.just("scripted") | text | json_values},
    optional={
        **common,
        "max_output_tokens": numbers | json_values,
        "max_tool_calls": numbers | json_values,
        "temperature": numbers | json_values,
        "top_p": numbers | json_values,
        "top_logprobs": numbers | json_values,
        "metadata": st.dictionaries(text, text | numbers, max_size=3) | json_values,
        "stream": st.booleans(),
        "store": st.booleans() | json_values,
        "include": st.lists(text, max_size=2) | json_values,
        "service_tier": text | json_values,
        "seed": numbers,
        "stop": text | json_values,
        "user": text | json_values,
        "prompt_cache_key": text | json_values,
        "bogus": json_values,
    },
)
input_tokens_bodies = st.fixed_dictionaries(
    {"model": st.just("scripted") | text | json_values}, optional=common
)
tool_outputs_bodies = st.fixed_dictionaries(
    {},
    optional={
        "tool_outputs": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "call_id": st.sampled_from(["call_fuzz"]) | text | json_values,
                    "output": text | json_values,
                    "type": text,
                },
            ),
            max_size=3,
        )
        | json_values,
        "stream": st.booleans() | json_values,
    },
)

header_names = st.sampled_from(
    ["Idempotency-Key", "X-Request-Id", "X-Client-Request-Id", "OpenAI-Beta",
     "X-Stainless-Retry-Count", "OpenAI-Organization", "OpenAI-Project", "Accept"]
)  # fmt: skip
# What HTTP can carry in a header value (latin-1, no CR/LF), with long values too.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40) | (
    st.integers(min_value=200, max_value=2000).map(lambda n: "k" * n)
)
headers = st.dictionaries(header_names, header_values, max_size=3)


def _encode(body, mutation: int | None) -> bytes:
    raw = json.dumps(body).encode()  # lone surrogates stay \udxxx escapes, NaN stays NaN
    if mutation is None:
        return raw
    # Raw damage JSON serialization cannot produce: a huge integer, a cut, a stray byte.
    cut = mutation % (len(raw) + 1)
    return [
        raw[:cut] + b"9" * 4400 + raw[cut:],
        raw[:cut],
        raw[:cut] + b"\xff" + raw[cut:],
        raw.replace(b'"', b"", 1),
    ][mutation % 4]


async def _check_answer(response) -> None:
    assert response.status_code < 500, (response.status_code, _content(response))
    if response.status_code >= 400:
        body = json.loads(await _content_async(response))
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        assert error["param"] is None or isinstance(error["param"], str)
        assert error["code"] is None or isinstance(error["code"], str)
        json.dumps(body).encode("utf-8")  # the envelope itself is encodable text
    elif response.get("Content-Type", "").startswith("text/event-stream"):
        events = parse_sse(await _content_async(response))
        assert events and events[-1]["type"] in (
            "response.completed", "response.incomplete", "response.failed"
        ), events[-1:]  # fmt: skip
    else:
        json.loads(response.content)


def _content(response) -> bytes:
    return b"<stream>" if response.streaming else response.content[:300]


async def _content_async(response) -> bytes:
    if response.streaming:
        return await streamed_body(response)
    return response.content


mutations = st.none() | st.integers(min_value=0, max_value=10_000)


@FUZZ
@given(body=create_bodies, extra=headers, mutation=mutations)
async def test_create_never_answers_5xx(transactional_cast, engine, body, extra, mutation):
    body.pop("background", None)  # a queued response waits for a worker this test has not got
    response = await AsyncClient().post(
        "/v1/responses",
        _encode(body, mutation),
        content_type="application/json",
        headers={**transactional_cast.alice.headers, **extra},
    )
    await _check_answer(response)


@FUZZ
@given(body=input_tokens_bodies, extra=headers, mutation=mutations)
async def test_input_tokens_never_answers_5xx(transactional_cast, engine, body, extra, mutation):
    response = await AsyncClient().post(
        "/v1/responses/input_tokens",
        _encode(body, mutation),
        content_type="application/json",
        headers={**transactional_cast.alice.headers, **extra},
    )
    await _check_answer(response)


@pytest.fixture
def waiting_response(transactional_cast, engine):
    """A stored response waiting for the output of ``call_fuzz``."""
    return {}


@FUZZ
@given(body=tool_outputs_bodies, extra=headers, mutation=mutations)
async def test_tool_outputs_never_answers_5xx(
    transactional_cast, engine, waiting_response, body, extra, mutation
):
    if "id" not in waiting_response:
        engine.script = build_script(tool_calls=[("f", '{"a": 1}', "call_fuzz")])
        created = await AsyncClient().post(
            "/v1/responses",
            json.dumps(
                {"model": "scripted", "input": "hi", "tools": [{"type": "function", "name": "f"}]}
            ),
            content_type="application/json",
            headers=transactional_cast.alice.headers,
        )
        assert created.status_code == 200, created.content
        waiting_response["id"] = created.json()["id"]
        engine.script = build_script(text="Thanks.")
    response = await AsyncClient().post(
        f"/v1/responses/{waiting_response['id']}/tool_outputs",
        _encode(body, mutation),
        content_type="application/json",
        headers={**transactional_cast.alice.headers, **extra},
    )
    await _check_answer(response)
