"""Responses vocabulary → chat-completions vocabulary, for the engine seam (``GenerationRequest``).

* :func:`build_chat_messages` — instructions + chain history + new input items → ``messages``;
* :func:`build_chat_tools` — Responses function tools → chat ``tools``;
* :func:`build_tool_choice` — ``tool_choice`` (incl. ``allowed_tools``) → chat ``tool_choice``
  and the tools the model may see;
* :func:`build_response_format` — ``text.format`` → chat ``response_format``.

Items are the canonical or stored shapes of :mod:`.input_items` / :mod:`.items` (both work:
ids and statuses are ignored). Pure functions; the only error raised is the 400 OpenAI gives for
a tool output without its call or a call without its output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from core.errors import InvalidRequest
from responses.requests import media

# Used when a function tool declares ``parameters: null``: several chat templates read
# ``function.parameters.properties`` unconditionally.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


# --- messages --------------------------------------------------------------------------------


def build_chat_messages(
    *,
    instructions: str | None,
    history_items: Sequence[dict[str, Any]],
    input_items: Sequence[dict[str, Any]],
    include_reasoning: bool = True,
) -> list[dict[str, Any]]:
    """The chat ``messages`` for one generation.

    ``history_items`` are the previous responses' input and output items in chain order (their
    ``instructions`` are deliberately not carried: OpenAI swaps them per request). Mapping:

    * ``instructions`` → a leading ``system`` message;
    * user → ``user``; system and developer → ``system`` (chat templates know no ``developer``);
    * assistant message and the ``function_call`` items right after it → one ``assistant``
      message with ``content`` and ``tool_calls`` (parallel calls share one message, which is how
      the model produced them);
    * ``function_call_output`` → ``tool`` with ``tool_call_id``;
    * ``reasoning`` items with raw ``content`` → the ``reasoning`` field of the assistant message
      that follows them (vLLM 0.32, the engine here, hands it to chat templates with interleaved
      thinking; templates without it ignore the field). Summaries are never sent: they are not what the model
      thought. ``include_reasoning=False`` drops reasoning entirely.
    """
    _check_tool_pairing(history_items, input_items)
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    builder = _AssistantBuilder(messages)
    for item in [*history_items, *input_items]:
        kind = item.get("type", "message")
        if kind == "message":
            if item["role"] == "assistant":
                builder.add_text(_assistant_text(item["content"]))
            else:
                builder.flush()
                role = "user" if item["role"] == "user" else "system"
                messages.append({"role": role, "content": _user_content(item["content"])})
        elif kind == "function_call":
            builder.add_tool_call(_tool_call(item))
        elif kind == "function_call_output":
            builder.flush()
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _output_text(item["output"]),
                }
            )
        elif kind == "reasoning":
            if include_reasoning:
                builder.add_reasoning(_reasoning_text(item))
        elif kind == "item_reference":
            raise ValueError("resolve item references before translating input items")
        else:
            raise ValueError(f"not a canonical input item type: {kind!r}")
    builder.flush()
    return messages


class _AssistantBuilder:
    """Accumulates consecutive assistant-side items into one chat assistant message."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._messages = messages
        self._open: dict[str, Any] | None = None
        self._reasoning: list[str] = []

    def add_reasoning(self, text: str) -> None:
        if not text:
            return
        # Reasoning precedes what it produced: after an assistant message or call, a new
        # reasoning block starts a new assistant turn.
        if self._open is not None:
            self.flush()
        self._reasoning.append(text)

    def add_text(self, text: str) -> None:
        # Two assistant messages in a row stay two messages; text after tool calls starts anew.
        if self._open is not None:
            self.flush()
        self._open = self._start(content=text)

    def add_tool_call(self, call: dict[str, Any]) -> None:
        if self._open is None:
            self._open = self._start(content=None)
        self._open.setdefault("tool_calls", []).append(call)

    def flush(self) -> None:
        if self._open is not None:
            self._messages.append(self._open)
        self._open = None
        # Reasoning with nothing after it (an incomplete response) has no message to attach to.
        self._reasoning = []

    def _start(self, *, content: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self._reasoning:
            message["reasoning"] = "\n".join(self._reasoning)
            self._reasoning = []
        return message


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if any(part.get("type") in ("input_image", "input_file") for part in parts):
        # Chat content parts in the client's order: images as image_url (vLLM fetches or
        # decodes them), files as their text.
        return [
            media.engine_part(part)
            if part.get("type") in ("input_image", "input_file")
            else {"type": "text", "text": part["text"]}
            for part in parts
        ]
    texts = [part["text"] for part in parts if part.get("type") in ("input_text", "output_text")]
    if len(texts) == 1:
        return texts[0]
    if not texts:
        return ""
    # Several parts stay several parts: the template (or vLLM) decides how to join them.
    return [{"type": "text", "text": text} for text in texts]


def _assistant_text(parts: list[dict[str, Any]]) -> str:
    # Parts of one assistant message are pieces of one generation: concatenate as produced.
    pieces: list[str] = []
    for part in parts:
        if part.get("type") == "refusal":
            pieces.append(part["refusal"])
        elif "text" in part:
            pieces.append(part["text"])
    return "".join(pieces)


def _output_text(output: str | list[dict[str, Any]]) -> str:
    if isinstance(output, str):
        return output
    # vLLM joins text parts of tool messages with newlines; do it here so the count is the same.
    return "\n".join(part["text"] for part in output if "text" in part)


def _reasoning_text(item: dict[str, Any]) -> str:
    return "\n".join(part["text"] for part in item.get("content") or [] if part.get("text"))


def engine_arguments(arguments: str) -> str:
    """The arguments string the engine gets for a historical call.

    vLLM parses history arguments into a dict for the chat template; text that is not a JSON
    object cannot be rendered. The stored item keeps the raw text; the engine gets ``{}``,
    which is also what vLLM 0.32 substitutes itself, but older engines would refuse the request.
    """
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return "{}"
    return arguments if isinstance(parsed, dict) else "{}"


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": engine_arguments(item["arguments"])},
    }


