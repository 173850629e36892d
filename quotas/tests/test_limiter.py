"""The limiter on its own, Redis and in-process alike: exact under concurrency, exact in time
(an injected clock against a reference model and a redis-cell-style table), refunds, failure."""

from __future__ import annotations

import asyncio
import math
import random
import re
import threading
import time

import pytest

from quotas.services.headers import go_duration
from quotas.services.limiter import (
    NEVER,
    Check,
    LimiterUnavailable,
    LocalLimiter,
    RedisLimiter,
    SharedFileLimiter,
)
from testsupport.redis_servers import quota_redis_url

GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?(ms|s))?$")


def requests_check(limit: int, period_ms: float = 60_000, key: str = "{o1}:o1:r") -> Check:
    return Check(key, "requests", limit, period_ms, 1)


def tokens_check(limit: int, cost: int, period_ms: float = 60_000) -> Check:
    return Check("{o1}:o1:t", "tokens", limit, period_ms, cost)


# --- exactness under concurrency (reliability §8 test 6) --------------------------------------


async def test_200_concurrent_clients_against_50_get_exactly_50(make_limiter, clock):
    limiter = make_limiter(clock)
    check = requests_check(50)
    decisions = await asyncio.gather(*(limiter.admit([check], member=f"m{i}") for i in range(200)))
    allowed = sum(d.allowed for d in decisions)
    assert allowed == 50
    assert allowed + sum(not d.allowed for d in decisions) == 200
    refused = [d for d in decisions if not d.allowed]
    assert all(d.outcomes[0].retry_after_ms == 1200 for d in refused)  # 60 s / 50


async def test_exact_under_real_time_too(make_limiter):
    # No fake clock: 1000/min refills one request per 60 ms, so a burst taking well under 60 ms
    # can get at most one extra; what matters is that it is never more than limit + refill.
    limiter = make_limiter()
    check = requests_check(100)
    started = time.monotonic()
    decisions = await asyncio.gather(*(limiter.admit([check], member=str(i)) for i in range(300)))
    elapsed_ms = (time.monotonic() - started) * 1000
    allowed = sum(d.allowed for d in decisions)
    assert 100 <= allowed <= 100 + math.ceil(elapsed_ms / 600) + 1


