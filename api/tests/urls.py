"""The real URLconf plus a view that fails, to exercise the 500 path."""

from django.urls import path

from config.urls import urlpatterns as real_patterns


def boom(request):
    raise RuntimeError("secret internal detail: do not leak")


async def async_boom(request):
    raise RuntimeError("secret internal detail: do not leak")


def thread_id(request):
    """Which thread served this sync view (api/handler.py reuses request threads); with
    ``?meet=N`` it first waits until N requests are inside at once (two sharing a thread never
    would: the barrier breaks after 5 s and the view fails)."""
    import threading

    from django.http import HttpResponse

    meet = int(request.GET.get("meet", "0"))
    if meet:
        with _barriers_lock:
            barrier = _barriers.setdefault(meet, threading.Barrier(meet, timeout=5))
        barrier.wait()
    return HttpResponse(str(threading.get_ident()))


import threading  # noqa: E402

_barriers: dict = {}
_barriers_lock = threading.Lock()


async def async_thread_name(request):
    """The thread that runs this async view's thread-sensitive work; with ``?meet=N`` only once
    N requests are inside at once (all of them open, like streams)."""
    import asyncio

    from asgiref.sync import sync_to_async
    from django.http import HttpResponse

    meet = int(request.GET.get("meet", "0"))
    if meet:
        inside = _async_meetings.setdefault(meet, [0, asyncio.Event()])
        inside[0] += 1
        if inside[0] >= meet:
            inside[1].set()
        async with asyncio.timeout(5):
            await inside[1].wait()
    name = await sync_to_async(lambda: threading.current_thread().name)()
    return HttpResponse(name)


_async_meetings: dict = {}


urlpatterns = [
    path("test-thread", thread_id),
    path("test-async-thread", async_thread_name),
    path("v1/test-async-thread", async_thread_name),
    path("v1/test-boom", boom),
    path("v1/test-async-boom", async_boom),
    *real_patterns,
]


from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


class EchoApi(APIView):
    """A write endpoint that parses its JSON body (the real ones come with the Responses API)."""

    endpoint_group = "responses"

    def post(self, request):
        return Response({"received": request.data})


urlpatterns.insert(0, path("v1/test-echo", EchoApi.as_view()))
