"""WebSocket mode of the Responses API: ``/v1/responses`` over WebSocket (a Channels consumer).

One connection carries many turns, one at a time:

* the handshake authenticates like an HTTP request (``Authorization: Bearer`` or ``api-key``,
  the ``OpenAI-Organization`` / ``OpenAI-Project`` checks, the key's write scope); a refused key
  never gets the connection accepted (daphne answers the upgrade with 403);
* each client message ``{"type": "response.create", …create body…}`` runs the same generation
  as ``POST /v1/responses`` (``response_prepare`` then ``generate_events``: the same validation,
  quotas, usage ledger, storage and cancellation), and every event goes out as one JSON text
  frame, exactly the object the SSE stream carries. ``stream`` is implied; ``background`` is
  refused. ``generate: false`` prepares a response without output (created, in progress,
  completed) whose id a later turn may continue from;
* one response in flight per connection: a second ``response.create`` meanwhile is an error
  event (409 ``concurrent_request``) and the running one goes on;
* the connection keeps its last finished response, so ``previous_response_id`` works with
  ``store: false`` (a stored response is read from the database as over HTTP);
* failures are error events ``{"type": "error", "status", "error": {type, code, message,
  param}}``; the connection stays usable;
* the client leaving cancels the running turn like an HTTP disconnect: the engine request is
  closed (vLLM aborts it), partial output is stored as ``incomplete``, usage is settled;
* a connection lives at most ``WEBSOCKET_MAX_LIFETIME_SECONDS``; an error event with code
  ``connection_expiring`` warns ``WEBSOCKET_EXPIRY_WARNING_SECONDS`` before it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http.request import HttpHeaders

from api.authentication import authenticate_request
from api.middleware import choose_request_id
from api.permissions import require_scope
from core.db import db_async
from core.errors import ApiError
from core.logging import current_request_id
from engines.runtime.types import Finish, GenerationRequest, Usage
from responses.services.create import LocalPrevious, response_prepare
from responses.services.generation import KEEPALIVE, generate_events, generation_abandon
from responses.streaming.encoder import dumps, get_dialect
from tenants.principal import ApiPrincipal

logger = logging.getLogger(__name__)

# Fields of response.create that belong to the transport, not to the create body.
_TRANSPORT_ONLY = ("stream", "stream_options")
_REUSABLE_STATUSES = ("completed", "incomplete")
_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "response.cancelled"}
)


class _HandshakeRequest:
    """What :func:`authenticate_request` reads from a request (its headers), built from the
    WebSocket handshake's ASGI scope."""

    def __init__(self, scope: Mapping[str, Any]) -> None:
        meta = {}
        for raw_name, raw_value in scope.get("headers") or []:
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            meta[f"HTTP_{name}"] = raw_value.decode("latin-1")
        self.headers = HttpHeaders(meta)
        self.path = scope.get("path", "")


class _NoOutputEngine:
    """``generate: false``: the turn runs the whole generation path (storage, quotas, events)
    with an engine that produces nothing."""

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Any, None]:
        yield Finish(reason="stop")
        yield Usage(input_tokens=0, output_tokens=0)

    async def count_tokens(self, **kwargs: Any) -> int:
        return 0

    async def aclose(self) -> None:
        return None


def error_frame(
    *,
    status: int,
    message: str,
    type: str = "invalid_request_error",  # noqa: A002 - mirrors the wire field name
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type, "code": code, "message": message, "param": param}
    if headers:
        error["headers"] = headers
    return {"type": "error", "status": status, "error": error}


def _api_error_frame(error: ApiError) -> dict[str, Any]:
    return error_frame(
        status=error.status,
        message=error.message,
        type=error.type,
        code=error.code,
        param=error.param,
        headers=error.headers,
    )


