"""ASGI-level guard for request bodies (E4).

Django only checks ``DATA_UPLOAD_MAX_MEMORY_SIZE`` after the ASGI handler has already spooled the
whole body, so an oversized upload would be read in full before being refused. This wrapper answers
413 (in the API error envelope) as soon as the declared ``Content-Length`` or, for chunked uploads,
the running byte count passes ``settings.MAX_REQUEST_BODY_BYTES``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings

Scope = dict[str, Any]


def _too_large_body(limit: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": f"The request body is too large (limit {limit} bytes).",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
        }
    ).encode()


class BodyLimitMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.MAX_REQUEST_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit:
                await _send_413(send, limit)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): buffer up to the limit, then replay to Django. Django
        # would hold the same bytes anyway; this only stops it from holding more.
        messages: list[dict[str, Any]] = []
        total = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > limit:
                await _send_413(send, limit)
                return
            if not message.get("more_body", False):
                break

        replay = iter(messages)

        async def replay_receive() -> dict[str, Any]:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send, limit: int) -> None:
    body = _too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
                (b"openai-version", settings.OPENAI_VERSION_HEADER.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
