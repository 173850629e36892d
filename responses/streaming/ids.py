"""Object ids in OpenAI's shapes: ``resp_``, ``msg_``, ``fc_``, ``rs_`` and ``call_``.

OpenAI's item ids are a prefix plus 48 lowercase hex characters (``resp_`` carries 50); call ids
are ``call_`` plus 24 base62 characters. Clients treat them as opaque strings, but some log
parsers and proxies match on the prefix, so we keep both the prefix and a similar length.
All randomness comes from :mod:`secrets`: ids are not guessable, so they can double as
capability-free lookup keys without leaking how many objects exist.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Literal

IdPrefix = Literal["resp", "msg", "fc", "rs", "call"]

_BASE62 = string.ascii_letters + string.digits
_HEX_LENGTH: dict[str, int] = {"resp": 50, "msg": 48, "fc": 48, "rs": 48}
_CALL_ID_LENGTH = 24

# What we accept from an engine as a call id: OpenAI's own form, kept verbatim so ids stay
# identical across a round trip through clients that generate their own.
_CALL_ID_RE = re.compile(r"call_[A-Za-z0-9_-]{1,96}")


def new_id(prefix: IdPrefix) -> str:
    """A fresh random id with ``prefix`` (without the underscore, e.g. ``"msg"``)."""
    if prefix == "call":
        return "call_" + "".join(secrets.choice(_BASE62) for _ in range(_CALL_ID_LENGTH))
    length = _HEX_LENGTH[prefix]
    return f"{prefix}_{secrets.token_hex(length // 2)}"


def response_id() -> str:
    return new_id("resp")


def message_id() -> str:
    return new_id("msg")


def function_call_id() -> str:
    return new_id("fc")


def reasoning_id() -> str:
    return new_id("rs")


def call_id() -> str:
    return new_id("call")


def looks_like_call_id(value: str) -> bool:
    """Whether ``value`` already is an OpenAI-style call id (``call_…``) we may pass through."""
    return _CALL_ID_RE.fullmatch(value) is not None
