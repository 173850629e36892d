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

On the API's own paths (``/v1/``, ``/openai/``) that bookkeeping does not leave the event loop at
all. Django's built-in middleware (``MiddlewareMixin``: security headers, sessions, CSRF,
messages…) has sync hooks only, and in an async stack each hook call was a hand-off to that one
thread and back — thirteen per request, plus the ``request_started``/``request_finished``
receivers and the response's ``close``: each a few dozen microseconds of CPU and, under load, a
wait in that thread's queue behind every other request's. For these requests the hooks are
called directly (:func:`_direct_hooks`) and the remaining thread-sensitive calls run inline.
None of them does I/O on an API request: the API reads no session, sets no message and is exempt
from CSRF, and every query of an async view goes through ``core.db.db_async``. Should one ever
touch the database there, Django refuses it loudly (``SynchronousOnlyOperation``) rather than
block the loop. Every other request (the admin, the console, sync views) is handled exactly as
Django does.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, get_resolver
from django.utils.deprecation import MiddlewareMixin

from api.middleware import is_api_path


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


class _InlineExecutor(Executor):
    """Runs what is submitted at once, in the submitting thread (here: the event loop's)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller, like a thread's
            future.set_exception(exc)
        return future


bookkeeping_inline: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "bookkeeping_inline", default=False
)
"""True while a request's thread-sensitive work runs inline (see the module doc)."""


def _direct_hooks(acall):
    """``MiddlewareMixin.__acall__`` calling the hooks directly, in Django's order, for the
    requests this handler runs inline; Django's own otherwise."""

    async def __acall__(self, request):
        if not bookkeeping_inline.get():
            return await acall(self, request)
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response

    return __acall__


MiddlewareMixin.__acall__ = _direct_hooks(MiddlewareMixin.__acall__)  # type: ignore[method-assign]

_request_executors = _ExecutorFreeList()
_async_view_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="async-views")
_inline_executor = _InlineExecutor()


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
            inline = is_api_path(scope.get("path", ""))
            executor = _inline_executor if inline else _async_view_executor
            marked = bookkeeping_inline.set(inline)
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.handle(scope, receive, send)
            finally:
                bookkeeping_inline.reset(marked)
            return
        executor = _request_executors.acquire()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            _request_executors.release(executor)
