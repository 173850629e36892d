"""No client input gives a 5xx (reliability issue, item 2): each body below used to answer 500
or 502; now it is a 400 in OpenAI's envelope naming the parameter, and nothing is stored or
billed."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from engines.runtime.types import EngineUnavailable
from quotas.models import UsageRecord
from responses.models import StoredResponse
from testsupport.sse import streamed_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.compliance("E7")]

LONE = "\\ud800"  # a lone surrogate, as JSON escapes it: valid JSON, not encodable text


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def post_raw(client, persona, path: str, raw: str):
    return await client.post(
        path, raw.encode(), content_type="application/json", headers=persona.headers
    )


def assert_envelope(response, *, status: int = 400, param: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error
    return error


async def assert_nothing_kept() -> None:
    assert await StoredResponse.objects.acount() == 0
    assert await UsageRecord.objects.acount() == 0


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (f'{{"model": "scripted", "input": "a{LONE}b"}}', "input"),
        (f'{{"model": "scripted", "input": "hi", "instructions": "{LONE}"}}', "instructions"),
        (f'{{"model": "{LONE}", "input": "hi"}}', "model"),
        (
            f'{{"model": "scripted", "input": "hi", "previous_response_id": "resp_{LONE}"}}',
            "previous_response_id",
        ),
        (
            '{"model": "scripted", "input": "hi", "tools": [{"type": "function", "name": "f", '
            f'"description": "{LONE}"}}]}}',
            "tools[0].description",
        ),
        (
            '{"model": "scripted", "input": [{"role": "user", "content": '
            f'[{{"type": "input_text", "text": "{LONE}"}}]}}]}}',
            "input[0].content[0].text",
        ),
        (f'{{"model": "scripted", "input": "hi", "metadata": {{"{LONE}": "x"}}}}', "metadata"),
    ],
)
async def test_lone_surrogates_are_a_400_naming_the_param(
    client, transactional_cast, engine, raw, param
):
    response = await post_raw(client, transactional_cast.alice, "/v1/responses", raw)
    assert_envelope(response, param=param)
    await assert_nothing_kept()


async def test_lone_surrogate_in_input_tokens(client, transactional_cast, engine):
    raw = f'{{"model": "scripted", "input": "{LONE}"}}'
    response = await post_raw(client, transactional_cast.alice, "/v1/responses/input_tokens", raw)
    assert_envelope(response, param="input")


@pytest.mark.parametrize(
    ("fragment", "param"),
    [
        ('"max_output_tokens": 9223372036854775808', "max_output_tokens"),
        ('"max_output_tokens": 18446744073709551616', "max_output_tokens"),
        ('"temperature": 1e400', "temperature"),
        ('"top_p": -1e400', "top_p"),
        ('"max_output_tokens": ' + "9" * 5000, "max_output_tokens"),
        ('"metadata": {"n": ' + "1" * 5000 + "}", "metadata.n"),
        ('"max_tool_calls": 18446744073709551616', "max_tool_calls"),
    ],
)
async def test_numbers_out_of_range_are_a_400(client, transactional_cast, engine, fragment, param):
    raw = '{"model": "scripted", "input": "hi", ' + fragment + "}"
    response = await post_raw(client, transactional_cast.alice, "/v1/responses", raw)
    assert_envelope(response, param=param)
    await assert_nothing_kept()


async def test_a_huge_integer_anywhere_is_a_400(client, transactional_cast, engine):
    raw = "[" + "7" * 4400 + "]"
    response = await post_raw(client, transactional_cast.alice, "/v1/responses", raw)
    assert_envelope(response)


def _schema_body(schema) -> dict:
    return {
        "model": "scripted",
        "input": "hi",
        "text": {
            "format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}
        },
    }


def _tool_body(parameters, *, strict: bool) -> dict:
    return {
        "model": "scripted",
        "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": parameters, "strict": strict}],
    }


BAD_SCHEMAS = [
    pytest.param({"type": "object", "properties": []}, id="properties-not-an-object"),
    pytest.param({"type": "strin"}, id="unknown-type"),
    pytest.param(
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}},
        id="bad-regex",
    ),
    pytest.param(
        {"type": "object", "patternProperties": {"[z-a]": {"type": "string"}}},
        id="bad-pattern-properties-regex",
    ),
    pytest.param({"$ref": "#"}, id="ref-to-itself"),
    pytest.param(
        {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
        id="ref-loop",
    ),
    pytest.param({"$ref": "#/$defs/missing"}, id="ref-to-nothing"),
    pytest.param({"$ref": "https://example.com/schema.json"}, id="remote-ref"),
]


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
async def test_invalid_json_schema_format_is_a_400_before_admission(
    client, transactional_cast, engine, schema
):
    response = await client.post(
        "/v1/responses",
        json.dumps(_schema_body(schema)),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    error = assert_envelope(response)
    assert error["param"].startswith("text.format.schema")
    assert error["code"] == "invalid_json_schema"
    assert engine.started == 0
    await assert_nothing_kept()


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("schema", BAD_SCHEMAS)
async def test_invalid_tool_schema_is_a_400_before_admission(
    client, transactional_cast, engine, schema, strict
):
    response = await client.post(
        "/v1/responses",
        json.dumps(_tool_body(schema, strict=strict)),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    error = assert_envelope(response)
    assert error["param"].startswith("tools[0].parameters")
    assert error["code"] == "invalid_function_parameters"
    assert engine.started == 0
    await assert_nothing_kept()


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "^[a-z]+$"}}},
        # Recursion through structure is fine (OpenAI's strict mode supports it).
        {
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
        },
        {"$ref": "#/$defs/node", "$defs": {"node": {"type": "object"}}},
    ],
)
async def test_valid_schemas_still_run(client, transactional_cast, engine, schema):
    response = await client.post(
        "/v1/responses",
        json.dumps(_schema_body(schema)),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert response.status_code == 200, response.content


async def test_tool_count_has_openais_limit(client, transactional_cast, engine):
    tools = [{"type": "function", "name": f"f{i}"} for i in range(129)]
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "tools": tools}),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    error = assert_envelope(response, param="tools")
    assert error["code"] == "array_above_max_length"
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "tools": tools[:128]}),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert response.status_code == 200


async def test_max_output_tokens_over_the_context_names_the_param(
    client, transactional_cast, engine
):
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "max_output_tokens": 100_000}),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    error = assert_envelope(response, param="max_output_tokens")
    assert "max_completion_tokens" not in error["message"]
    assert "max_model_len" not in error["message"]
    assert "4096" in error["message"]
    await assert_nothing_kept()


async def test_top_p_zero_is_accepted_like_openai(client, transactional_cast, engine):
    response = await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "top_p": 0}),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert response.status_code == 200
    assert response.json()["top_p"] == 0
    # vLLM refuses top_p = 0; the engine gets the greedy equivalent.
    assert 0 < engine.last_request.top_p < 1e-6


async def test_an_unreachable_replica_does_not_reveal_its_url(client, transactional_cast, engine):
    engine.fail_after = 0
    engine.error = EngineUnavailable("Engine replica unreachable: http://10.1.2.3:8100/v1")
    for stream in (False, True):
        response = await client.post(
            "/v1/responses",
            json.dumps({"model": "scripted", "input": "hi", "stream": stream}),
            content_type="application/json",
            headers=transactional_cast.alice.headers,
        )
        raw = await streamed_body(response) if stream else response.content
        assert b"10.1.2.3" not in raw
        assert b"http://" not in raw
    stored = [r.body async for r in StoredResponse.objects.all()]
    assert stored and all("10.1.2.3" not in json.dumps(body) for body in stored)


async def test_lone_surrogate_in_a_tool_output(client, transactional_cast, engine):
    from testsupport.scripted_engine import build_script

    engine.script = build_script(tool_calls=[("f", "{}", "call_s")])
    created = await client.post(
        "/v1/responses",
        json.dumps(
            {"model": "scripted", "input": "hi", "tools": [{"type": "function", "name": "f"}]}
        ),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    rid = created.json()["id"]
    raw = f'{{"tool_outputs": [{{"call_id": "call_s", "output": "x{LONE}"}}]}}'
    response = await post_raw(
        client, transactional_cast.alice, f"/v1/responses/{rid}/tool_outputs", raw
    )
    assert_envelope(response, param="tool_outputs[0].output")
    # Nothing was recorded: the same call can still be answered properly.
    ok = await client.post(
        f"/v1/responses/{rid}/tool_outputs",
        json.dumps({"tool_outputs": [{"call_id": "call_s", "output": "fine"}]}),
        content_type="application/json",
        headers=transactional_cast.alice.headers,
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("error", "param", "leaked"),
    [
        (
            "ContextLengthExceeded",
            "max_output_tokens",
            "'max_completion_tokens' is too large: 4000. This model's maximum context length is "
            "4096 tokens and your request has 200 input tokens (4000 > 4096 - 200). "
            "(parameter=max_completion_tokens, max_model_len=4096)",
        ),
        ("ContextLengthExceeded", "input", "This model's maximum context length is 4096 tokens."),
        ("EngineTimeout", None, "Engine replica timed out: http://10.0.0.9:8000/v1"),
        ("EngineProtocolError", None, "Engine stream was cut off after 3 chunks: http://10.0.0.9"),
    ],
)
def test_engine_errors_are_shown_in_our_words(error, param, leaked):
    from engines.runtime import types
    from responses.services.generation import engine_error_for_client

    shown = engine_error_for_client(getattr(types, error)(leaked), max_output_tokens=4000)
    assert shown.param == param
    for word in ("max_completion_tokens", "max_model_len", "10.0.0.9", "http://"):
        assert word not in shown.message


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/responses/input_tokens"])
async def test_a_nul_character_in_the_model_name_is_a_404_not_a_500(
    client, transactional_cast, engine, path
):
    # Found by the schema fuzzing: PostgreSQL text cannot hold NUL, so the model lookup
    # itself failed with a 500.
    response = await post_raw(
        client, transactional_cast.alice, path, '{"model": "a\\u0000b", "input": "hi"}'
    )
    error = assert_envelope(response, status=404, param="model")
    assert error["code"] == "model_not_found"
    await assert_nothing_kept()


async def test_a_nul_character_in_an_azure_deployment_name_is_a_404(
    client, transactional_cast, engine
):
    response = await post_raw(
        client,
        transactional_cast.alice,
        "/openai/deployments/a%00b/responses?api-version=2025-04-01-preview",
        '{"model": "scripted", "input": "hi"}',
    )
    assert response.status_code == 404, response.content[:500]
    assert response.json()["error"]["code"] == "DeploymentNotFound"
