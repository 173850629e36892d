"""Per-item state the :class:`~responses.streaming.builder.StreamBuilder` accumulates.

One small mutable dataclass per output item kind (message, reasoning, function call), each able
to render itself as the item dict of :mod:`responses.streaming.objects`, plus the append-only
:class:`TextBuffer` their streamed texts go into. This is all the builder remembers of a stream,
so its memory stays bounded: the item contents, never the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engines.runtime.types import TokenLogprob
from responses.streaming import objects
from responses.streaming.objects import ItemStatus


class TextBuffer:
    """An append-only string for per-token deltas.

    A list of every delta costs ~50 bytes of object overhead per token, and ``io.StringIO``
    stores 4 bytes per character; both matter at a thousand open streams. Instead the
    pieces are merged like a binary counter — a piece is merged into its left neighbour once it
    is at least as long — so there are O(log n) pieces, each character is copied O(log n)
    times, and the text is held as compact ``str`` objects.
    """

    __slots__ = ("_pieces",)

    def __init__(self) -> None:
        self._pieces: list[str] = []

    def append(self, text: str) -> None:
        pieces = self._pieces
        pieces.append(text)
        while len(pieces) > 1 and len(pieces[-2]) <= len(pieces[-1]):
            last = pieces.pop()
            pieces[-1] += last

    def value(self) -> str:
        return "".join(self._pieces)


@dataclass(slots=True, kw_only=True)
class MessageState:
    item_id: str
    output_index: int
    text: TextBuffer = field(default_factory=TextBuffer)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    status: ItemStatus = "in_progress"

    def part(self) -> dict[str, Any]:
        return objects.output_text_part(
            self.text.value(), logprobs=objects.part_logprobs(self.logprobs)
        )

    def render(self) -> dict[str, Any]:
        return objects.message_item(item_id=self.item_id, status=self.status, content=[self.part()])


@dataclass(slots=True, kw_only=True)
class ReasoningState:
    item_id: str
    output_index: int
    content: TextBuffer = field(default_factory=TextBuffer)
    content_open: bool = True
    summaries: list[TextBuffer] = field(default_factory=list)
    summary_open: bool = False
    status: ItemStatus = "in_progress"
    encrypted_content: str | None = None

    def render(self) -> dict[str, Any]:
        return objects.reasoning_item(
            item_id=self.item_id,
            status=self.status,
            summary=[summary.value() for summary in self.summaries],
            content=[self.content.value()],
            encrypted_content=self.encrypted_content,
        )


@dataclass(slots=True, kw_only=True)
class FunctionCallState:
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: TextBuffer = field(default_factory=TextBuffer)
    status: ItemStatus = "in_progress"

    def render(self) -> dict[str, Any]:
        return objects.function_call_item(
            item_id=self.item_id,
            call_id=self.call_id,
            name=self.name,
            arguments=self.arguments.value(),
            status=self.status,
        )


ItemState = MessageState | ReasoningState | FunctionCallState
