"""The parts of the HTTP edge that daphne decides before the application is called.

daphne (Twisted) reads a request's whole body before it calls the ASGI application, answers a
malformed request (a negative ``Content-Length``, a bad header) with a bare ``400`` and closes a
connection whose request line is too long without any answer. So under daphne, and only there,
:func:`install` adjusts daphne's request and Twisted's channel, in this process:

* a declared ``Content-Length`` over ``MAX_REQUEST_BODY_BYTES`` is answered 413 as soon as the
  headers are in, and the connection closed: the body is never received;
* a body that stops arriving for ``REQUEST_BODY_TIMEOUT_SECONDS`` is answered 408 (Twisted would
  hold the connection for its 60 s idle timeout and then drop it silently);
* a malformed request gets a 400 and a request line over Twisted's line limit (16 KB) a 414,
  both in OpenAI's envelope, instead of a bare status line or nothing.

The answers are the ones the ASGI layer gives (:mod:`api.asgi`) under any other server.
"""

from __future__ import annotations

import time

from django.conf import settings

from api.asgi import (
    EdgeRefusal,
    body_timeout,
    refusal_response,
    too_large,
    url_too_long,
)

_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 431: "Request Header Fields Too Large"}  # fmt: skip
_installed = False


def raw_refusal(refusal: EdgeRefusal) -> bytes:
    start, body = refusal_response(refusal)
    lines = [f"HTTP/1.1 {refusal.status} {_REASONS.get(refusal.status, 'Error')}".encode()]
    lines += [name + b": " + value for name, value in start["headers"]]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body["body"]


def _refuse(channel, refusal: EdgeRefusal) -> None:
    if channel.transport is None or channel.transport.disconnecting:
        return
    channel.transport.write(raw_refusal(refusal))
    channel.loseConnection()


def install() -> None:
    """Adjust daphne's request class and Twisted's HTTP channel (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    from daphne.http_protocol import WebRequest
    from twisted.internet import reactor
    from twisted.web import http

    channel_class = http.HTTPChannel

    def respond_to_bad_request(self) -> None:
        _refuse(
            self,
            EdgeRefusal(
                400,
                "The request could not be parsed: a malformed request line, header or "
                "Content-Length.",
                "invalid_request",
            ),
        )

    def line_length_exceeded(self, line: bytes) -> None:
        if getattr(self, "_HTTPChannel__first_line", 0):
            _refuse(self, url_too_long(self.MAX_LENGTH))
        else:
            _refuse(
                self,
                EdgeRefusal(431, "The request headers are too large.", "request_header_too_large"),
            )

    # Deliberately replacing Twisted's methods (see this module's docstring).
    channel_class._respondToBadRequestAndDisconnect = respond_to_bad_request  # type: ignore[method-assign]
    channel_class.lineLengthExceeded = line_length_exceeded  # type: ignore[method-assign]

    original_got_length = WebRequest.gotLength
    original_chunk = WebRequest.handleContentChunk
    original_process = WebRequest.process
    original_connection_lost = WebRequest.connectionLost

    def got_length(self, length):
        original_got_length(self, length)
        limit = settings.MAX_REQUEST_BODY_BYTES
        if length is not None and length > limit:
            self._edge_refused = True
            # No "100 Continue" after the refusal: the client must not send the body.
            self.requestHeaders.removeHeader(b"Expect")
            _refuse(self.channel, too_large(limit))
            return
        if length != 0:
            self._edge_last_data = time.monotonic()
            # Twisted declares the reactor's methods on a zope Interface, without `self`: mypy
            # (without the zope plugin) reads every argument one place off.
            self._edge_timer = reactor.callLater(
                settings.REQUEST_BODY_TIMEOUT_SECONDS,  # type: ignore[arg-type]
                _check_idle,
                self,
            )

    def _check_idle(self) -> None:
        self._edge_timer = None
        if getattr(self, "_edge_body_done", False) or self.channel is None:
            return
        timeout = settings.REQUEST_BODY_TIMEOUT_SECONDS
        idle = time.monotonic() - self._edge_last_data
        if idle >= timeout:
            self._edge_refused = True
            _refuse(self.channel, body_timeout(timeout))
            return
        self._edge_timer = reactor.callLater(timeout - idle, _check_idle, self)

    def handle_content_chunk(self, data):
        self._edge_last_data = time.monotonic()
        return original_chunk(self, data)

    def _stop_timer(self) -> None:
        self._edge_body_done = True
        timer = getattr(self, "_edge_timer", None)
        if timer is not None and timer.active():
            timer.cancel()
        self._edge_timer = None

    def process(self):
        _stop_timer(self)
        if getattr(self, "_edge_refused", False):
            return None  # already answered; the connection is closing
        return original_process(self)

    def connection_lost(self, reason):
        _stop_timer(self)
        return original_connection_lost(self, reason)

    WebRequest.gotLength = got_length
    WebRequest.handleContentChunk = handle_content_chunk
    WebRequest.process = process
    WebRequest.connectionLost = connection_lost
