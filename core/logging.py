"""Request-scoped logging: every log line of a request carries its request id, and nothing
that looks like an API key ever reaches a log handler."""

from __future__ import annotations

import contextvars
import logging
import re
import unicodedata

# Set by the gateway middleware for the duration of a request. contextvars follow the request
# into sync_to_async threads and into tasks it spawns, so ORM and engine logs carry it too.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default="-"
)

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_-]{8,}")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


def redact(text: str) -> str:
    return _KEY_PATTERN.sub(lambda match: match.group(0)[:6] + "…[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    """Defence in depth: the code never logs keys, but a library might echo a header."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sk-" in message:
            record.msg = redact(message)
            record.args = None
        return True


def escape_control(text: str) -> str:
    """Control and line-separator characters as visible escapes (``\\n``, ``\\x00``,
    ``\\u2028``): a value from a request (a decoded path with ``%0a``) cannot start a forged
    log line or write a NUL. Only called with text that has such a character."""
    out = []
    for char in text:
        if char == "\\" or not _is_control(char):
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class EscapeControlCharactersFilter(logging.Filter):
    """The text arguments of every log call are escaped: request data reaches logs through
    arguments (paths, headers, ids), never through format strings, and a format string's own
    newlines (tracebacks are separate) stay as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            if any(isinstance(arg, str) and _CONTROL.search(arg) for arg in args):
                record.args = tuple(
                    escape_control(arg) if isinstance(arg, str) and _CONTROL.search(arg) else arg
                    for arg in args
                )
        elif isinstance(args, dict) and args:
            record.args = {
                key: escape_control(arg) if isinstance(arg, str) and _CONTROL.search(arg) else arg
                for key, arg in args.items()
            }
        return True
