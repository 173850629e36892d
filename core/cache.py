"""Django's Redis cache with one connection pool per process.

Django's cache handler is context-local, and under ASGI every request is its own context: each
request built a new ``RedisCache`` and so a new connection pool, opened a TCP connection for its
first cache call and left the socket for the garbage collector (docs/performance.md). The pools
here live for the process, keyed by server URL and options; redis-py's pool already handles
threads and forks (a child process drops its parent's connections).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_pools: dict[tuple, object] = {}
_pools_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    # RedisCacheClient's private attributes, which django-stubs leave out.
    _servers: list[str]
    _pool_class: Any
    _pool_options: dict[str, Any]
    _get_connection_pool_index: Callable[[bool], int]

    def _get_connection_pool(self, write):
        url = self._servers[self._get_connection_pool_index(write)]
        key = (
            url,
            self._pool_class,
            tuple(sorted((k, repr(v)) for k, v in self._pool_options.items())),
        )
        pool = _pools.get(key)
        if pool is None:
            with _pools_lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = self._pool_class.from_url(url, **self._pool_options)
                    _pools[key] = pool
        return pool


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient


# --- the same Redis from async code ------------------------------------------------------------

# One redis.asyncio client per event loop: its connections belong to the loop that opened them
# (tests run many loops; a server runs one per process).
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)


def default_cache_is_redis() -> bool:
    return isinstance(caches["default"], RedisCache)


def redis_key(key: str) -> str:
    """``key`` as the default cache stores it in Redis (its prefix and version added)."""
    return caches["default"].make_and_validate_key(key)


def loop_redis():
    """A ``redis.asyncio`` client of the default cache's Redis for the running loop (the
    default cache must be Redis: :func:`default_cache_is_redis`). Values written through the
    cache API are read back raw: integers as their decimal digits, anything else pickled."""
    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = _loop_clients[loop] = redis.asyncio.Redis.from_url(
            # Django's cache has no public accessor for its server list.
            caches["default"]._servers[0],  # type: ignore[attr-defined]  # noqa: SLF001
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )
    return client


def sync_redis():
    """The default cache's own (process-wide pooled) Redis client, for commands the cache API
    has no method for (PUBLISH)."""
    return caches["default"]._cache.get_client(write=True)  # type: ignore[attr-defined]  # noqa: SLF001
