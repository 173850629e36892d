"""Request handling for the Responses API, pure (no database, no I/O).

The flow a create request takes through this package, one module per step:

1. :mod:`.validation` — JSON body → :class:`CreateResponseRequest` (or the input_tokens /
   input_items variants); every parameter checked, OpenAI's 400s (via :mod:`.checks`), items
   checked by :mod:`.input_items`, tools and ``tool_choice`` by :mod:`.tools`;
2. :mod:`.items` — ``item_reference`` resolution against stored items the service supplies, then
   the stored ``input_items`` with ids (``msg_``, ``fc_``, ``fco_``, ``rs_``);
3. :mod:`.translate` — instructions + chain history + input → chat-completions ``messages``,
   ``tools``, ``tool_choice`` and ``response_format`` for ``engines.runtime.types.GenerationRequest``;
4. :mod:`.truncation` — fit the messages into the model's context (``truncation``).
"""

from __future__ import annotations

from responses.requests.items import resolve_item_references, stored_input_items
from responses.requests.translate import (
    build_chat_messages,
    build_chat_tools,
    build_response_format,
    build_tool_choice,
)
from responses.requests.truncation import FittedPrompt, TokenCounter, fit_to_context
from responses.requests.validation import (
    CreateResponseRequest,
    InputTokensRequest,
    ListInputItemsQuery,
    parse_create_request,
    parse_input_tokens_request,
    parse_list_input_items_query,
)

__all__ = [
    "CreateResponseRequest",
    "FittedPrompt",
    "InputTokensRequest",
    "ListInputItemsQuery",
    "TokenCounter",
    "build_chat_messages",
    "build_chat_tools",
    "build_response_format",
    "build_tool_choice",
    "fit_to_context",
    "parse_create_request",
    "parse_input_tokens_request",
    "parse_list_input_items_query",
    "resolve_item_references",
    "stored_input_items",
]
