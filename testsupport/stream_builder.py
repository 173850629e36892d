"""Driving ``StreamBuilder`` by hand: a builder with fixed ids and clock, and a run of deltas
through it, so golden event sequences come out the same every time."""

from __future__ import annotations

import itertools
from collections import defaultdict

from responses.streaming.builder import StreamBuilder
from responses.streaming.objects import ResponseEcho

CREATED_AT = 1767225600


def sequential_ids():
    """Deterministic ids: resp_1, msg_1, msg_2, fc_1, call_1 … (a counter per prefix)."""
    counters: defaultdict[str, itertools.count] = defaultdict(lambda: itertools.count(1))
    return lambda prefix: f"{prefix}_{next(counters[prefix])}"


def make_builder(**kwargs) -> StreamBuilder:
    kwargs.setdefault("echo", ResponseEcho(model="test-model"))
    return StreamBuilder(
        new_id=sequential_ids(), clock=lambda: CREATED_AT + 1, created_at=CREATED_AT, **kwargs
    )


def run(builder: StreamBuilder, deltas, *, queued: bool = False, finish: bool = True) -> list:
    events = builder.start(queued=queued)
    for delta in deltas:
        events += builder.feed(delta)
    if finish:
        events += builder.finish()
    return events


def types(events) -> list[str]:
    return [event["type"] for event in events]
