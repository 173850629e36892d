"""Fixtures for the quota tests: a clean limiter per test, fake clocks, limits on the cast."""

from __future__ import annotations

import pytest

from quotas.services.limiter import LocalLimiter, RedisLimiter, SharedFileLimiter, set_limiter
from quotas.services.limits import limits_cache_clear
from testsupport.fixtures import scripted_engine_fixture, scripted_model_fixture
from testsupport.redis_servers import quota_redis_url


class FakeClock:
    """Milliseconds that move only when told to."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms


@pytest.fixture(autouse=True)
def _fresh_quota_state():
    """Each test starts with the configured limiter (its Redis db is flushed by the root
    conftest's cache.clear()) and no cached limits."""
    limits_cache_clear()
    set_limiter(None)
    yield
    set_limiter(None)
    limits_cache_clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "shared-file", "redis"])
def make_limiter(request):
    """``make(clock=None) -> limiter`` for every implementation."""

    def make(clock=None):
        if request.param == "local":
            return LocalLimiter(clock=clock)
        if request.param == "shared-file":
            path = request.getfixturevalue("tmp_path") / "limiter.json"
            return SharedFileLimiter(path=path, clock=clock)
        return RedisLimiter(url=quota_redis_url(), prefix="test:rl", clock=clock)

    make.kind = request.param
    return make


scripted_model = scripted_model_fixture(context_length=32768, default_max_output_tokens=1000)
engine = scripted_engine_fixture(text="Hello there, friend.")


@pytest.fixture
def frozen_limiter(clock):
    """The Redis limiter (the production path) on a fake clock, installed for the process."""
    from quotas.services.limiter import set_limiter

    limiter = RedisLimiter(url=quota_redis_url(), prefix="test:rl", clock=clock)
    set_limiter(limiter)
    return limiter


@pytest.fixture(params=["redis", "local"])
def any_frozen_limiter(request, clock):
    """Either limiter on a fake clock: the Redis one (production) or the in-process one (the
    embedded default of ``make run``)."""
    from quotas.services.limiter import set_limiter

    if request.param == "redis":
        limiter = RedisLimiter(url=quota_redis_url(), prefix="test:rl", clock=clock)
    else:
        limiter = LocalLimiter(clock=clock)
    set_limiter(limiter)
    return limiter
