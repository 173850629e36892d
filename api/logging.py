"""Request-scoped logging: every log line of a request carries its request id (L7), and nothing
that looks like an API key ever reaches a log handler."""

from __future__ import annotations

import contextvars
import logging
import re

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
