"""pytest fixtures for engine tests; import the ones you use into a test module or conftest::

    from engines.testing.fixtures import fake_vllm, fake_vllm_factory  # noqa: F401
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