def _check_tool_pairing(
    history_items: Sequence[dict[str, Any]], input_items: Sequence[dict[str, Any]]
) -> None:
    """OpenAI's two 400s: an output needs an earlier call, and every call needs an output."""
    called: set[str] = set()
    answered: set[str] = set()
    offset = len(history_items)
    for position, item in enumerate([*history_items, *input_items]):
        kind = item.get("type")
        if kind == "function_call":
            called.add(item["call_id"])
        elif kind == "function_call_output":
            if item["call_id"] not in called:
                index = position - offset
                raise InvalidRequest(
                    f"No tool call found for function call output with call_id {item['call_id']}.",
                    param=f"input[{index}]" if index >= 0 else "input",
                    code="invalid_value",
                )
            answered.add(item["call_id"])
    for position, item in enumerate([*history_items, *input_items]):
        if item.get("type") == "function_call" and item["call_id"] not in answered:
            index = position - offset
            raise InvalidRequest(
                f"No tool output found for function call {item['call_id']}.",
                param=f"input[{index}]" if index >= 0 else "input",
                code="invalid_value",
            )


# --- tools, tool_choice, response_format -----------------------------------------------------


def build_chat_tools(tools: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses function tools (flat) → chat tools (``{"type": "function", "function": …}``)."""
    chat_tools: list[dict[str, Any]] = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        parameters = tool.get("parameters")
        function["parameters"] = parameters if parameters is not None else dict(_NO_PARAMETERS)
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        chat_tools.append({"type": "function", "function": function})
    return chat_tools


def build_tool_choice(
    *, tool_choice: str | dict[str, Any], tools: Sequence[dict[str, Any]]
) -> tuple[str | dict[str, Any] | None, list[dict[str, Any]]]:
    """``(chat tool_choice, chat tools)`` for a validated ``tool_choice`` and Responses ``tools``.

    ``allowed_tools`` has no chat-completions equivalent, so it is enforced by what the model is
    shown: only the allowed functions, with ``auto`` or ``required``. Without tools there is no
    choice to make (vLLM refuses ``tool_choice`` without ``tools``): ``(None, [])``.
    """
    if not tools:
        return None, []
    if isinstance(tool_choice, str):
        return tool_choice, build_chat_tools(tools)
    if tool_choice["type"] == "function":
        return (
            {"type": "function", "function": {"name": tool_choice["name"]}},
            build_chat_tools(tools),
        )
    if tool_choice["type"] == "allowed_tools":
        allowed = {entry["name"] for entry in tool_choice["tools"]}
        filtered = [tool for tool in tools if tool["name"] in allowed]
        return tool_choice["mode"], build_chat_tools(filtered)
    raise ValueError(f"not a validated tool_choice: {tool_choice!r}")


def build_response_format(text_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` → chat ``response_format`` (None for plain text)."""
    if text_format is None or text_format["type"] == "text":
        return None
    if text_format["type"] == "json_object":
        return {"type": "json_object"}
    if text_format["type"] == "json_schema":
        json_schema: dict[str, Any] = {
            "name": text_format["name"],
            "schema": text_format["schema"],
            "strict": bool(text_format.get("strict")),
        }
        if text_format.get("description") is not None:
            json_schema["description"] = text_format["description"]
        return {"type": "json_schema", "json_schema": json_schema}
    raise ValueError(f"not a validated text.format: {text_format!r}")
