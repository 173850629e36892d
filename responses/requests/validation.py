"""Request parsing for the Responses endpoints: JSON body in, frozen typed request out.

Three entry points, one per endpoint that takes client parameters:

* :func:`parse_create_request` — ``POST /v1/responses`` (reference §2.1) → :class:`CreateResponseRequest`;
* :func:`parse_input_tokens_request` — ``POST /v1/responses/input_tokens`` →
  :class:`InputTokensRequest`;
* :func:`parse_list_input_items_query` — ``GET /v1/responses/{id}/input_items`` →
  :class:`ListInputItemsQuery`.

Below them, one ``_parse_<param>`` function per parameter (shared by create and input_tokens where
the parameter is the same). The item-level rules live in :mod:`.input_items`, tools and
``tool_choice`` in :mod:`.tools`, and the error wording in :mod:`.checks`.

Everything is pure: no database, no I/O. Semantics that need stored state (``previous_response_id``
must exist and belong to the caller, ``item_reference`` resolution, allowed service tiers) are the
service's job; this module only guarantees the request is well-formed and normalized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from responses.requests import checks as c
from responses.requests.input_items import ParsedInput, parse_input
from responses.requests.schemas import check_schema
from responses.requests.tools import parse_tool_choice, parse_tools

Truncation = Literal["auto", "disabled"]

# --- vocabularies (SDK 3.57.0 / reference §2.1) ----------------------------------------------

INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)
# The include values that change what this platform returns; the others name tools or inputs it
# does not have and are accepted as documented no-ops.
EFFECTIVE_INCLUDES = frozenset({"message.output_text.logprobs", "reasoning.encrypted_content"})

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
REASONING_SUMMARIES = ("auto", "concise", "detailed")
REASONING_CONTEXTS = ("auto", "current_turn", "all_turns")
VERBOSITIES = ("low", "medium", "high")
TRUNCATIONS = ("auto", "disabled")
PROMPT_CACHE_RETENTIONS = ("in_memory", "24h")
COMPLETION_WINDOWS = ("soonest", "2h", "8h")

# Every tier OpenAI documents is accepted; the engine has three queues, so each maps onto
# auto/default/flex/priority (``fast`` is what OpenAI itself reports as ``priority``).
SERVICE_TIER_MAP: dict[str, str] = {
    "auto": "auto",
    "default": "default",
    "flex": "flex",
    "priority": "priority",
    "scale": "default",
    "fast": "priority",
    "ultrafast": "priority",
}

METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_LENGTH = 64
METADATA_MAX_VALUE_LENGTH = 512
PROMPT_CACHE_KEY_MAX_LENGTH = 64
# The OpenAPI snapshot says 64; the SDK 3.57.0 docs say 128. Accept the larger so nothing OpenAI
# accepts is refused here.
SAFETY_IDENTIFIER_MAX_LENGTH = 128
PERSONALITY_MAX_LENGTH = 64
MIN_MAX_OUTPUT_TOKENS = 16
MAX_TOP_LOGPROBS = 20
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# OpenAI's bound for count-like integers (max_output_tokens, max_tool_calls): a 32-bit integer.
# Beyond it nothing is meaningful, and the ledger's integer columns could not hold the value.
MAX_COUNT = 2**31 - 1

# Sampling extras vLLM understands and clients send through the SDK's ``extra_body``; passed to
# the engine untouched. Anything else vLLM-specific (priority, cache_salt, request_id, …) is
# platform policy and stays an unknown parameter.
VLLM_EXTRA_PARAMS = ("top_k", "repetition_penalty", "seed", "stop")

CREATE_PARAMS = frozenset(
    {
        "access_programs", "background", "background_options", "context_management",
        "conversation", "image", "include", "input", "instructions", "max_output_tokens",
        "max_tool_calls", "metadata", "model", "moderation", "parallel_tool_calls",
        "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options",
        "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store",
        "stream", "stream_options", "temperature", "text", "tool_choice", "tools",
        "top_logprobs", "top_p", "truncation", "user",
        # Open Responses sampling penalties, echoed on the Response object.
        "presence_penalty", "frequency_penalty",
        *VLLM_EXTRA_PARAMS,
    }
)  # fmt: skip

INPUT_TOKENS_PARAMS = frozenset(
    {
        "conversation", "input", "instructions", "model", "parallel_tool_calls", "personality",
        "previous_response_id", "reasoning", "text", "tool_choice", "tools", "truncation",
    }
)  # fmt: skip


def default_text() -> dict[str, Any]:
    return {"format": {"type": "text"}, "verbosity": "medium"}


# --- request types ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResponseRequest:
    """A validated ``POST /v1/responses`` body; every §2.1 parameter, normalized and defaulted.

    Dict and tuple fields hold the normalized wire shapes the Response object echoes
    (``tools``, ``tool_choice``, ``text``, ``reasoning``); ``input`` holds canonical items
    (see :mod:`.input_items`). Parameters this platform refuses (``moderation``) are always None here: a request carrying them never
    parses.
    """

    model: str
    input: tuple[dict[str, Any], ...] = ()
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | None = None
    """The conversation's id (``conversation`` as a string or ``{"id"}``)."""
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    max_tool_calls: int | None = None
    text: dict[str, Any] = field(default_factory=default_text)
    reasoning: dict[str, Any] | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    include: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    store: bool = True
    background: bool = False
    background_options: dict[str, Any] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    truncation: Truncation = "disabled"
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: str = "auto"
    """Mapped onto ``auto|default|flex|priority`` (what tier resolution understands)."""
    requested_service_tier: str | None = None
    """The tier exactly as the client sent it (``scale``, ``fast`` …), or None."""
    prompt: dict[str, Any] | None = None
    """``{"id", "version", "variables"}``; the service resolves and renders it."""
    compact_threshold: int | None = None
    """From ``context_management``: compact past this many tokens (0: only to fit), or None."""
    moderation: None = None
    access_programs: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Sampling parameters for vLLM beyond the standard ones (top_k, repetition_penalty, seed,
    stop, presence/frequency penalties), only those the client set."""
    invalid_arguments: tuple[str, ...] = ()
    """``input[i].arguments`` params whose function-call arguments are not valid JSON."""

    @property
    def logprobs(self) -> bool:
        """Whether output_text parts carry logprobs (vLLM computes them only then)."""
        return "message.output_text.logprobs" in self.include

    @property
    def include_encrypted_reasoning(self) -> bool:
        return "reasoning.encrypted_content" in self.include

    @property
    def include_obfuscation(self) -> bool:
        """Obfuscation is on by default for streams (reference §2.1 ``stream_options``)."""
        if not self.stream:
            return False
        return bool((self.stream_options or {}).get("include_obfuscation", True))

    @property
    def text_format(self) -> dict[str, Any]:
        return self.text["format"]

    @property
    def reasoning_effort(self) -> str | None:
        return (self.reasoning or {}).get("effort")

    @property
    def reasoning_summary(self) -> str | None:
        return (self.reasoning or {}).get("summary")


@dataclass(frozen=True, slots=True, kw_only=True)
class InputTokensRequest:
    """A validated ``POST /v1/responses/input_tokens`` body (``#TokenCountsBody``)."""

    model: str
    input: tuple[dict[str, Any], ...] = ()
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = field(default_factory=default_text)
    reasoning: dict[str, Any] | None = None
    truncation: Truncation = "disabled"
    personality: str | None = None
    invalid_arguments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListInputItemsQuery:
    """``GET /v1/responses/{id}/input_items`` query parameters."""

    after: str | None = None
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    include: tuple[str, ...] = ()


# --- entry points ----------------------------------------------------------------------------


def parse_create_request(body: Any) -> CreateResponseRequest:
    """Validate a ``POST /v1/responses`` body; raises ``InvalidRequest`` naming the param."""
    obj = c.expect_object(body, param=None)
    c.reject_unknown_keys(obj, CREATE_PARAMS, prefix=None)
    model = _parse_model(obj)
    previous_response_id = _parse_previous_response_id(obj.get("previous_response_id"))
    conversation = parse_conversation_param(
        obj.get("conversation"), previous_response_id=previous_response_id
    )
    prompt = parse_prompt_param(obj.get("prompt"))
    _refuse_unsupported(obj)
    # A conversation, a chain or a prompt template may already hold what the model should
    # answer.
    parsed_input = _parse_input_param(
        obj.get("input"),
        required=previous_response_id is None and conversation is None and prompt is None,
    )
    tools = parse_tools(obj.get("tools"))
    stream = _optional_bool(obj, "stream", default=False)
    store = _optional_bool(obj, "store", default=True)
    background = _optional_bool(obj, "background", default=False)
    if background and not store:
        c.fail(
            "Background mode requires 'store' to be true: a background response is retrieved "
            "by polling its id, so it must be stored.",
            param="background",
            code="invalid_value",
        )
    requested_tier = _optional_enum(obj, "service_tier", tuple(SERVICE_TIER_MAP))
    return CreateResponseRequest(
        model=model,
        input=parsed_input.items,
        instructions=_optional_string(obj, "instructions"),
        previous_response_id=previous_response_id,
        conversation=conversation,
        tools=tools,
        tool_choice=parse_tool_choice(obj.get("tool_choice"), tools=tools),
        parallel_tool_calls=_optional_bool(obj, "parallel_tool_calls", default=True),
        max_tool_calls=_optional_int(obj, "max_tool_calls", minimum=1, maximum=MAX_COUNT),
        text=_parse_text(obj.get("text")),
        reasoning=_parse_reasoning(obj.get("reasoning")),
        max_output_tokens=_optional_int(
            obj, "max_output_tokens", minimum=MIN_MAX_OUTPUT_TOKENS, maximum=MAX_COUNT
        ),
        temperature=_optional_number(obj, "temperature", minimum=0, maximum=2),
        top_p=_optional_number(obj, "top_p", minimum=0, maximum=1),
        top_logprobs=_optional_int(obj, "top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS),
        presence_penalty=_optional_number(obj, "presence_penalty", minimum=-2, maximum=2),
        frequency_penalty=_optional_number(obj, "frequency_penalty", minimum=-2, maximum=2),
        include=_parse_include(obj.get("include"), param="include"),
        metadata=parse_metadata(obj.get("metadata")),
        store=store,
        background=background,
        background_options=_parse_background_options(
            obj.get("background_options"), background=background, stream=stream
        ),
        stream=stream,
        stream_options=_parse_stream_options(obj.get("stream_options"), stream=stream),
        truncation=_parse_truncation(obj.get("truncation")),
        user=_optional_string(obj, "user"),
        safety_identifier=_optional_string(
            obj, "safety_identifier", max_length=SAFETY_IDENTIFIER_MAX_LENGTH
        ),
        prompt_cache_key=_optional_string(
            obj, "prompt_cache_key", max_length=PROMPT_CACHE_KEY_MAX_LENGTH
        ),
        prompt_cache_retention=_optional_enum(
            obj, "prompt_cache_retention", PROMPT_CACHE_RETENTIONS
        ),
        prompt_cache_options=_parse_prompt_cache_options(obj.get("prompt_cache_options")),
        service_tier=SERVICE_TIER_MAP[requested_tier] if requested_tier else "auto",
        requested_service_tier=requested_tier,
        access_programs=_parse_access_programs(obj.get("access_programs")),
        image=_parse_image(obj.get("image")),
        extra_body=_parse_vllm_extras(obj),
        invalid_arguments=parsed_input.invalid_arguments,
        prompt=prompt,
        compact_threshold=parse_context_management(obj.get("context_management")),
    )


def parse_input_tokens_request(body: Any) -> InputTokensRequest:
    """Validate a ``POST /v1/responses/input_tokens`` body (same rules as create)."""
    obj = c.expect_object(body, param=None)
    c.reject_unknown_keys(obj, INPUT_TOKENS_PARAMS, prefix=None)
    model = _parse_model(obj)
    previous_response_id = _parse_previous_response_id(obj.get("previous_response_id"))
    conversation = parse_conversation_param(
        obj.get("conversation"), previous_response_id=previous_response_id
    )
    # Counting the tokens of instructions (or tools) alone is meaningful: input may be absent.
    parsed_input = _parse_input_param(obj.get("input"), required=False)
    tools = parse_tools(obj.get("tools"))
    return InputTokensRequest(
        model=model,
        input=parsed_input.items,
        instructions=_optional_string(obj, "instructions"),
        previous_response_id=previous_response_id,
        conversation=conversation,
        tools=tools,
        tool_choice=parse_tool_choice(obj.get("tool_choice"), tools=tools),
        parallel_tool_calls=_optional_bool(obj, "parallel_tool_calls", default=True),
        text=_parse_text(obj.get("text")),
        reasoning=_parse_reasoning(obj.get("reasoning")),
        truncation=_parse_truncation(obj.get("truncation")),
        personality=_optional_string(obj, "personality", max_length=PERSONALITY_MAX_LENGTH),
        invalid_arguments=parsed_input.invalid_arguments,
    )


def parse_list_input_items_query(query: Mapping[str, Any]) -> ListInputItemsQuery:
    """Validate the input_items query; values may be strings or lists of strings.

    Pass ``dict(request.GET.lists())`` from a Django view. ``include`` may arrive as
    ``include`` or ``include[]`` (the SDK's bracket form). ``before`` was removed from the API and
    is accepted and ignored, like any other unknown query parameter (GET queries are not
    rejected for extra keys: proxies and SDKs add their own).
    """
    after = _query_scalar(query, "after")
    if after is not None:
        c.expect_string(after, param="after", min_length=1)
    limit_text = _query_scalar(query, "limit")
    limit = 20
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except (TypeError, ValueError):
            c.fail(
                f"Invalid type for 'limit': expected an integer, but got '{limit_text}' instead.",
                param="limit",
                code="invalid_type",
            )
        c.expect_int(limit, param="limit", minimum=1, maximum=100)
    order_text = _query_scalar(query, "order")
    order = (
        "desc"
        if order_text is None
        else c.expect_enum(order_text, param="order", allowed=("asc", "desc"))
    )
    values: list[Any] = []
    for key in ("include", "include[]"):
        raw = query.get(key)
        if raw is not None:
            values.extend(raw if isinstance(raw, list | tuple) else [raw])
    return ListInputItemsQuery(
        after=after,
        limit=limit,
        order=order,  # type: ignore[arg-type]  # checked by expect_enum
        include=_parse_include(values, param="include"),
    )


# --- parameters ------------------------------------------------------------------------------


def _parse_model(obj: dict[str, Any]) -> str:
    return c.expect_string(c.required(obj, "model", prefix=None), param="model", min_length=1)


def _parse_previous_response_id(value: Any) -> str | None:
    if value is None:
        return None
    text = c.expect_string(value, param="previous_response_id", min_length=1)
    if not text.startswith("resp_"):
        c.fail(
            f"Invalid 'previous_response_id': '{text}'. Expected an ID that begins with 'resp'.",
            param="previous_response_id",
            code="invalid_value",
        )
    return text


def parse_conversation_param(value: Any, *, previous_response_id: str | None) -> str | None:
    """``conversation``: an id or ``{"id"}`` → the id; never together with a chain."""
    if value is None:
        return None
    if isinstance(value, dict):
        c.reject_unknown_keys(value, ("id",), prefix="conversation")
        conversation_id = c.expect_string(
            c.required(value, "id", prefix="conversation"), param="conversation.id", min_length=1
        )
    elif isinstance(value, str):
        conversation_id = c.expect_string(value, param="conversation", min_length=1)
    else:
        c.fail_type(value, param="conversation", expected="one of a string or an object")
    if previous_response_id is not None:
        c.fail(
            "Cannot use both 'previous_response_id' and 'conversation': a response continues "
            "either a stored response chain or a conversation.",
            param="conversation",
            code="invalid_value",
        )
    return conversation_id


def parse_prompt_param(value: Any) -> dict[str, Any] | None:
    """``prompt: {id, version?, variables?}``; variable values are checked when the template is
    rendered (which variables exist depends on the stored version)."""
    if value is None:
        return None
    obj = c.expect_object(value, param="prompt")
    c.reject_unknown_keys(obj, ("id", "version", "variables"), prefix="prompt")
    prompt_id = c.required_string(obj, "id", prefix="prompt", min_length=1)
    version = obj.get("version")
    if version is not None:
        version = c.expect_string(version, param="prompt.version", min_length=1)
    variables = obj.get("variables")
    variables = {} if variables is None else c.expect_object(variables, param="prompt.variables")
    return {"id": prompt_id, "version": version, "variables": variables}


def parse_context_management(value: Any) -> int | None:
    """``context_management: [{"type": "compaction", "compact_threshold"?}]`` → the token count
    past which the context is compacted (0: only when it would not fit the model), or None."""
    if value is None:
        return None
    threshold: int | None = None
    for index, entry in enumerate(c.expect_array(value, param="context_management")):
        param = c.at("context_management", index)
        obj = c.expect_object(entry, param=param)
        c.reject_unknown_keys(obj, ("type", "compact_threshold"), prefix=param)
        c.required_enum(obj, "type", prefix=param, allowed=("compaction",))
        raw = obj.get("compact_threshold")
        threshold = (
            0
            if raw is None
            else c.expect_int(raw, param=c.child(param, "compact_threshold"), minimum=1000)
        )
    return threshold


def _refuse_unsupported(obj: dict[str, Any]) -> None:
    """Parameters OpenAI documents that need machinery this platform does not have yet."""
    if obj.get("moderation") is not None:
        c.expect_object(obj["moderation"], param="moderation")
        c.fail(
            "moderation is not supported: this platform does not run moderation models.",
            param="moderation",
            code="unsupported_parameter",
        )


def _parse_input_param(value: Any, *, required: bool) -> ParsedInput:
    """``input``; may be absent only when something else (a chain) provides the context."""
    if value is None or value == []:
        if required:
            if value == []:
                c.expect_array(value, param="input", min_length=1)
            c.fail_missing("input")
        value = []
    return parse_input(value)


def _parse_text(value: Any) -> dict[str, Any]:
    if value is None:
        return default_text()
    obj = c.expect_object(value, param="text")
    c.reject_unknown_keys(obj, ("format", "verbosity"), prefix="text")
    verbosity = obj.get("verbosity")
    if verbosity is not None:
        c.expect_enum(verbosity, param="text.verbosity", allowed=VERBOSITIES)
    return {"format": _parse_text_format(obj.get("format")), "verbosity": verbosity or "medium"}


def _parse_text_format(value: Any) -> dict[str, Any]:
    param = "text.format"
    if value is None:
        return {"type": "text"}
    obj = c.expect_object(value, param=param)
    kind = c.expect_enum(
        c.required(obj, "type", prefix=param),
        param="text.format.type",
        allowed=("text", "json_object", "json_schema"),
    )
    if kind != "json_schema":
        c.reject_unknown_keys(obj, ("type",), prefix=param)
        return {"type": kind}
    c.reject_unknown_keys(obj, ("type", "name", "schema", "description", "strict"), prefix=param)
    name = c.expect_pattern(
        c.required(obj, "name", prefix=param),
        param="text.format.name",
        pattern=c.NAME_PATTERN,
        shown=c.NAME_PATTERN_TEXT,
    )
    schema = c.expect_object(c.required(obj, "schema", prefix=param), param="text.format.schema")
    check_schema(
        schema,
        param="text.format.schema",
        what=f"response_format '{name}'",
        code="invalid_json_schema",
    )
    normalized: dict[str, Any] = {"type": "json_schema", "name": name, "schema": schema}
    if obj.get("description") is not None:
        normalized["description"] = c.expect_string(
            obj["description"], param="text.format.description"
        )
    strict = obj.get("strict")
    # OpenAI's default is non-strict; the echo always states it.
    normalized["strict"] = (
        False if strict is None else c.expect_bool(strict, param="text.format.strict")
    )
    return normalized


def _parse_reasoning(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = c.expect_object(value, param="reasoning")
    c.reject_unknown_keys(
        obj, ("effort", "summary", "generate_summary", "mode", "context"), prefix="reasoning"
    )
    effort = _optional_enum(obj, "effort", REASONING_EFFORTS, prefix="reasoning")
    summary = _optional_enum(obj, "summary", REASONING_SUMMARIES, prefix="reasoning")
    legacy = _optional_enum(obj, "generate_summary", REASONING_SUMMARIES, prefix="reasoning")
    # ``generate_summary`` is the deprecated spelling of ``summary``; ``summary`` wins if both.
    normalized: dict[str, Any] = {"effort": effort, "summary": summary or legacy}
    if obj.get("mode") is not None:
        # An open string in the SDK (``standard``, ``pro``, …): recorded, not interpreted.
        normalized["mode"] = c.expect_string(obj["mode"], param="reasoning.mode", min_length=1)
    context = _optional_enum(obj, "context", REASONING_CONTEXTS, prefix="reasoning")
    if context is not None:
        normalized["context"] = context
    return normalized


def _parse_include(value: Any, *, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    seen: list[str] = []
    for index, entry in enumerate(c.expect_array(value, param=param)):
        name = c.expect_enum(entry, param=c.at(param, index), allowed=INCLUDABLE)
        if name not in seen:
            seen.append(name)
    return tuple(seen)


def parse_metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    obj = c.expect_object(value, param="metadata")
    if len(obj) > METADATA_MAX_KEYS:
        c.fail(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_KEYS} properties, but got an object with {len(obj)} properties "
            "instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    metadata: dict[str, str] = {}
    for key, entry in obj.items():
        if len(key) > METADATA_MAX_KEY_LENGTH:
            c.fail(
                f"Invalid 'metadata': key too long. Expected keys with maximum length "
                f"{METADATA_MAX_KEY_LENGTH}, but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        metadata[key] = c.expect_string(
            entry, param=c.child("metadata", key), max_length=METADATA_MAX_VALUE_LENGTH
        )
    return metadata


def _parse_background_options(
    value: Any, *, background: bool, stream: bool
) -> dict[str, Any] | None:
    if value is None:
        return None
    param = "background_options"
    obj = c.expect_object(value, param=param)
    c.reject_unknown_keys(obj, ("completion_window", "continuation_id"), prefix=param)
    normalized: dict[str, Any] = {}
    window = _optional_enum(obj, "completion_window", COMPLETION_WINDOWS, prefix=param)
    if window in ("2h", "8h") and (not background or stream):
        c.fail(
            f"The '{window}' completion window requires 'background': true and a non-streaming "
            "request.",
            param="background_options.completion_window",
            code="invalid_value",
        )
    if window is not None:
        normalized["completion_window"] = window
    if obj.get("continuation_id") is not None:
        normalized["continuation_id"] = c.expect_string(
            obj["continuation_id"], param="background_options.continuation_id"
        )
    return normalized


def _parse_stream_options(value: Any, *, stream: bool) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = c.expect_object(value, param="stream_options")
    if not stream:
        c.fail(
            "Invalid 'stream_options': only allowed when 'stream' is true.",
            param="stream_options",
            code="invalid_value",
        )
    c.reject_unknown_keys(obj, ("include_obfuscation",), prefix="stream_options")
    include = obj.get("include_obfuscation")
    return {
        "include_obfuscation": True
        if include is None
        else c.expect_bool(include, param="stream_options.include_obfuscation")
    }


def _parse_truncation(value: Any) -> Truncation:
    if value is None:
        return "disabled"
    return c.expect_enum(value, param="truncation", allowed=TRUNCATIONS)  # type: ignore[return-value]


def _parse_prompt_cache_options(value: Any) -> dict[str, Any] | None:
    # Prefix caching is automatic in vLLM (per organization): these knobs are accepted as
    # documented, recorded, and have no further effect.
    if value is None:
        return None
    param = "prompt_cache_options"
    obj = c.expect_object(value, param=param)
    c.reject_unknown_keys(obj, ("comparison_response_id", "mode", "prewarm", "ttl"), prefix=param)
    normalized: dict[str, Any] = {}
    if obj.get("comparison_response_id") is not None:
        normalized["comparison_response_id"] = c.expect_string(
            obj["comparison_response_id"], param=f"{param}.comparison_response_id"
        )
    mode = _optional_enum(obj, "mode", ("implicit", "explicit"), prefix=param)
    if mode is not None:
        normalized["mode"] = mode
    if obj.get("prewarm") is not None:
        normalized["prewarm"] = c.expect_bool(obj["prewarm"], param=f"{param}.prewarm")
    ttl = _optional_enum(obj, "ttl", ("30m", "12h"), prefix=param)
    if ttl is not None:
        normalized["ttl"] = ttl
    return normalized


def _parse_access_programs(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = c.expect_object(value, param="access_programs")
    c.reject_unknown_keys(obj, ("cyber",), prefix="access_programs")
    cyber = _optional_enum(
        obj, "cyber", ("standard", "daybreak_blue", "daybreak_red"), prefix="access_programs"
    )
    return {} if cyber is None else {"cyber": cyber}


def _parse_image(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = c.expect_object(value, param="image")
    c.reject_unknown_keys(obj, ("context_compression",), prefix="image")
    mode = _optional_enum(
        obj, "context_compression", ("auto", "enabled", "disabled"), prefix="image"
    )
    return {} if mode is None else {"context_compression": mode}


def _parse_vllm_extras(obj: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if obj.get("top_k") is not None:
        # vLLM: -1 (or 0) disables top-k; otherwise at least 1.
        extras["top_k"] = c.expect_int(obj["top_k"], param="top_k", minimum=-1)
    if obj.get("repetition_penalty") is not None:
        penalty = c.expect_number(obj["repetition_penalty"], param="repetition_penalty", maximum=2)
        if penalty <= 0:
            c.fail(
                f"Invalid 'repetition_penalty': expected a value > 0, but got {penalty:g} instead.",
                param="repetition_penalty",
                code="decimal_below_min_value",
            )
        extras["repetition_penalty"] = penalty
    if obj.get("seed") is not None:
        extras["seed"] = c.expect_int(
            obj["seed"], param="seed", minimum=_INT64_MIN, maximum=_INT64_MAX
        )
    if obj.get("stop") is not None:
        stop = obj["stop"]
        if isinstance(stop, str):
            extras["stop"] = stop
        elif isinstance(stop, list):
            extras["stop"] = [c.expect_string(s, param=c.at("stop", i)) for i, s in enumerate(stop)]
        else:
            c.fail_type(stop, param="stop", expected="one of a string or array of strings")
    for key in ("presence_penalty", "frequency_penalty"):
        if obj.get(key) is not None:
            extras[key] = c.expect_number(obj[key], param=key, minimum=-2, maximum=2)
    return extras


# --- small helpers ---------------------------------------------------------------------------


def _optional_string(
    obj: dict[str, Any], key: str, *, max_length: int | None = c.MAX_TEXT_LENGTH
) -> str | None:
    value = obj.get(key)
    return None if value is None else c.expect_string(value, param=key, max_length=max_length)


def _optional_bool(obj: dict[str, Any], key: str, *, default: bool) -> bool:
    value = obj.get(key)
    return default if value is None else c.expect_bool(value, param=key)


def _optional_int(
    obj: dict[str, Any], key: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = obj.get(key)
    return (
        None if value is None else c.expect_int(value, param=key, minimum=minimum, maximum=maximum)
    )


def _optional_number(
    obj: dict[str, Any], key: str, *, minimum: float, maximum: float
) -> float | None:
    value = obj.get(key)
    return (
        None
        if value is None
        else c.expect_number(value, param=key, minimum=minimum, maximum=maximum)
    )


def _optional_enum(
    obj: dict[str, Any], key: str, allowed: tuple[str, ...], *, prefix: str | None = None
) -> str | None:
    return c.optional_enum(obj, key, prefix=prefix, allowed=allowed)


def _query_scalar(query: Mapping[str, Any], key: str) -> Any:
    value = query.get(key)
    if isinstance(value, list | tuple):
        return value[-1] if value else None
    return value
