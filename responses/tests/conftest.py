from __future__ import annotations

import json

import pytest

from engines.runtime.registry import engine_override
from engines.runtime.scripted import ScriptedEngine, build_script


@pytest.fixture
def scripted_model(transactional_db):
    from engines.models import ServedModel

    return ServedModel.objects.create(
        name="scripted", upstream_model="scripted", context_length=4096, tool_call_parser="hermes"
    )


@pytest.fixture
def engine(scripted_model):
    engine = ScriptedEngine(build_script(text="Hello there, friend."))
    with engine_override(scripted_model.name, engine):
        yield engine


def parse_sse(raw: bytes) -> list[dict]:
    """Events of an SSE body; asserts the framing rules (event == type, no data-less frames)."""
    events = []
    for frame in raw.decode().split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert "data" in fields, frame
        if fields["data"] == "[DONE]":
            continue
        event = json.loads(fields["data"])
        assert fields.get("event") == event["type"], frame
        events.append(event)
    return events
