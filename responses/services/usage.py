"""The Responses side of quotas. ``quotas`` knows nothing of Response objects: it admits and
settles with plain values. This module turns a response into those values (its final status
and the tokens to bill), stamps the ``response.rate_limits.updated`` events from the state a
reservation carries, and runs the sweep that settles reservations whose process died, with the
usage their stored responses recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from quotas.services.admission import Reservation
from quotas.services.ledger import TokenUsage, usage_reservations_expire
from responses.models import StoredResponse
from responses.streaming import events as ev
from responses.streaming.builder import StreamBuilder

# Without the engine's count, a streamed token is taken to be this many characters.
_CHARS_PER_STREAMED_TOKEN = 4

RATE_LIMIT_EVENTS_HEADER = "X-Rate-Limit-Events"
"""Opt-in request header: ``true`` (or ``1``, ``yes``) adds ``response.rate_limits.updated``
events to the stream, after admission and after settlement; without it (and outside the legacy
dialect, which always gets them) the stream is exactly OpenAI's."""


def usage_from_body(body: Any) -> TokenUsage | None:
    """The usage of a Response object, or None when it has none (yet)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not usage:
        return None
    return TokenUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        cached_tokens=int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        reasoning_tokens=int(
            (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
        ),
    )


def response_usage(body: dict[str, Any]) -> tuple[TokenUsage, bool]:
    """What to bill for a response as it ended, and whether that is an estimate."""
    usage = usage_from_body(body)
    if usage is not None:
        return usage, False
    # No usage from the engine (a disconnect or failure before its last chunk): bill what was
    # streamed, estimated from its length; the prompt's size is unknown, so 0.
    return TokenUsage(output_tokens=_streamed_tokens(body.get("output") or [])), True


def _streamed_tokens(output: list[Any]) -> int:
    chars = 0

    def walk(value: Any) -> None:
        nonlocal chars
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("text", "arguments", "refusal") and isinstance(item, str):
                    chars += len(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(output)
    return math.ceil(chars / _CHARS_PER_STREAMED_TOKEN)


def rate_limit_events(
    reservation: Reservation | None, builder: StreamBuilder, *, settled: bool = False
) -> list[dict[str, Any]]:
    """``response.rate_limits.updated`` (numbered by the builder): the limiter's state after
    admission, or after settlement. No state means nothing limits this caller (or the limiter
    was down and admission failed open); the event still comes, reporting unlimited dimensions
    like the headers do."""
    if reservation is None:
        return []
    state = (reservation.settled_rate_limit if settled else None) or reservation.rate_limit
    return [builder.stamp_extra(ev.response_rate_limits_updated(rate_limits=state.rate_limits()))]


def _stored_usage(response_ids: list[str]) -> Mapping[str, TokenUsage]:
    recorded: dict[str, TokenUsage] = {}
    rows = StoredResponse.objects.filter(public_id__in=response_ids).values_list(
        "public_id", "body"
    )
    for public_id, body in rows:
        usage = usage_from_body(body)
        if usage is not None:
            recorded[public_id] = usage
    return recorded


def response_reservations_expire(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Settle, as ``expired``, ledger rows still ``reserved`` after ``older_than`` (their process
    died), with the usage their stored response recorded, if any."""
    return usage_reservations_expire(older_than=older_than, now=now, usage_of=_stored_usage)
