"""pytest fixtures for tests that need fake vLLM replicas.

Register them once in the root ``conftest.py`` (``pytest_plugins = ["engines.testing.fixtures"]``)
rather than importing them into test modules, where ruff reports the fixture parameters as
redefinitions (F811).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engines.testing.fake_vllm import FakeVllm


@pytest.fixture
def fake_vllm_factory() -> Iterator[Callable[..., FakeVllm]]:
    """``make(**FakeVllm kwargs) -> started FakeVllm``; every one is stopped at teardown."""
    started: list[FakeVllm] = []

    def make(**kwargs: Any) -> FakeVllm:
        server = FakeVllm(**kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def fake_vllm(fake_vllm_factory: Callable[..., FakeVllm]) -> FakeVllm:
    """One started fake vLLM replica (accepts any model name)."""
    return fake_vllm_factory()
