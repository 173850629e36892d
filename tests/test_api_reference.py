"""D1: docs/api-reference.md names every endpoint, create parameter, event type, header and
error code the code has (the OpenAPI document and the validators are the sources)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.openapi.components import COMMON_RESPONSE_HEADERS, REQUEST_HEADER_PARAMETERS
from api.openapi.document import openapi_document
from responses.openapi import STREAM_EVENTS
from responses.requests.validation import CREATE_PARAMS, INCLUDABLE
from testsupport.error_codes import emitted_codes

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "api-reference.md"


@pytest.mark.compliance("D1")
def test_the_reference_names_everything_the_code_has():
    text = REFERENCE.read_text()
    document = openapi_document()
    expected = {
        "endpoint": {
            f"{method.upper()} {path}"
            for path, item in document["paths"].items()
            if not path.startswith("/openai/")
            for method in ("get", "post", "delete")
            if method in item
        },
        "parameter": set(CREATE_PARAMS),
        "include value": set(INCLUDABLE),
        "event": set(STREAM_EVENTS),
        "header": {p["name"] for p in REQUEST_HEADER_PARAMETERS} | set(COMMON_RESPONSE_HEADERS),
        "error code": set(emitted_codes()),
    }
    missing = {
        kind: sorted(name for name in names if f"`{name}`" not in text)
        for kind, names in expected.items()
    }
    assert not any(missing.values()), f"missing from docs/api-reference.md: {missing}"
