"""The HTTP edge at the ASGI layer: what must hold for every request before Django sees it, under
any ASGI server.

* **Bodies.** Django only checks ``DATA_UPLOAD_MAX_MEMORY_SIZE`` after the handler has spooled
  the whole body. Here a declared ``Content-Length`` over ``MAX_REQUEST_BODY_BYTES`` is a 413
  before a byte of the body is read; a chunked body is counted as it arrives. A malformed or
  negative ``Content-Length`` is a 400. A body that stops arriving (nothing for
  ``REQUEST_BODY_TIMEOUT_SECONDS``) is a 408 instead of holding the connection. The body is read
  here (Django would read it all before the view anyway) and replayed to Django.
* **Long URLs.** A request target over ``MAX_URL_BYTES`` is a 414.
* **Headers on every answer**, including the 401s of the gateway, these refusals and static
  files: ``X-Content-Type-Options``, ``X-Frame-Options``, ``Referrer-Policy``; and a
  ``Content-Security-Policy`` on the admin.

Every refusal is OpenAI's error envelope. What a server does before calling the application
(daphne reads a whole body first, and answers bad request lines itself) is handled for daphne in
:mod:`api.daphne_edge`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from django.conf import settings

Scope = dict[str, Any]

_NO_BODY_METHODS = ("GET", "HEAD", "OPTIONS", "DELETE")


class EdgeRefusal(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def too_large(limit: int) -> EdgeRefusal:
    return EdgeRefusal(
        413, f"The request body is too large (limit {limit} bytes).", "request_too_large"
    )


def body_timeout(seconds: float) -> EdgeRefusal:
    return EdgeRefusal(
        408,
        f"The request body did not arrive: nothing was received for {seconds:g} seconds.",
        "request_timeout",
    )


def url_too_long(limit: int) -> EdgeRefusal:
    return EdgeRefusal(
        414, f"The request URL is too long (limit {limit} bytes).", "request_uri_too_long"
    )


def bad_content_length() -> EdgeRefusal:
    return EdgeRefusal(
        400,
        "Invalid Content-Length header: expected one non-negative integer.",
        "invalid_request",
    )


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    """What every answer carries (the values Django's SecurityMiddleware and
    XFrameOptionsMiddleware use), plus the admin's Content-Security-Policy."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", settings.X_FRAME_OPTIONS.encode()),
        (b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()),
    ]
    if path.startswith(settings.ADMIN_PATH_PREFIX) and settings.ADMIN_CONTENT_SECURITY_POLICY:
        headers.append(
            (b"content-security-policy", settings.ADMIN_CONTENT_SECURITY_POLICY.encode())
        )
    return headers


def refusal_response(refusal: EdgeRefusal, *, path: str = "") -> tuple[dict, dict]:
    """The two ASGI messages of a refusal, in the envelope, closing the connection (the body,
    if any, was not read)."""
    body = json.dumps(
        {
            "error": {
                "message": refusal.message,
                "type": "invalid_request_error",
                "param": None,
                "code": refusal.code,
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
        (b"openai-version", settings.OPENAI_VERSION_HEADER.encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
        *security_headers(path),
    ]
    start = {"type": "http.response.start", "status": refusal.status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """The edge (module docstring). Named for its first job; it wraps the whole application."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        try:
            replay = await self._admit(scope, receive)
        except EdgeRefusal as refusal:
            for message in refusal_response(refusal, path=path):
                await send(message)
            return
        extra = security_headers(path)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                missing = [header for header in extra if header[0] not in present]
                if missing:
                    message = {**message, "headers": [*message.get("headers", ()), *missing]}
            await send(message)

        await self.app(scope, replay or receive, send_with_headers)

    async def _admit(self, scope: Scope, receive):
        """Check the request line and headers, read the body; a receive that replays it."""
        url_limit = settings.MAX_URL_BYTES
        target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(
            scope.get("query_string", b"")
        )
        if target > url_limit:
            raise url_too_long(url_limit)
        limit = settings.MAX_REQUEST_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise too_large(limit)
        if declared == 0 or (declared is None and scope.get("method") in _NO_BODY_METHODS):
            return None
        # Read the body here, bounded in size and in idle time, then replay it to Django. Django
        # would hold the same bytes anyway; this only stops it from holding more, or waiting
        # forever for bytes that never come.
        timeout = settings.REQUEST_BODY_TIMEOUT_SECONDS
        messages: list[dict[str, Any]] = []
        total = 0
        while True:
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise body_timeout(timeout) from None
            messages.append(message)
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > limit:
                raise too_large(limit)
            if not message.get("more_body", False):
                break

        replay = iter(messages)

        async def replay_receive() -> dict[str, Any]:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        return replay_receive


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent. Malformed, negative or conflicting values are a
    400 (a server that let them through would otherwise make Django guess)."""
    found: int | None = None
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit():
                raise bad_content_length()
            # More digits than any limit could need: too large (and int() of thousands of
            # digits is refused by Python itself).
            length = int(text) if len(text) <= 18 else 10**18
            if found is not None and found != length:
                raise bad_content_length()
            found = length
    return found
