"""Fixture factories: one line in a test module or a conftest.py makes a fixture.

pytest finds a fixture by the name it is assigned to, so a test module writes::

    upstream = fake_vllm_fixture(by_model={"up-text": FakeBehavior(text="Hi")})

and its tests take ``upstream`` as usual. The fixtures stay in the modules and conftest files
pytest reads; what they do lives here, written once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import pytest

from testsupport.fake_vllm import FakeBehavior, FakeVllm
from testsupport.scripted_engine import ScriptedEngine, build_script

BehaviorFor = Callable[[dict[str, Any]], FakeBehavior | None]
Scope = Literal["function", "class", "module", "package", "session"]


def fake_vllm_fixture(
    *,
    scope: Scope = "module",
    behavior_for: BehaviorFor | None = None,
    by_model: Mapping[str, FakeBehavior | BehaviorFor] | None = None,
    **options: Any,
):
    """A fixture yielding a started :class:`FakeVllm`, stopped at the end of ``scope``.

    Module scope by default: starting a server per test is slow, and tests that share one tell
    their requests apart by model name. ``options`` go to ``FakeVllm`` (``behavior``, ``model``,
    ``api_key``, ``max_recorded``…). How it answers each chat request, in order:

    * ``behavior_for(body)``, called with the request's JSON body;
    * or ``by_model[body["model"]]``: a ``FakeBehavior``, or a function of the body returning
      one. The mapping is read at each request, so a module may fill it after this line;
    * otherwise (no answer from either) the fake's ``behavior``.
    """
    if behavior_for is not None and by_model is not None:
        raise TypeError("give behavior_for or by_model, not both")
    if by_model is not None:
        behavior_for = _by_model(by_model)

    def upstream() -> Iterator[FakeVllm]:
        fake = FakeVllm(**options)
        fake.behavior_for = behavior_for
        with fake:
            yield fake

    return pytest.fixture(scope=scope)(upstream)


def _by_model(behaviors: Mapping[str, FakeBehavior | BehaviorFor]) -> BehaviorFor:
    def behavior_for(body: dict[str, Any]) -> FakeBehavior | None:
        found = behaviors.get(body.get("model", ""))
        return found(body) if callable(found) else found

    return behavior_for


@contextlib.contextmanager
def fake_vllm_servers() -> Iterator[Callable[..., FakeVllm]]:
    """``make(**FakeVllm options) -> started FakeVllm``; every one made is stopped on exit."""
    started: list[FakeVllm] = []

    def make(**options: Any) -> FakeVllm:
        server = FakeVllm(**options)
        server.start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


def scripted_model_fixture(**fields: Any):
    """A fixture creating the ``scripted`` ServedModel (committed: ``transactional_db``);
    ``fields`` set its columns (context length, default output tokens, tool-call parser…)."""

    def scripted_model(transactional_db):
        from engines.models import ServedModel

        return ServedModel.objects.create(name="scripted", upstream_model="scripted", **fields)

    return pytest.fixture(scripted_model)


def scripted_engine_fixture(text: str = "Hello there, friend."):
    """A fixture serving the ``scripted_model`` fixture's model with a :class:`ScriptedEngine`
    that answers ``text``, for the duration of one test."""

    def engine(scripted_model) -> Iterator[ScriptedEngine]:
        from engines.runtime.registry import engine_override

        scripted = ScriptedEngine(build_script(text=text))
        with engine_override(scripted_model.name, scripted):
            yield scripted

    return pytest.fixture(engine)
