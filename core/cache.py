"""Django's Redis cache with one connection pool per process.

Django's cache handler is context-local, and under ASGI every request is its own context: each
request built a new ``RedisCache`` and so a new connection pool, opened a TCP connection for its
first cache call and left the socket for the garbage collector (docs/performance.md). The pools
here live for the process, keyed by server URL and options; redis-py's pool already handles
threads and forks (a child process drops its parent's connections).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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