def test_threads_against_the_local_limiter_get_exactly_the_limit(clock):
    limiter = LocalLimiter(clock=clock)
    check = requests_check(37)
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def client(n: int) -> None:
        barrier.wait()
        for i in range(25):
            results.append(limiter.admit_sync([check], member=f"{n}-{i}").allowed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 400 and sum(results) == 37


async def test_concurrency_slots_are_exact_and_released(make_limiter, clock):
    limiter = make_limiter(clock)
    slot = Check("{o1}:o1:c", "concurrency", 5, 60_000, 1)
    decisions = await asyncio.gather(*(limiter.admit([slot], member=f"r{i}") for i in range(40)))
    admitted = [f"r{i}" for i, d in enumerate(decisions) if d.allowed]
    assert len(admitted) == 5
    await limiter.settle([slot], member=admitted[0])
    assert (await limiter.admit([slot], member="late")).allowed
    assert not (await limiter.admit([slot], member="later")).allowed


async def test_a_dead_process_slot_expires(make_limiter, clock, settings):
    settings.QUOTA_CONCURRENCY_TTL_SECONDS = 10
    limiter = make_limiter(clock)
    slot = Check("{o1}:o1:c", "concurrency", 1, 60_000, 1)
    assert (await limiter.admit([slot], member="crashed")).allowed
    assert not (await limiter.admit([slot], member="next")).allowed
    clock.advance(10_001)
    assert (await limiter.admit([slot], member="next")).allowed


async def test_all_or_nothing_across_scopes(make_limiter, clock):
    limiter = make_limiter(clock)
    org = Check("{o1}:o1:r", "requests", 10, 60_000, 1, "organization org_1")
    key = Check("{o1}:k1:r", "requests", 2, 60_000, 1, "API key sk-1")
    for _ in range(2):
        assert (await limiter.admit([org, key], member="x")).allowed
    refused = await limiter.admit([org, key], member="x")
    assert not refused.allowed
    assert [o.limited for o in refused.outcomes] == [False, True]
    # The organization's counter was not charged for the refused request.
    assert (await limiter.peek([org]))[0].remaining == 8


# --- time: a redis-cell-style table and a reference model (§8 test 7) -------------------------

# limit 5 per 1000 ms, T = 200 ms: (now, cost) -> (limited, remaining, reset_after, retry_after)
TABLE = [
    (0, 1, False, 4, 200, 0),
    (0, 1, False, 3, 400, 0),
    (0, 3, False, 0, 1000, 0),
    (0, 1, True, 0, 1000, 200),
    (100, 1, True, 0, 900, 100),
    (200, 1, False, 0, 1000, 0),
    (700, 2, False, 0, 900, 0),
    (700, 6, True, 0, 900, NEVER),  # more than the limit: never
    (5000, 1, False, 4, 200, 0),
    (5000, 5, True, 4, 200, 200),
    (5200, 5, False, 0, 1000, 0),
]


async def test_the_reference_table(make_limiter, clock):
    start = clock.now
    limiter = make_limiter(clock)
    for now, cost, limited, remaining, reset, retry in TABLE:
        clock.now = start + now
        decision = await limiter.admit([tokens_check(5, cost, period_ms=1000)], member="t")
        outcome = decision.outcomes[0]
        got = (outcome.limited, outcome.remaining, outcome.reset_ms, outcome.retry_after_ms)
        assert got == (limited, remaining, reset, retry), (now, cost)


class ReferenceGcra:
    """An independent textbook GCRA (rwz/redis-gcra) in exact rational arithmetic."""

    def __init__(self, limit: int, period_ms: int) -> None:
        from fractions import Fraction

        self.interval = Fraction(period_ms, limit)
        self.period = period_ms
        self.limit = limit
        self.tat = None

    def admit(self, now: int, cost: int):
        tat = max(self.tat if self.tat is not None else now, now)
        new_tat = tat + cost * self.interval
        allow_at = new_tat - self.period
        if allow_at > now:
            remaining = math.floor((now + self.period - tat) / self.interval)
            retry = NEVER if cost > self.limit else math.ceil(allow_at - now)
            return True, min(remaining, self.limit), math.ceil(tat - now), retry
        self.tat = new_tat
        remaining = math.floor((now + self.period - new_tat) / self.interval)
        return False, min(remaining, self.limit), math.ceil(new_tat - now), 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_sequences_match_the_reference(make_limiter, clock, seed):
    rng = random.Random(seed)
    limit, period = rng.choice([(7, 60_000), (50, 60_000), (3, 1_000), (1000, 60_000)])
    reference = ReferenceGcra(limit, period)
    limiter = make_limiter(clock)
    start = clock.now
    now = 0
    for _ in range(150):
        now += rng.choice([0, 0, 1, 7, 100, 999, 5_000])
        cost = rng.choice([1, 1, 2, limit // 2 + 1, limit + 1])
        clock.now = start + now
        outcome = (await limiter.admit([tokens_check(limit, cost, period)], member="r")).outcomes[0]
        expected = reference.admit(now, cost)
        assert outcome.limited == expected[0], (now, cost)
        assert outcome.remaining == expected[1], (now, cost)
        assert abs(outcome.reset_ms - expected[2]) <= 1, (now, cost)
        assert abs(outcome.retry_after_ms - expected[3]) <= 1 or expected[3] == NEVER


async def test_remaining_never_grows_without_time_passing(make_limiter, clock):
    limiter = make_limiter(clock)
    check = requests_check(20, 10_000)
    seen = []
    for _ in range(30):
        decision = await limiter.admit([check], member="p")
        seen.append(decision.outcomes[0].remaining)
        if not decision.allowed:
            assert decision.outcomes[0].retry_after_ms >= 1
    assert seen == sorted(seen, reverse=True)


# --- tokens: reserve, then settle (§8 test 9) ----------------------------------------------------


async def test_unused_tokens_come_back_at_settlement(make_limiter, clock):
    limiter = make_limiter(clock)
    big = tokens_check(10_000, 9_060)
    assert (await limiter.admit([big], member="first")).allowed
    refused = await limiter.admit([tokens_check(10_000, 2_060)], member="second")
    assert not refused.allowed
    assert refused.outcomes[0].retry_after_ms == math.ceil(1_120 * 6)  # 1120 tokens at 6 ms each
    # The first response used 100 tokens in the end: 8960 come back.
    after = await limiter.settle([tokens_check(10_000, 100 - 9_060)], member="first")
    assert after[0].remaining == 9_900
    assert (await limiter.admit([tokens_check(10_000, 2_060)], member="third")).allowed


async def test_an_overrun_is_charged(make_limiter, clock):
    limiter = make_limiter(clock)
    assert (await limiter.admit([tokens_check(1_000, 100)], member="a")).allowed
    after = await limiter.settle([tokens_check(1_000, 400)], member="a")  # used 500
    assert after[0].remaining == 500


async def test_a_refund_never_banks_more_than_a_full_bucket(make_limiter, clock):
    limiter = make_limiter(clock)
    assert (await limiter.admit([tokens_check(1_000, 900)], member="a")).allowed
    clock.advance(120_000)  # two periods later the reservation has drained away anyway
    after = await limiter.settle([tokens_check(1_000, -900)], member="a")
    assert after[0].remaining == 1_000
    assert not (await limiter.admit([tokens_check(1_000, 1_001)], member="b")).allowed


# --- Redis specifics --------------------------------------------------------------------------


async def test_redis_time_is_used_without_a_clock():
    limiter = RedisLimiter(url=quota_redis_url(), prefix="test:rl")
    check = requests_check(2, 60_000)
    first = await limiter.admit([check], member="a")
    assert first.allowed and first.outcomes[0].reset_ms in range(29_999, 30_002)
    await limiter.aclose()


async def test_the_script_survives_a_script_flush():
    import redis.asyncio as aioredis

    limiter = RedisLimiter(url=quota_redis_url(), prefix="test:rl")
    assert (await limiter.admit([requests_check(5)], member="a")).allowed
    raw = aioredis.Redis.from_url(quota_redis_url())
    await raw.script_flush()
    await raw.aclose()
    assert (await limiter.admit([requests_check(5)], member="b")).outcomes[0].remaining == 3
    await limiter.aclose()


async def test_an_unreachable_redis_fails_fast_and_then_skips(caplog):
    limiter = RedisLimiter(url="redis://127.0.0.1:1/0", prefix="x", retry_seconds=30)
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        await limiter.admit([requests_check(5)], member="a")
    with pytest.raises(LimiterUnavailable):
        await limiter.admit([requests_check(5)], member="b")  # within the retry window: no try
    with pytest.raises(LimiterUnavailable):
        limiter.peek_sync([requests_check(5)])
    assert time.monotonic() - started < 1
    assert sum("failing open" in r.message for r in caplog.records) == 1


# --- header values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (12, "12ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (1234, "1.234s"),
        (59_999, "59.999s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (361_500, "6m1.5s"),
        (3_600_000, "1h0m0s"),
        (3_723_000, "1h2m3s"),
    ],
)
def test_durations_use_go_format(ms, text):
    assert go_duration(ms) == text
    assert GO_DURATION.match(text)


def test_processes_sharing_the_file_share_every_limit_and_slot(tmp_path):
    """The embedded default: the web process admits a background response and the worker
    settles it; each has its own limiter over the same file (issue 10, item 4)."""
    path = tmp_path / "limiter.json"
    web, worker = SharedFileLimiter(path=path), SharedFileLimiter(path=path)
    slot = Check("{o1}:o1:c", "concurrency", 1, 60_000, 1)
    assert web.admit_sync([slot], member="resp_1").allowed
    assert not web.admit_sync([slot], member="resp_2").allowed
    worker.settle_sync([slot], member="resp_1")
    assert web.admit_sync([slot], member="resp_2").allowed

    # And concurrent admissions through several of them get exactly the limit.
    rpm = requests_check(40)
    limiters = [SharedFileLimiter(path=path) for _ in range(4)]
    allowed = []

    def hammer(limiter):
        for n in range(25):
            allowed.append(limiter.admit_sync([rpm], member=f"m{n}").allowed)

    threads = [threading.Thread(target=hammer, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 40
