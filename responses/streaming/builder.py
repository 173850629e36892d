"""``StreamBuilder``: the state machine that turns engine deltas into Responses stream events.

One builder serves one response. The caller (the streaming view or a background worker) feeds
it what the engine yields and gets back the events each step produces, already numbered:

    builder = StreamBuilder(echo=echo)
    events = builder.start()                       # response.created, response.in_progress
    async for delta in engine.stream(request):
        events = builder.feed(delta)               # item lifecycle, deltas …
    events = builder.finish()                      # closes items, one terminal event

and on trouble ``fail(code, message)`` (``error`` then ``response.failed``) or, when nobody is
listening any more, ``interrupt("disconnect" | "cancelled")``, which returns the final Response
and emits nothing. ``snapshot()`` is the Response as of now, for storing partial output.

Design rules:

* ``sequence_number`` is stamped in :meth:`StreamBuilder._stamp` and nowhere else.
* Only accumulated item state is kept, never the events, so memory stays bounded: storing them
  is the caller's job.
* Item order follows generation: reasoning, then the message, then function calls. A message or
  reasoning item is closed as soon as the engine moves on to something else; function calls stay
  open until the end because parallel calls can interleave their argument deltas.
* With ``reasoning_summary=True`` a reasoning item stays open after its text ends, so that the
  summary produced by a separate engine call can still be attached to it, via
  :meth:`StreamBuilder.add_reasoning_summary` or the incremental ``*_summary_part`` methods.

The file is ordered: errors, the builder's public API, then its internals; the per-item state
it accumulates lives in :mod:`responses.streaming.state`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from engines.runtime.types import (
    EngineDelta,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStart,
    Usage,
)
from responses.streaming import events as ev
from responses.streaming import ids, objects
from responses.streaming.events import Event
from responses.streaming.objects import ItemStatus, ResponseEcho, ResponseStatus
from responses.streaming.state import (
    FunctionCallState,
    ItemState,
    MessageState,
    ReasoningState,
    TextBuffer,
)

InterruptReason = Literal["disconnect", "cancelled"]
ReasoningEncryptor = Callable[[str, str, list[str]], str]

# Finish reasons that cut the output short; "abort" has no OpenAI reason to report.
_INCOMPLETE_REASONS: dict[str, objects.IncompleteReason | None] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
    "abort": None,
}


class StreamStateError(RuntimeError):
    """The builder was used out of order (fed before ``start``, after a terminal event, …)."""


class StreamProtocolError(ValueError):
    """The engine's deltas do not make a coherent stream; the caller should :meth:`fail`."""


# --- the builder -----------------------------------------------------------------------------


