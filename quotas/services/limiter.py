"""The rate limiter: one atomic decision over every limit that applies to a request.

Algorithm (reliability.md §2): **GCRA** for requests and tokens per window, as in redis-gcra's
``perform_gcra_ratelimit.lua``. Each limit keeps one number, the *theoretical arrival time*
(TAT). With ``limit`` units per ``period`` the emission interval is ``T = period / limit``; a
cost of ``n`` moves the TAT by ``n·T``; a request is allowed when the new TAT is at most
``period`` ahead of now. So a full bucket admits exactly ``limit`` units at once, then refills
continuously (no window edges, no background drip). From the TAT follow the header values:
``remaining = ⌊(now + period − TAT) / T⌋``, ``reset = TAT − now`` (time until the limit is back
to its initial state) and, when refused, ``retry_after = TAT + n·T − period − now``.

Token limits reserve at admission and **settle** later: the unused part is given back by
moving the TAT back (never before now), and an overrun is charged by moving it forward. GCRA is
linear, so the result is exactly the state the actual usage alone would have produced. A
reservation that is never settled (a killed process) simply drains away within one period.

Concurrency is a sorted set of in-flight reservation ids scored by their expiry: admission drops
expired members, counts, and adds; settlement removes. The expiry
(``QUOTA_CONCURRENCY_TTL_SECONDS``) is the safety net for processes that die mid-response.

Every decision is all-or-nothing over all checks (organization, project and key; requests,
tokens, concurrency): nothing is written unless everything passes. In Redis that is one Lua
script (one round trip, atomic, so N concurrent clients against a limit L get exactly L
admissions); the keys of one organization share a hash tag, so they live in one cluster slot.
:class:`LocalLimiter` is the same algorithm under a lock in one process's memory, and
:class:`SharedFileLimiter` the same again with its state in a file every process of one host
shares: the embedded default (no Redis; web processes and the Celery worker on one machine).

The clock is injectable (``clock`` returns milliseconds) for tests. Without it the Redis limiter
uses Redis's own ``TIME``, so clock skew between web processes cannot matter.

Failure policy: any Redis error raises :class:`LimiterUnavailable` (fast: short socket timeouts
and, after a failure, no new attempt for ``QUOTA_REDIS_RETRY_SECONDS``). The admission service
decides what that means (fail open, see ``quotas.services.admission``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from django.conf import settings

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

logger = logging.getLogger(__name__)

Kind = Literal["requests", "tokens", "concurrency"]
Mode = Literal["admit", "settle", "peek"]

# A refusal needs the new TAT to be later than now + period by more than this (ms): float sums
# of T = period/limit must not refuse the limit-th request of a burst over a rounding error.
EPSILON_MS = 0.001
NEVER = -1
"""``retry_after_ms`` of a request that cannot pass even against a full bucket (cost > limit)."""


class LimiterUnavailable(Exception):
    """The limiter's store cannot be reached; the caller applies the failure policy."""


@dataclass(frozen=True)
class Check:
    """One limit applied to one request.

    ``key`` identifies the counter (without the limiter's prefix); ``cost`` is what admission
    takes (1 request, the reserved tokens, 1 in-flight slot) or, when settling a token check,
    the correction (actual − reserved, negative = refund). ``scope`` is for messages only.
    """

    key: str
    kind: Kind
    limit: int
    period_ms: float
    cost: int = 0
    scope: str = "organization"


