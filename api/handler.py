"""Django's ASGI handler, with the request's thread reused instead of started afresh.

Django runs every ASGI request inside a ``ThreadSensitiveContext``: the first thread-sensitive
``sync_to_async`` call of the request (at the latest the ``request_started`` signal's receivers)
starts a thread of its own, and when the request ends another thread is started to join it.
``Thread.start`` waits until the new thread runs, on the event loop, and under load (the GIL
shared with the database threads) that wait was 17 % of the loop's time at 32 concurrent streams
(docs/performance.md).

asgiref lets a context use an executor the caller owns. Here each request borrows a one-thread
executor from a free list and gives it back when it ends: the same thread-per-request semantics
Django relies on (a sync view's database connection belongs to its thread and is closed by
``request_finished`` in that thread), without starting threads in the steady state. At most
``ASGI_IDLE_REQUEST_THREADS`` idle executors are kept; more are shut down.

Requests routed to an async view (the API's hot paths: every Responses endpoint, streams
included) do not take a thread of their own at all. Their only thread-sensitive work is Django's
own bookkeeping (the ``request_started``/``request_finished`` receivers, closing the response),
a few microseconds at the start and the end; their ORM work runs through ``core.db.db_async``.
So they share one process-wide thread for it, and an open stream pins no OS thread (1,000 open
streams used to hold 1,000 threads).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, get_resolver


class _ExecutorFreeList:
    def __init__(self) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def acquire(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def release(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < settings.ASGI_IDLE_REQUEST_THREADS:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)  # its thread exits once idle; nothing waits for it


_request_executors = _ExecutorFreeList()
_async_view_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="async-views")


def routes_to_async_view(scope) -> bool:
    """True when the request's path resolves to an async view (a coroutine function)."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


class ReusedThreadASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if routes_to_async_view(scope):
            async with ThreadSensitiveContext(executor=_async_view_executor):
                await self.handle(scope, receive, send)
            return
        executor = _request_executors.acquire()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            _request_executors.release(executor)
