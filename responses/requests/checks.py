"""Validation primitives that fail the way OpenAI fails: a 400 naming the dotted ``param``.

Every check either returns the (possibly normalized) value or raises
:class:`core.errors.InvalidRequest` with OpenAI's message wording and ``code``
(``missing_required_parameter``, ``invalid_type``, ``invalid_value``,
``integer_below_min_value`` …), so a client sees the same error it would get from OpenAI.

Organized as: path helpers (:func:`child`, :func:`at`), type names for messages, then one
``expect_*`` function per JSON type, then object-shape helpers (:func:`reject_unknown_keys`,
:func:`required`). Nothing here knows about the Responses API itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NoReturn

from core.errors import InvalidRequest

# OpenAI's cap on any single text field (input strings, text parts, tool outputs): 10 MiB.
MAX_TEXT_LENGTH = 10 * 1024 * 1024

# Names of functions, tools and JSON-schema formats (OpenAI and Open Responses agree).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NAME_PATTERN_TEXT = "^[a-zA-Z0-9_-]{1,64}$"

_MISSING: Any = object()


def child(prefix: str | None, key: str) -> str:
    """``"text.format"`` + ``"name"`` → ``"text.format.name"``; top level → ``"name"``."""
    return f"{prefix}.{key}" if prefix else key


def at(prefix: str, index: int) -> str:
    """``"input"`` + 3 → ``"input[3]"``."""
    return f"{prefix}[{index}]"


def type_name(value: Any) -> str:
    """The JSON type of ``value`` with its article, as OpenAI words it ("an integer")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unsupported value"


def quoted_list(values: Iterable[str]) -> str:
    """``'a', 'b', and 'c'`` — OpenAI's way of listing supported values."""
    items = [f"'{value}'" for value in values]
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def fail(message: str, *, param: str | None, code: str | None) -> NoReturn:
    raise InvalidRequest(message, param=param, code=code)


def fail_type(value: Any, *, param: str, expected: str) -> NoReturn:
    fail(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def fail_value(value: Any, *, param: str, supported: Iterable[str]) -> NoReturn:
    fail(
        f"Invalid value: '{value}'. Supported values are: {quoted_list(supported)}.",
        param=param,
        code="invalid_value",
    )


def fail_missing(param: str) -> NoReturn:
    fail(
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def fail_unknown(param: str) -> NoReturn:
    fail(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")


# --- scalars ---------------------------------------------------------------------------------


def expect_string(
    value: Any,
    *,
    param: str,
    min_length: int | None = None,
    max_length: int | None = MAX_TEXT_LENGTH,
) -> str:
    if not isinstance(value, str):
        fail_type(value, param=param, expected="a string")
    if min_length is not None and len(value) < min_length:
        if len(value) == 0:
            fail(
                f"Invalid '{param}': empty string. Expected a string with minimum length "
                f"{min_length}, but got an empty string instead.",
                param=param,
                code="empty_string",
            )
        fail(
            f"Invalid '{param}': string too short. Expected a string with minimum length "
            f"{min_length}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_below_min_length",
        )
    if max_length is not None and len(value) > max_length:
        fail(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return value


def expect_pattern(value: Any, *, param: str, pattern: re.Pattern[str], shown: str) -> str:
    text = expect_string(value, param=param)
    if pattern.fullmatch(text) is None:
        fail(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            f"the pattern '{shown}'.",
            param=param,
            code="invalid_value",
        )
    return text


def expect_bool(value: Any, *, param: str) -> bool:
    if not isinstance(value, bool):
        fail_type(value, param=param, expected="a boolean")
    return value


def expect_int(
    value: Any, *, param: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    # bool is an int subclass in Python, but JSON ``true`` is not an integer.
    if isinstance(value, bool) or not isinstance(value, int):
        fail_type(value, param=param, expected="an integer")
    if minimum is not None and value < minimum:
        fail(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        fail(
            f"Invalid '{param}': integer above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            param=param,
            code="integer_above_max_value",
        )
    return value


def expect_number(
    value: Any, *, param: str, minimum: float | None = None, maximum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail_type(value, param=param, expected="a decimal")
    # Python's json accepts NaN/Infinity; they are not JSON numbers and no range admits them.
    if not math.isfinite(value):
        fail(f"Invalid '{param}': expected a finite number.", param=param, code="invalid_value")
    if minimum is not None and value < minimum:
        fail(
            f"Invalid '{param}': decimal below minimum value. Expected a value >= {minimum:g}, "
            f"but got {value:g} instead.",
            param=param,
            code="decimal_below_min_value",
        )
    if maximum is not None and value > maximum:
        fail(
            f"Invalid '{param}': decimal above maximum value. Expected a value <= {maximum:g}, "
            f"but got {value:g} instead.",
            param=param,
            code="decimal_above_max_value",
        )
    return float(value)


def expect_enum(value: Any, *, param: str, allowed: Collection[str]) -> str:
    if not isinstance(value, str):
        fail_type(value, param=param, expected="one of " + quoted_list(allowed))
    if value not in allowed:
        fail_value(value, param=param, supported=allowed)
    return value


# --- containers ------------------------------------------------------------------------------


def expect_object(value: Any, *, param: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        if param is None:
            fail(
                f"Invalid request body: expected a JSON object, but got {type_name(value)} "
                "instead.",
                param=None,
                code="invalid_type",
            )
        fail_type(value, param=param, expected="an object")
    return value


def expect_array(
    value: Any, *, param: str, min_length: int | None = None, max_length: int | None = None
) -> list[Any]:
    if not isinstance(value, list):
        fail_type(value, param=param, expected="an array")
    if min_length is not None and len(value) < min_length:
        fail(
            f"Invalid '{param}': empty array. Expected an array with minimum length "
            f"{min_length}, but got an empty array instead."
            if not value
            else f"Invalid '{param}': array too short. Expected an array with minimum length "
            f"{min_length}, but got an array with length {len(value)} instead.",
            param=param,
            code="empty_array" if not value else "array_below_min_length",
        )
    if max_length is not None and len(value) > max_length:
        fail(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{max_length}, but got an array with length {len(value)} instead.",
            param=param,
            code="array_above_max_length",
        )
    return value


def reject_unknown_keys(
    obj: Mapping[str, Any], allowed: Collection[str], *, prefix: str | None
) -> None:
    """400 ``unknown_parameter`` for the first key (in the client's order) not in ``allowed``."""
    for key in obj:
        if key not in allowed:
            fail_unknown(child(prefix, key))


def required(obj: Mapping[str, Any], key: str, *, prefix: str | None) -> Any:
    """``obj[key]``; absent or ``null`` → 400 ``missing_required_parameter``."""
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        fail_missing(child(prefix, key))
    return value


def required_string(
    obj: Mapping[str, Any],
    key: str,
    *,
    prefix: str | None,
    min_length: int | None = None,
    max_length: int | None = MAX_TEXT_LENGTH,
) -> str:
    return expect_string(
        required(obj, key, prefix=prefix),
        param=child(prefix, key),
        min_length=min_length,
        max_length=max_length,
    )


def required_enum(
    obj: Mapping[str, Any], key: str, *, prefix: str | None, allowed: Collection[str]
) -> str:
    return expect_enum(required(obj, key, prefix=prefix), param=child(prefix, key), allowed=allowed)


def optional_enum(
    obj: Mapping[str, Any], key: str, *, prefix: str | None, allowed: Collection[str]
) -> str | None:
    """``obj[key]`` checked against ``allowed``; absent or ``null`` → None."""
    value = obj.get(key)
    return None if value is None else expect_enum(value, param=child(prefix, key), allowed=allowed)