@dataclass(frozen=True)
class Outcome:
    check: Check
    limited: bool
    remaining: int
    reset_ms: int
    """Until the limit is back to its initial state (OpenAI's ``x-ratelimit-reset-*``)."""
    retry_after_ms: int
    """Until this request would pass (0 when it passed; NEVER when it never can)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    outcomes: tuple[Outcome, ...]
    degraded: bool = False
    """The limiter was unavailable and the request was let through by policy."""


class Limiter(Protocol):
    async def admit(self, checks: Sequence[Check], *, member: str) -> Decision: ...

    async def settle(self, checks: Sequence[Check], *, member: str) -> tuple[Outcome, ...]: ...

    async def peek(self, checks: Sequence[Check]) -> tuple[Outcome, ...]: ...

    def peek_sync(self, checks: Sequence[Check]) -> tuple[Outcome, ...]: ...


def _concurrency_ttl_ms() -> float:
    return float(settings.QUOTA_CONCURRENCY_TTL_SECONDS) * 1000


# --- the in-process limiter ------------------------------------------------------------------


class LocalLimiter:
    """The algorithm of the module docstring in this process's memory, under one lock.

    Thread-safe and asyncio-safe (the critical section never awaits). Limits are per process:
    right for the embedded default, where one daphne process serves the API.
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or (lambda: time.monotonic() * 1000)
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._inflight: dict[str, dict[str, float]] = {}

    def reset(self) -> None:
        with self._critical():
            self._tat.clear()
            self._inflight.clear()

    @contextlib.contextmanager
    def _critical(self, *, writes: bool = True):
        """Where the state is read and (unless ``writes`` is false) written; a subclass may keep
        it elsewhere."""
        with self._lock:
            yield

    async def admit(self, checks: Sequence[Check], *, member: str) -> Decision:
        return self.admit_sync(checks, member=member)

    async def settle(self, checks: Sequence[Check], *, member: str) -> tuple[Outcome, ...]:
        return self.settle_sync(checks, member=member)

    async def peek(self, checks: Sequence[Check]) -> tuple[Outcome, ...]:
        return self.peek_sync(checks)

    def admit_sync(self, checks: Sequence[Check], *, member: str) -> Decision:
        with self._critical():
            now = self._clock()
            outcomes = []
            writes: list[Callable[[], None]] = []
            for check in checks:
                if check.kind == "concurrency":
                    members = self._live_members(check.key, now)
                    limited = len(members) + check.cost > check.limit
                    if limited:
                        outcomes.append(
                            Outcome(check, True, max(check.limit - len(members), 0), 0, 1000)
                        )
                    else:
                        outcomes.append(
                            Outcome(check, False, check.limit - len(members) - check.cost, 0, 0)
                        )
                        expiry = now + _concurrency_ttl_ms()
                        writes.append(functools.partial(members.__setitem__, member, expiry))
                    continue
                tat = max(self._tat.get(check.key, now), now)
                interval = check.period_ms / check.limit
                new_tat = tat + check.cost * interval
                allow_at = new_tat - check.period_ms
                if allow_at - now > EPSILON_MS:
                    retry = NEVER if check.cost > check.limit else math.ceil(allow_at - now)
                    outcomes.append(
                        Outcome(check, True, _remaining(now, tat, check), _ms(tat - now), retry)
                    )
                else:
                    outcomes.append(
                        Outcome(
                            check, False, _remaining(now, new_tat, check), _ms(new_tat - now), 0
                        )
                    )
                    writes.append(functools.partial(self._tat.__setitem__, check.key, new_tat))
            allowed = not any(outcome.limited for outcome in outcomes)
            if allowed:
                for write in writes:
                    write()
            return Decision(allowed=allowed, outcomes=tuple(outcomes))

    def settle_sync(self, checks: Sequence[Check], *, member: str) -> tuple[Outcome, ...]:
        with self._critical():
            now = self._clock()
            for check in checks:
                if check.kind == "concurrency":
                    self._live_members(check.key, now).pop(member, None)
                elif check.cost:
                    tat = self._tat.get(check.key)
                    step = check.cost * check.period_ms / check.limit
                    if check.cost < 0:
                        if tat is not None:
                            self._tat[check.key] = max(tat + step, now)
                    else:
                        self._tat[check.key] = max(tat if tat is not None else now, now) + step
            return self._state(checks, now)

    def peek_sync(self, checks: Sequence[Check]) -> tuple[Outcome, ...]:
        with self._critical(writes=False):
            return self._state(checks, self._clock())

    def _live_members(self, key: str, now: float) -> dict[str, float]:
        members = self._inflight.setdefault(key, {})
        for name in [name for name, expiry in members.items() if expiry <= now]:
            del members[name]
        return members

    def _state(self, checks: Sequence[Check], now: float) -> tuple[Outcome, ...]:
        outcomes = []
        for check in checks:
            if check.kind == "concurrency":
                count = len(self._live_members(check.key, now))
                outcomes.append(Outcome(check, False, max(check.limit - count, 0), 0, 0))
                continue
            tat = max(self._tat.get(check.key, now), now)
            outcomes.append(Outcome(check, False, _remaining(now, tat, check), _ms(tat - now), 0))
        return tuple(outcomes)


