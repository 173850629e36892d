"""The OpenAPI document (issue 14): served without a key, valid OpenAPI 3.1, rendered at /docs/,
and in step with the validators it describes."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from api.openapi.document import openapi_document
from responses.requests.validation import CREATE_PARAMS, INCLUDABLE, INPUT_TOKENS_PARAMS

API_METHODS = ("get", "post", "delete")


def test_the_document_is_valid_openapi_3_1():
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_create_documents_exactly_the_parameters_the_validator_accepts():
    schemas = openapi_document()["components"]["schemas"]
    assert set(schemas["CreateResponse"]["properties"]) == CREATE_PARAMS
    assert set(schemas["InputTokensRequest"]["properties"]) == INPUT_TOKENS_PARAMS
    include = schemas["CreateResponse"]["properties"]["include"]["items"]["enum"]
    assert set(include) == set(INCLUDABLE)


def _routes_of_the_url_conf() -> set[tuple[str, str]]:
    """Every (method, path) the URL conf serves for the API, from the views' own method lists."""
    from django.urls import get_resolver

    routes: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            text = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, text)
                continue
            if not text.startswith(("v1/", "openai/")):
                continue
            callback = pattern.callback
            actions = getattr(callback, "actions", None)
            if actions is not None:
                # A DRF viewset route: it serves exactly the methods mapped to actions.
                routes.update((method, text) for method in actions if method in API_METHODS)
                continue
            view_class = callback.view_class
            for method in API_METHODS:
                # DRF's APIView lists every verb in http_method_names: it serves those it has.
                if method in view_class.http_method_names and hasattr(view_class, method):
                    routes.add((method, text))

    walk(get_resolver().url_patterns, "")
    return routes


def _normalize(path: str) -> str:
    """``v1/x/(?P<name>…nested (…)…)`` or ``v1/x/<str:name>`` → ``v1/x/{name}``."""
    path = re.sub(r"(?<!\?P)<(?:\w+:)?(\w+)>", r"{\1}", path)
    out, index = "", 0
    while (start := path.find("(?P<", index)) != -1:
        name_end = path.index(">", start)
        depth, cursor = 0, start
        while True:
            depth += {"(": 1, ")": -1}.get(path[cursor], 0)
            if depth == 0:
                break
            cursor += 1
        out += path[index:start] + "{" + path[start + 4 : name_end] + "}"
        index = cursor + 1
    return out + path[index:]


def test_every_api_route_is_documented_and_nothing_else():
    documented = {
        (method, path.lstrip("/"))
        for path, item in openapi_document()["paths"].items()
        for method in API_METHODS
        if method in item and path.startswith(("/v1/", "/openai/"))
    }
    served = {(method, _normalize(path)) for method, path in _routes_of_the_url_conf()}
    assert served == documented


def test_every_operation_lists_the_envelope_for_its_errors():
    for path, item in openapi_document()["paths"].items():
        for method in API_METHODS:
            operation = item.get(method)
            if operation is None or operation.get("security") == []:
                continue
            statuses = set(operation["responses"])
            assert {"400", "401", "404", "429", "500", "503"} <= statuses, (method, path)


@pytest.mark.django_db
def test_the_document_and_the_docs_page_need_no_key(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.json()["paths"].keys() == openapi_document()["paths"].keys()

    page = client.get("/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    for path in ("/v1/responses", "/v1/responses/{response_id}/tool_outputs", "/v1/models"):
        assert path in html
    assert "prompt_cache_key" in html and "X-Rate-Limit-Events" in html


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/responses", "/models", "/responses/resp_abc/cancel"])
def test_a_base_url_without_v1_gets_a_json_hint(client, path):
    answer = client.post(path, data={}, content_type="application/json")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert f"Did you mean /v1{path}?" in error["message"]
    assert "base_url" in error["message"]


@pytest.mark.django_db
def test_any_other_unknown_path_is_a_json_404_without_a_hint(client):
    answer = client.get("/nothing/here")
    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("application/json")
    assert "Did you mean" not in answer.json()["error"]["message"]


def test_the_openapi_command_prints_the_served_document(tmp_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("openapi", stdout=out)
    assert json.loads(out.getvalue()) == json.loads(json.dumps(openapi_document()))
    call_command("openapi", "--output", str(tmp_path / "openapi.json"), stdout=StringIO())
    assert json.loads((tmp_path / "openapi.json").read_text())["openapi"] == "3.1.0"
