"""The ASGI handler borrows request threads from a free list instead of starting one per request
(api/handler.py), and still gives each request a thread of its own while it runs; requests to
async views take none of their own."""

from __future__ import annotations

import asyncio

import pytest

from api.handler import ReusedThreadASGIHandler


async def _get(app, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    status, body, _ = await _get_with_headers(app, path, headers)
    return status, body


async def _get_with_headers(
    app, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []
    requested = False
    never = asyncio.Event()

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # the client stays connected; Django stops listening when done

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, {k.decode().lower(): v.decode() for k, v in start["headers"]}


@pytest.mark.urls("api.tests.urls")
async def test_sequential_requests_reuse_one_request_thread():
    app = ReusedThreadASGIHandler()
    threads = {(await _get(app, "/test-thread"))[1] for _ in range(5)}
    assert len(threads) == 1, threads


@pytest.mark.urls("api.tests.urls")
async def test_concurrent_requests_each_get_a_thread_of_their_own():
    app = ReusedThreadASGIHandler()
    answers = await asyncio.gather(*(_get(app, "/test-thread?meet=4") for _ in range(4)))
    # All four were inside the view at once, so none shared another's thread.
    assert [status for status, _ in answers] == [200] * 4
    assert len({body for _, body in answers}) == 4


@pytest.mark.urls("api.tests.urls")
async def test_open_requests_to_async_views_share_one_thread():
    import threading

    app = ReusedThreadASGIHandler()
    before = {t.name for t in threading.enumerate() if t.name.startswith("request")}
    answers = await asyncio.gather(*(_get(app, "/test-async-thread?meet=6") for _ in range(6)))
    # Six requests open at once, like six streams: their thread-sensitive work (Django's
    # bookkeeping included) ran on one shared thread, and no request thread was taken.
    assert [status for status, _ in answers] == [200] * 6
    names = {body.decode() for _, body in answers}
    assert len(names) == 1 and names.pop().startswith("async-views"), answers
    during = {t.name for t in threading.enumerate() if t.name.startswith("request")}
    assert during <= before


def test_the_served_application_uses_it():
    import config.asgi

    app = config.asgi.application.application_mapping["http"]
    while not isinstance(app, ReusedThreadASGIHandler):
        app = app.application if hasattr(app, "application") else app.app
    assert isinstance(app, ReusedThreadASGIHandler)


@pytest.mark.urls("api.tests.urls")
async def test_api_requests_keep_their_bookkeeping_on_the_event_loop(transactional_cast):
    """On the API's paths Django's middleware and signals run on the loop itself: no hand-off
    to a thread, and still every hook (SecurityMiddleware's headers, the gateway's)."""
    import threading

    app = ReusedThreadASGIHandler()
    status, body, headers = await _get_with_headers(
        app, "/v1/test-async-thread", transactional_cast.alice.headers
    )
    assert status == 200
    assert body.decode() == threading.current_thread().name  # the event loop's own thread
    assert headers["cross-origin-opener-policy"] == "same-origin"  # SecurityMiddleware ran
    assert headers["x-request-id"].startswith("req_")