class SharedFileLimiter(LocalLimiter):
    """The in-process algorithm with its state in one file that every process of the embedded
    default shares (under an exclusive ``flock`` for each decision).

    Why: a background response is admitted by the web process and settled by the Celery
    worker, and ``make run`` may run several web processes. With per-process state the worker's
    settlement never freed the web process's concurrency slot (the organization stayed at 429
    until the slot's expiry), and each web process would have enforced its own copy of every
    limit. A decision is a lock, a read and a write of a small JSON file: tens of microseconds,
    fine for a single host without Redis. The clock is the wall clock, shared by the processes.
    """

    def __init__(self, *, path: Path, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock=clock or (lambda: time.time() * 1000))
        self._path = path

    @contextlib.contextmanager
    def _critical(self, *, writes: bool = True):
        # A peek (the headers of every answer) only reads: no rewrite of the file for it.
        with self._lock, open(self._path, "a+", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file is closed
            file.seek(0)
            raw = file.read()
            try:
                state = json.loads(raw) if raw else {}
            except ValueError:
                logger.warning("limiter state %s unreadable; starting afresh", self._path)
                state = {}
            self._tat = state.get("tat", {})
            self._inflight = state.get("inflight", {})
            yield
            if not writes:
                return
            now = self._clock()
            state = {
                # A counter at rest (its TAT in the past) is the same as no counter.
                "tat": {key: tat for key, tat in self._tat.items() if tat > now},
                "inflight": {
                    key: live
                    for key, members in self._inflight.items()
                    if (live := {m: expiry for m, expiry in members.items() if expiry > now})
                },
            }
            file.seek(0)
            file.truncate()
            file.write(json.dumps(state))


def _remaining(now: float, tat: float, check: Check) -> int:
    interval = check.period_ms / check.limit
    value = math.floor((now + check.period_ms - tat) / interval + 1e-6)
    return max(min(value, check.limit), 0)


def _ms(value: float) -> int:
    return max(math.ceil(value - 1e-9), 0)


# --- the Redis limiter -----------------------------------------------------------------------

# ARGV: mode, now_ms ("" = Redis TIME), member, concurrency ttl (ms), least key ttl (ms), then
# per key: kind ("g" GCRA or "c" concurrency), limit, period_ms, cost. Returns {allowed, then per key: limited,
# remaining, reset_ms, retry_after_ms}. TATs are written with %.6f: Lua's default number format
# keeps 14 digits, which at today's epoch in ms would round every TAT to 0.1 ms.
_SCRIPT = """
local mode = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local member = ARGV[3]
local ttl = tonumber(ARGV[4])
local min_ttl = tonumber(ARGV[5])
local eps = 0.001
local out = {1}
local writes = {}

local function key_ttl(x)
  return math.max(math.ceil(x) + 1, min_ttl)
end

local function ceil_ms(x)
  if x <= 0 then return 0 end
  return math.ceil(x - 1e-9)
end

local function remaining(tat, limit, period)
  local r = math.floor((now + period - tat) / (period / limit) + 1e-6)
  if r > limit then r = limit end
  if r < 0 then r = 0 end
  return r
end

for i, key in ipairs(KEYS) do
  local base = 5 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local cost = tonumber(ARGV[base + 4])
  local limited, rem, reset, retry = 0, 0, 0, 0
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if mode == 'settle' then
      redis.call('ZREM', key, member)
    end
    local n = redis.call('ZCARD', key)
    if mode == 'admit' then
      if n + cost > limit then
        limited, rem, retry = 1, math.max(limit - n, 0), 1000
        out[1] = 0
      else
        rem = limit - n - cost
        table.insert(writes, {'c', key, now + ttl})
      end
    else
      rem = math.max(limit - n, 0)
    end
  else
    local interval = period / limit
    local stored = tonumber(redis.call('GET', key))
    local tat = stored or now
    if tat < now then tat = now end
    if mode == 'admit' then
      local new_tat = tat + cost * interval
      local allow_at = new_tat - period
      if allow_at - now > eps then
        limited, rem, reset = 1, remaining(tat, limit, period), ceil_ms(tat - now)
        if cost > limit then retry = -1 else retry = ceil_ms(allow_at - now) end
        out[1] = 0
      else
        rem, reset = remaining(new_tat, limit, period), ceil_ms(new_tat - now)
        table.insert(writes, {'g', key, new_tat})
      end
    else
      if mode == 'settle' and cost ~= 0 then
        if cost < 0 then
          if stored then
            tat = stored + cost * interval
            if tat < now then tat = now end
          end
        else
          tat = tat + cost * interval
        end
        if tat > now then
          redis.call('SET', key, string.format('%.6f', tat), 'PX', key_ttl(tat - now))
        else
          redis.call('DEL', key)
        end
      end
      rem, reset = remaining(tat, limit, period), ceil_ms(tat - now)
    end
  end
  table.insert(out, limited)
  table.insert(out, rem)
  table.insert(out, reset)
  table.insert(out, retry)
end

if mode == 'admit' and out[1] == 1 then
  for _, w in ipairs(writes) do
    if w[1] == 'g' then
      redis.call('SET', w[2], string.format('%.6f', w[3]), 'PX', key_ttl(w[3] - now))
    else
      redis.call('ZADD', w[2], string.format('%.6f', w[3]), member)
      redis.call('PEXPIRE', w[2], key_ttl(ttl))
    end
  end
end
return out
"""


_POOL_SIZE = 64
_POOL_WAIT_SECONDS = 2.0


class RedisLimiter:
    """The limiter in Redis: one EVALSHA per decision, settlement or peek.

    Async calls use ``redis.asyncio`` (one client per event loop: its connections belong to
    the loop that opened them); ``peek_sync`` uses a blocking client, for sync (DRF/WSGI) paths.
    """

    def __init__(
        self,
        *,
        url: str,
        prefix: str = "rl",
        clock: Callable[[], float] | None = None,
        timeout: float | None = None,
        retry_seconds: float | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._clock = clock
        self._timeout = settings.QUOTA_REDIS_TIMEOUT_SECONDS if timeout is None else timeout
        self._retry_seconds = (
            settings.QUOTA_REDIS_RETRY_SECONDS if retry_seconds is None else retry_seconds
        )
        self._down_until = 0.0
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._sync_client: redis.Redis | None = None
        self._sync_script: Script | None = None
        self._lock = threading.Lock()

    def _client_kwargs(self) -> dict:
        return {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
        }

    def _async_script(self):
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        loop = asyncio.get_running_loop()
        pair = self._async.get(loop)
        if pair is None:
            # A blocking pool: a burst larger than the pool waits for a connection (briefly)
            # instead of failing, which would fail open exactly when limiting matters most.
            # One retry without backoff: a pooled connection that died with a Redis restart is
            # replaced at once instead of failing the request that found it.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=_POOL_SIZE,
                timeout=_POOL_WAIT_SECONDS,
                retry=Retry(NoBackoff(), 1),
                **self._client_kwargs(),
            )
            client = aioredis.Redis(connection_pool=pool)
            pair = (client, client.register_script(_SCRIPT))
            self._async[loop] = pair
        return pair[1]

    def _blocking_script(self):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        with self._lock:
            if self._sync_script is None:
                pool = redis.BlockingConnectionPool.from_url(
                    self.url,
                    max_connections=_POOL_SIZE,
                    timeout=_POOL_WAIT_SECONDS,
                    retry=Retry(NoBackoff(), 1),
                    **self._client_kwargs(),
                )
                self._sync_client = redis.Redis(connection_pool=pool)
                self._sync_script = self._sync_client.register_script(_SCRIPT)
            return self._sync_script

    def _args(self, mode: Mode, checks: Sequence[Check], member: str) -> tuple[list, list]:
        keys = [f"{self.prefix}:{check.key}" for check in checks]
        now = "" if self._clock is None else repr(float(self._clock()))
        # With an injected clock, Redis's own expiry (real time) must not drop state that the
        # fake clock still needs: keys then live at least ten minutes.
        min_ttl = 0 if self._clock is None else 600_000
        args: list = [mode, now, member, repr(_concurrency_ttl_ms()), min_ttl]
        for check in checks:
            args += [
                "c" if check.kind == "concurrency" else "g",
                max(int(check.limit), 1),
                repr(float(check.period_ms)),
                int(check.cost),
            ]
        return keys, args

    def _guard(self) -> None:
        if time.monotonic() < self._down_until:
            raise LimiterUnavailable("the limiter's Redis failed recently; not retrying yet")

    def _failed(self, error: Exception) -> LimiterUnavailable:
        # Log once per outage window, not once per request: a dead Redis under load would
        # otherwise flood the log with identical tracebacks.
        if time.monotonic() >= self._down_until:
            logger.error("rate limiter Redis unavailable (%s): failing open", error)
        self._down_until = time.monotonic() + self._retry_seconds
        return LimiterUnavailable(str(error))

    async def _run(self, mode: Mode, checks: Sequence[Check], member: str) -> list[int]:
        import redis

        self._guard()
        keys, args = self._args(mode, checks, member)
        try:
            return await self._async_script()(keys=keys, args=args)
        except (redis.RedisError, OSError) as error:
            raise self._failed(error) from error

    async def admit(self, checks: Sequence[Check], *, member: str) -> Decision:
        if not checks:
            return Decision(allowed=True, outcomes=())
        raw = await self._run("admit", checks, member)
        return Decision(allowed=raw[0] == 1, outcomes=_outcomes(checks, raw[1:]))

    async def settle(self, checks: Sequence[Check], *, member: str) -> tuple[Outcome, ...]:
        if not checks:
            return ()
        return _outcomes(checks, (await self._run("settle", checks, member))[1:])

    async def peek(self, checks: Sequence[Check]) -> tuple[Outcome, ...]:
        if not checks:
            return ()
        return _outcomes(checks, (await self._run("peek", checks, ""))[1:])

    def peek_sync(self, checks: Sequence[Check]) -> tuple[Outcome, ...]:
        import redis

        if not checks:
            return ()
        self._guard()
        keys, args = self._args("peek", checks, "")
        try:
            raw = self._blocking_script()(keys=keys, args=args)
        except (redis.RedisError, OSError) as error:
            raise self._failed(error) from error
        return _outcomes(checks, raw[1:])

    async def aclose(self) -> None:
        pair = self._async.pop(asyncio.get_running_loop(), None)
        if pair is not None:
            await pair[0].aclose()


def _outcomes(checks: Sequence[Check], flat: Sequence[int]) -> tuple[Outcome, ...]:
    return tuple(
        Outcome(
            check,
            limited=bool(flat[4 * i]),
            remaining=int(flat[4 * i + 1]),
            reset_ms=int(flat[4 * i + 2]),
            retry_after_ms=int(flat[4 * i + 3]),
        )
        for i, check in enumerate(checks)
    )


# --- which limiter -----------------------------------------------------------------------------

_limiter: Limiter | None = None
_limiter_lock = threading.Lock()


def get_limiter() -> Limiter:
    """The process's limiter: Redis when ``QUOTA_REDIS_URL`` (default ``REDIS_URL``) is set, else
    the one whose state every process on this host shares through a file in the data
    directory."""
    global _limiter
    if _limiter is None:
        with _limiter_lock:
            if _limiter is None:
                url = settings.QUOTA_REDIS_URL
                _limiter = (
                    RedisLimiter(url=url, prefix=f"{settings.QUOTA_KEY_PREFIX}:rl")
                    if url
                    else SharedFileLimiter(path=Path(settings.DATA_DIR) / "limiter.json")
                )
    return _limiter


def set_limiter(limiter: Limiter | None) -> Limiter | None:
    """Replace the process's limiter (tests); ``None`` goes back to the configured one.
    Returns the previous one."""
    global _limiter
    with _limiter_lock:
        previous, _limiter = _limiter, limiter
    return previous