class ResponsesWebSocketConsumer(AsyncWebsocketConsumer):
    dialect = "openai"

    async def connect(self) -> None:
        self.principal: ApiPrincipal | None = None
        self.turn: asyncio.Task | None = None
        self.turn_ended = False
        """The running turn sent its terminal event (it is finishing up)."""
        self.previous: LocalPrevious | None = None
        self.lifetime: asyncio.Task | None = None
        handshake = _HandshakeRequest(self.scope)
        try:
            principal = await db_async(authenticate_request)(handshake)
            require_scope(principal, group="responses", write=True)
        except ApiError as error:
            logger.info("WebSocket refused on %s: %s", handshake.path, error.message)
            await self.close()
            return
        except (OperationalError, InterfaceError):
            logger.exception("Database unavailable during a WebSocket handshake")
            await self.close()
            return
        self.principal = principal
        self.connection_id = choose_request_id(handshake)
        # Each turn gets a request id of its own (logs, the engine request); daphne sends no
        # headers with the handshake answer, so there is nowhere to put one for the connection.
        await self.accept()
        self.lifetime = asyncio.create_task(self._enforce_lifetime())

    async def disconnect(self, code: int) -> None:
        if self.lifetime is not None:
            self.lifetime.cancel()
        turn = self.turn
        if turn is not None and not turn.done():
            if not self.turn_ended:
                # Like an HTTP client leaving mid-stream: the generation's finally aborts the
                # engine request, stores the partial output and settles usage.
                turn.cancel()
            # Either way the turn's outcome is stored before the consumer ends.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await turn

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if self.principal is None:
            return
        try:
            message = json.loads(text_data if text_data is not None else bytes_data or b"")
        except (ValueError, UnicodeDecodeError):
            await self._send_json(
                error_frame(status=400, code="invalid_json", message="The message is not JSON.")
            )
            return
        if not isinstance(message, dict) or message.get("type") != "response.create":
            kind = message.get("type") if isinstance(message, dict) else None
            await self._send_json(
                error_frame(
                    status=400,
                    code="unknown_event_type",
                    param="type",
                    message=f"Unsupported event type {kind!r}; send 'response.create'.",
                )
            )
            return
        if self.turn is not None and not self.turn.done() and self.turn_ended:
            # The client saw the terminal event and went on at once; the turn is only storing
            # its outcome and settling usage. The next turn starts after that, so it can
            # continue from this one.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.turn)
        if self.turn is not None and not self.turn.done():
            await self._send_json(
                error_frame(
                    status=409,
                    code="concurrent_request",
                    message="A response is already being generated on this connection; wait "
                    "for its terminal event before sending the next response.create.",
                )
            )
            return
        self.turn_ended = False
        self.turn = asyncio.create_task(self._run_turn(message))

    async def _run_turn(self, message: dict[str, Any]) -> None:
        request_id = f"req_{uuid.uuid4().hex}"
        token = current_request_id.set(request_id)
        try:
            await self._turn(message, request_id=request_id)
        except ApiError as error:
            await self._send_json(_api_error_frame(error))
        except (OperationalError, InterfaceError):
            logger.exception("Database unavailable during a WebSocket turn")
            await self._send_json(
                error_frame(
                    status=503,
                    type="server_error",
                    code="service_unavailable",
                    message="The service is temporarily unavailable; retry the request.",
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("WebSocket turn %s failed", request_id)
            await self._send_json(
                error_frame(
                    status=500,
                    type="server_error",
                    code="server_error",
                    message=f"The server had an error while processing your request "
                    f"(request id {request_id}).",
                )
            )
        finally:
            with contextlib.suppress(ValueError):
                current_request_id.reset(token)

    async def _turn(self, message: dict[str, Any], *, request_id: str) -> None:
        assert self.principal is not None  # turns run only after the handshake authenticated
        body = {key: value for key, value in message.items() if key != "type"}
        for key in _TRANSPORT_ONLY:
            body.pop(key, None)  # every turn streams; nothing else to choose
        stream_id = body.pop("stream_id", None)
        if stream_id is not None and not isinstance(stream_id, str):
            raise ApiError("Invalid type for 'stream_id': expected a string.", param="stream_id",
                           code="invalid_type")  # fmt: skip
        generate = body.pop("generate", True)
        if not isinstance(generate, bool):
            raise ApiError("Invalid type for 'generate': expected a boolean.", param="generate",
                           code="invalid_type")  # fmt: skip
        if body.pop("background", None):
            raise ApiError(
                "Background mode is not supported over WebSocket; use POST /v1/responses with "
                "background=true.",
                param="background",
                code="unsupported_parameter",
            )
        prepared = await response_prepare(
            principal=self.principal,
            request_id=request_id,
            body=body,
            local_previous=self.previous,
            prestart=generate,  # a warm-up's engine is swapped below: nothing may go out first
        )
        generation = prepared.generation
        if not generate:
            generation.engine = _NoOutputEngine()
        try:
            async with contextlib.aclosing(generate_events(generation)) as events:
                async for batch in events:
                    if batch is KEEPALIVE:
                        continue  # the WebSocket has its own pings
                    for event in batch:
                        await self._send_event(event, stream_id=stream_id, generation=generation)
        finally:
            await generation_abandon(generation)  # a no-op once the generation has started
        final = generation.builder.snapshot()
        if final["status"] in _REUSABLE_STATUSES:
            self.previous = LocalPrevious(
                response_id=final["id"], items=[*prepared.context_items, *final["output"]]
            )

    async def _send_event(self, event: dict[str, Any], *, stream_id: str | None, generation):
        wire = get_dialect(self.dialect).apply(event)
        if wire.get("type") == "error" and "error" not in wire:
            # A failure inside the stream: the WebSocket error shape, with its sequence number.
            error = generation.engine_error
            wire = error_frame(
                status=error.status if error is not None else 500,
                type=error.type if error is not None else "server_error",
                code=wire.get("code"),
                message=wire.get("message", ""),
                param=wire.get("param"),
            ) | {"sequence_number": wire.get("sequence_number")}
        if stream_id is not None:
            wire = {**wire, "stream_id": stream_id}
        if event.get("type") in _TERMINAL_EVENTS:
            self.turn_ended = True
        await self._send_json(wire)

    async def _send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=dumps(payload).decode("utf-8"))

    async def _enforce_lifetime(self) -> None:
        lifetime = settings.WEBSOCKET_MAX_LIFETIME_SECONDS
        warning = min(settings.WEBSOCKET_EXPIRY_WARNING_SECONDS, lifetime)
        await asyncio.sleep(lifetime - warning)
        if warning > 0:
            await self._send_json(
                error_frame(
                    status=400,
                    code="connection_expiring",
                    message=f"This connection reaches its maximum lifetime of {lifetime:g} "
                    f"seconds in {warning:g} seconds and will then be closed; open a new one.",
                )
            )
            await asyncio.sleep(warning)
        logger.info("WebSocket %s closed: maximum lifetime reached", self.connection_id)
        await self.close(code=1000, reason="Connection lifetime exceeded")


class RefusedWebSocketConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: refused at the handshake."""

    async def connect(self) -> None:
        await self.close()