class StreamBuilder:
    """Engine deltas in, numbered OpenAI stream events out; see the module docstring."""

    def __init__(
        self,
        *,
        echo: ResponseEcho,
        response_id: str | None = None,
        created_at: int | None = None,
        include_logprobs: bool = False,
        reasoning_summary: bool = False,
        encrypt_reasoning: ReasoningEncryptor | None = None,
        announce_encrypted_reasoning: bool = False,
        new_id: Callable[[ids.IdPrefix], str] = ids.new_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``encrypt_reasoning(item_id, text, summaries)`` gives a finished reasoning item its
        ``encrypted_content``; ``announce_encrypted_reasoning`` also emits
        ``response.additional_context`` after such an item (asked for by legacy clients)."""
        self._echo = echo
        self._new_id = new_id
        self._clock = clock
        self._include_logprobs = include_logprobs
        self._keep_reasoning_open = reasoning_summary
        self._encrypt_reasoning = encrypt_reasoning
        self._announce_encrypted = announce_encrypted_reasoning and encrypt_reasoning is not None
        self.response_id = response_id or new_id("resp")
        self.created_at = created_at if created_at is not None else int(clock())

        self._next_sequence_number = 0
        self._status: ResponseStatus | None = None  # None until start()
        self._terminal = False
        self._error: dict[str, Any] | None = None
        self._incomplete_details: dict[str, Any] | None = None
        self._completed_at: int | None = None
        self._usage: dict[str, Any] | None = None
        self._finish_reason: FinishReason | None = None

        self._items: list[ItemState] = []
        self._message: MessageState | None = None  # the message receiving text, if any
        self._reasoning: ReasoningState | None = None  # the latest reasoning item
        self._calls: dict[int, FunctionCallState] = {}  # by the engine's tool-call index
        self._call_ids: set[str] = set()

    # --- properties ---

    @property
    def status(self) -> ResponseStatus | None:
        return self._status

    @property
    def closed(self) -> bool:
        """True once a terminal event was emitted or the stream was interrupted."""
        return self._terminal

    @property
    def announces_encrypted_reasoning(self) -> bool:
        return self._announce_encrypted

    @property
    def next_sequence_number(self) -> int:
        return self._next_sequence_number

    # --- lifecycle ---

    def start(self, *, queued: bool = False) -> list[Event]:
        """``response.created`` then ``response.in_progress``; or, for a background response that
        waits for a worker, ``response.created`` and ``response.queued`` (both with status
        ``queued``) — :meth:`begin` or the first delta then emits ``response.in_progress``."""
        if self._status is not None:
            raise StreamStateError("start() was already called")
        if queued:
            self._status = "queued"
            return self._stamp(
                [ev.response_created(self._response()), ev.response_queued(self._response())]
            )
        self._status = "in_progress"
        return self._stamp(
            [ev.response_created(self._response()), ev.response_in_progress(self._response())]
        )

    def begin(self) -> list[Event]:
        """Leave ``queued``: ``response.in_progress``. A no-op when already in progress."""
        return self._stamp(self._activate())

    def feed(self, delta: EngineDelta) -> list[Event]:
        """The events one engine delta produces (often none, e.g. for ``Usage``/``Finish``)."""
        message = self._message
        if (
            type(delta) is TextDelta
            and message is not None
            and delta.text
            and not (delta.logprobs and self._include_logprobs)
            and self._status == "in_progress"
            and not self._terminal
        ):
            # Most deltas are one more token of an open message: its one event is built
            # directly, numbered, in the same key order as the general path below.
            message.text.append(delta.text)
            number = self._next_sequence_number
            self._next_sequence_number = number + 1
            return [
                {
                    "type": ev.OUTPUT_TEXT_DELTA,
                    "sequence_number": number,
                    "item_id": message.item_id,
                    "output_index": message.output_index,
                    "content_index": 0,
                    "delta": delta.text,
                    "logprobs": [],
                }
            ]
        self._require_started()
        if isinstance(delta, ToolCallArgumentsDelta):
            # Checked before any state changes, so that a caller catching the error can still
            # fail() with a coherent stream (nothing half-emitted, no numbers skipped).
            self._require_open_call(delta.index)
        out = self._activate()
        if isinstance(delta, TextDelta):
            out += self._on_text(delta)
        elif isinstance(delta, ReasoningDelta):
            out += self._on_reasoning(delta)
        elif isinstance(delta, ToolCallStart):
            out += self._on_tool_call_start(delta)
        elif isinstance(delta, ToolCallArgumentsDelta):
            out += self._on_tool_call_arguments(delta)
        elif isinstance(delta, Usage):
            self._usage = objects.usage_object(
                input_tokens=delta.input_tokens,
                output_tokens=delta.output_tokens,
                cached_tokens=delta.cached_tokens,
                reasoning_tokens=delta.reasoning_tokens,
            )
        elif isinstance(delta, Finish):
            # Usage may still follow (vLLM sends it in a last chunk), so nothing closes here.
            self._finish_reason = delta.reason
        else:  # pragma: no cover - the EngineDelta union is closed
            raise StreamProtocolError(f"unknown engine delta {type(delta).__name__}")
        return self._stamp(out)

    def finish(self, *, reason: FinishReason | None = None) -> list[Event]:
        """Close every open item and emit the one terminal event.

        ``response.completed``, or ``response.incomplete`` when the engine stopped on
        ``length`` (``incomplete_details.reason = "max_output_tokens"``), ``content_filter`` or
        ``abort``; then the last item, if still open, is marked ``incomplete`` (Open Responses:
        an incomplete item is the last one and its response is incomplete too).
        """
        out = self._activate()
        reason = reason or self._finish_reason or "stop"
        cut = reason in _INCOMPLETE_REASONS
        out += self._close_all(cut=cut)
        self._terminal = True
        if cut:
            self._status = "incomplete"
            detail = _INCOMPLETE_REASONS[reason]
            self._incomplete_details = objects.incomplete_details(detail) if detail else None
            out.append(ev.response_incomplete(self._response()))
        else:
            self._status = "completed"
            self._completed_at = int(self._clock())
            out.append(ev.response_completed(self._response()))
        return self._stamp(out)

    def fail(self, code: str | None, message: str, *, param: str | None = None) -> list[Event]:
        """``error`` (flat, with the precise ``code``) then ``response.failed``.

        Open items are not closed with events — the stream is broken, and a client must not
        mistake a half-written item for a finished one — but they appear in the failed
        Response's ``output`` with status ``incomplete`` so the stored response keeps them.
        """
        out = self._activate()
        self._mark_open_items("incomplete")
        self._terminal = True
        self._status = "failed"
        self._error = objects.response_error(code, message)
        out.append(ev.error(code=code, message=message, param=param))
        out.append(ev.response_failed(self._response()))
        return self._stamp(out)

    def interrupt(self, reason: InterruptReason, *, usage: Usage | None = None) -> dict[str, Any]:
        """End without events — the client is gone or the response was cancelled.

        Returns the final Response: status ``incomplete`` after a disconnect, ``cancelled``
        after a cancellation; items still open become ``incomplete``. ``incomplete_details``
        stays null: OpenAI's reasons (max_output_tokens, content_filter …) do not apply and its
        schema has no other (the stored row records the disconnect). ``usage``: what the engine
        reported so far, when its final usage never came (the stream was cut short); it is what
        gets billed.
        """
        self._require_started()
        self._mark_open_items("incomplete")
        self._terminal = True
        self._status = "incomplete" if reason == "disconnect" else "cancelled"
        if self._usage is None and usage is not None:
            self._usage = objects.usage_object(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            )
        return self._response(with_output=True)

    def snapshot(self) -> dict[str, Any]:
        """The Response as of now (partial output, current statuses), e.g. for storing."""
        return self._response(with_output=True)

    def stamp_extra(self, event: Event) -> Event:
        """Number an event that is not part of the response's own lifecycle (the
        ``response.rate_limits.updated`` event), so that the stream stays one numbered series."""
        return self._stamp([event])[0]

    # --- reasoning summaries ---

    def add_reasoning_summary(
        self, chunks: Iterable[str], *, item_id: str | None = None
    ) -> list[Event]:
        """One whole summary part: ``reasoning_summary_part.added``, a
        ``reasoning_summary_text.delta`` per chunk, ``.done``, ``reasoning_summary_part.done``."""
        out = self.open_summary_part(item_id=item_id)
        for chunk in chunks:
            out += self.feed_summary(chunk)
        out += self.close_summary_part()
        return out

    def open_summary_part(self, *, item_id: str | None = None) -> list[Event]:
        """Start a new summary part on reasoning item ``item_id`` (default: the latest one)."""
        item = self._summary_target(item_id)
        if item.summary_open:
            raise StreamStateError(f"a summary part of {item.item_id} is already open")
        out = self._activate()
        item.summaries.append(TextBuffer())
        item.summary_open = True
        out.append(
            ev.reasoning_summary_part_added(
                item_id=item.item_id,
                output_index=item.output_index,
                summary_index=len(item.summaries) - 1,
                part=objects.summary_text_part(),
            )
        )
        return self._stamp(out)

    def add_summary_usage(self, usage: Usage) -> None:
        """A reasoning summary is a second engine call. Its tokens join this response's usage (its
        output as reasoning tokens), so the usage a client sees is what the ledger bills."""
        current = self._usage or objects.usage_object(input_tokens=0, output_tokens=0)
        self._usage = objects.usage_object(
            input_tokens=current["input_tokens"] + usage.input_tokens,
            output_tokens=current["output_tokens"] + usage.output_tokens,
            cached_tokens=current["input_tokens_details"]["cached_tokens"] + usage.cached_tokens,
            reasoning_tokens=current["output_tokens_details"]["reasoning_tokens"]
            + usage.output_tokens,
        )

    def feed_summary(self, delta: str) -> list[Event]:
        """Append text to the open summary part."""
        item = self._open_summary_item()
        out = self._activate()
        if delta:
            item.summaries[-1].append(delta)
            out.append(
                ev.reasoning_summary_text_delta(
                    item_id=item.item_id,
                    output_index=item.output_index,
                    summary_index=len(item.summaries) - 1,
                    delta=delta,
                )
            )
        return self._stamp(out)

    def close_summary_part(self) -> list[Event]:
        item = self._open_summary_item()
        out = self._activate()
        out += self._close_summary(item)
        return self._stamp(out)

    def close_reasoning(self, *, item_id: str | None = None) -> list[Event]:
        """Close a reasoning item kept open for its summary (``finish`` does it otherwise)."""
        item = self._summary_target(item_id)
        out = self._activate()
        out += self._close_reasoning(item, status="completed")
        return self._stamp(out)

    # --- internals: numbering and response rendering ---

    def _stamp(self, events: list[Event]) -> list[Event]:
        """Give each event the next ``sequence_number``: the only place that does."""
        stamped = []
        for event in events:
            # "type" first, then the number, then the payload: reads like OpenAI's own frames.
            stamped.append(
                {"type": event["type"], "sequence_number": self._next_sequence_number} | event
            )
            self._next_sequence_number += 1
        return stamped

    def _response(self, *, with_output: bool | None = None) -> dict[str, Any]:
        # created/queued/in_progress carry an empty output and null usage (§3.4); anything
        # rendered after the end carries the items.
        if with_output is None:
            with_output = self._terminal
        return objects.response_object(
            response_id=self.response_id,
            created_at=self.created_at,
            echo=self._echo,
            status=self._status or "in_progress",
            output=[item.render() for item in self._items] if with_output else [],
            usage=self._usage if with_output else None,
            error=self._error,
            incomplete_details=self._incomplete_details,
            completed_at=self._completed_at,
        )

    def _require_started(self) -> None:
        if self._status is None:
            raise StreamStateError("start() must come first")
        if self._terminal:
            raise StreamStateError(f"the response already ended ({self._status})")

    def _activate(self) -> list[Event]:
        """Unstamped ``response.in_progress`` if still queued, else nothing."""
        self._require_started()
        if self._status != "queued":
            return []
        self._status = "in_progress"
        return [ev.response_in_progress(self._response())]

    # --- internals: deltas ---

    def _on_text(self, delta: TextDelta) -> list[Event]:
        logprobs = delta.logprobs if self._include_logprobs else []
        # vLLM can report a token whose text is still held back (a partial UTF-8 sequence):
        # keep its logprob, but never open an item for nothing.
        if not delta.text and not logprobs:
            return []
        out = self._end_reasoning_text()
        message = self._message
        if message is None:
            message = self._message = MessageState(
                item_id=self._new_id("msg"), output_index=len(self._items)
            )
            self._items.append(message)
            out.append(
                ev.output_item_added(
                    output_index=message.output_index,
                    item=objects.message_item(item_id=message.item_id, status="in_progress"),
                )
            )
            out.append(
                ev.content_part_added(
                    item_id=message.item_id,
                    output_index=message.output_index,
                    content_index=0,
                    part=objects.output_text_part(),
                )
            )
        message.text.append(delta.text)
        message.logprobs.extend(logprobs)
        out.append(
            ev.output_text_delta(
                item_id=message.item_id,
                output_index=message.output_index,
                content_index=0,
                delta=delta.text,
                logprobs=objects.delta_logprobs(logprobs),
            )
        )
        return out

    def _on_reasoning(self, delta: ReasoningDelta) -> list[Event]:
        if not delta.text:
            return []
        out: list[Event] = []
        item = self._reasoning
        if item is None or not item.content_open:
            out += self._close_message()
            item = self._reasoning = ReasoningState(
                item_id=self._new_id("rs"), output_index=len(self._items)
            )
            self._items.append(item)
            out.append(
                ev.output_item_added(
                    output_index=item.output_index,
                    item=objects.reasoning_item(item_id=item.item_id, status="in_progress"),
                )
            )
            out.append(
                ev.content_part_added(
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=0,
                    part=objects.reasoning_text_part(),
                )
            )
        item.content.append(delta.text)
        out.append(
            ev.reasoning_text_delta(
                item_id=item.item_id,
                output_index=item.output_index,
                content_index=0,
                delta=delta.text,
            )
        )
        return out

    def _on_tool_call_start(self, delta: ToolCallStart) -> list[Event]:
        if delta.index in self._calls:
            # Some upstreams repeat id/name on later chunks; the item was announced already.
            return []
        out = self._end_reasoning_text() + self._close_message()
        call_id = delta.call_id
        # Keep the engine's id when it is OpenAI-shaped and unique here (the SDK's stream
        # helper identifies function calls by call_id), else mint one.
        if not ids.looks_like_call_id(call_id) or call_id in self._call_ids:
            call_id = self._new_id("call")
        self._call_ids.add(call_id)
        call = FunctionCallState(
            item_id=self._new_id("fc"),
            output_index=len(self._items),
            call_id=call_id,
            name=delta.name,
        )
        self._calls[delta.index] = call
        self._items.append(call)
        out.append(ev.output_item_added(output_index=call.output_index, item=call.render()))
        return out

    def _require_open_call(self, index: int) -> FunctionCallState:
        call = self._calls.get(index)
        if call is None:
            raise StreamProtocolError(f"arguments for tool call {index} before its start")
        if call.status != "in_progress":
            raise StreamProtocolError(f"arguments for tool call {index} after it ended")
        return call

    def _on_tool_call_arguments(self, delta: ToolCallArgumentsDelta) -> list[Event]:
        call = self._require_open_call(delta.index)
        if not delta.delta:
            return []
        call.arguments.append(delta.delta)
        return [
            ev.function_call_arguments_delta(
                item_id=call.item_id, output_index=call.output_index, delta=delta.delta
            )
        ]

    # --- internals: closing items ---

    def _close_message(self, *, status: ItemStatus = "completed") -> list[Event]:
        message = self._message
        if message is None:
            return []
        self._message = None
        text = message.text.value()
        message.status = status
        return [
            ev.output_text_done(
                item_id=message.item_id,
                output_index=message.output_index,
                content_index=0,
                text=text,
                logprobs=objects.delta_logprobs(message.logprobs),
            ),
            ev.content_part_done(
                item_id=message.item_id,
                output_index=message.output_index,
                content_index=0,
                part=message.part(),
            ),
            ev.output_item_done(output_index=message.output_index, item=message.render()),
        ]

    def _end_reasoning_text(self) -> list[Event]:
        """The engine moved past reasoning: close its text, and the item unless kept for a
        summary."""
        item = self._reasoning
        if item is None or not item.content_open:
            return []
        if self._keep_reasoning_open:
            return self._close_reasoning_content(item)
        return self._close_reasoning(item, status="completed")

    def _close_reasoning_content(self, item: ReasoningState) -> list[Event]:
        if not item.content_open:
            return []
        item.content_open = False
        text = item.content.value()
        return [
            ev.reasoning_text_done(
                item_id=item.item_id, output_index=item.output_index, content_index=0, text=text
            ),
            ev.content_part_done(
                item_id=item.item_id,
                output_index=item.output_index,
                content_index=0,
                part=objects.reasoning_text_part(text),
            ),
        ]

    def _close_summary(self, item: ReasoningState, *, incomplete: bool = False) -> list[Event]:
        if not item.summary_open:
            return []
        item.summary_open = False
        index = len(item.summaries) - 1
        text = item.summaries[index].value()
        return [
            ev.reasoning_summary_text_done(
                item_id=item.item_id, output_index=item.output_index, summary_index=index, text=text
            ),
            ev.reasoning_summary_part_done(
                item_id=item.item_id,
                output_index=item.output_index,
                summary_index=index,
                part=objects.summary_text_part(text),
                incomplete=incomplete,
            ),
        ]

    def _close_reasoning(self, item: ReasoningState, *, status: ItemStatus) -> list[Event]:
        if item.status != "in_progress":
            return []
        out = self._close_reasoning_content(item)
        out += self._close_summary(item, incomplete=status == "incomplete")
        item.status = status
        if self._encrypt_reasoning is not None:
            item.encrypted_content = self._encrypt_reasoning(
                item.item_id, item.content.value(), [part.value() for part in item.summaries]
            )
        out.append(ev.output_item_done(output_index=item.output_index, item=item.render()))
        if self._announce_encrypted and item.encrypted_content is not None:
            out.append(
                ev.response_additional_context(
                    item_id=item.item_id,
                    output_index=item.output_index,
                    encrypted_content=item.encrypted_content,
                )
            )
        return out

    def _close_call(self, call: FunctionCallState, *, status: ItemStatus) -> list[Event]:
        if call.status != "in_progress":
            return []
        call.status = status
        # Arguments stay the model's raw string even when it is not valid JSON: the item
        # stays well-formed and the client sees exactly what the model produced.
        arguments = call.arguments.value()
        return [
            ev.function_call_arguments_done(
                item_id=call.item_id,
                output_index=call.output_index,
                name=call.name,
                arguments=arguments,
            ),
            ev.output_item_done(output_index=call.output_index, item=call.render()),
        ]

    def _close_all(self, *, cut: bool) -> list[Event]:
        out: list[Event] = []
        last = self._items[-1] if self._items else None
        for item in self._items:
            status: ItemStatus = "incomplete" if cut and item is last else "completed"
            if isinstance(item, MessageState):
                if item is self._message:
                    out += self._close_message(status=status)
            elif isinstance(item, ReasoningState):
                out += self._close_reasoning(item, status=status)
            else:
                out += self._close_call(item, status=status)
        return out

    def _mark_open_items(self, status: ItemStatus) -> None:
        """Set the status of unfinished items without emitting anything (fail, interrupt)."""
        for item in self._items:
            if item.status == "in_progress":
                item.status = status
        self._message = None

    # --- internals: summary targets ---

    # Both resolve their item before any state changes (see feed), hence the started check.

    def _summary_target(self, item_id: str | None) -> ReasoningState:
        self._require_started()
        if item_id is None:
            item = self._reasoning
        else:
            item = next(
                (i for i in self._items if isinstance(i, ReasoningState) and i.item_id == item_id),
                None,
            )
        if item is None:
            raise StreamStateError("no reasoning item to summarize")
        if item.status != "in_progress":
            raise StreamStateError(
                f"reasoning item {item.item_id} is already closed; build with reasoning_summary=True"
            )
        return item

    def _open_summary_item(self) -> ReasoningState:
        self._require_started()
        for item in self._items:
            if isinstance(item, ReasoningState) and item.summary_open:
                return item
        raise StreamStateError("no summary part is open")
