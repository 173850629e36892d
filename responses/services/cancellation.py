"""Cross-process cancellation of a running generation.

The process that runs a generation is not necessarily the one that receives ``POST …/cancel``.
The cancel request raises a flag in the shared cache (Redis in production; in the embedded default
one web process runs every foreground generation, so its in-process cache is shared enough), and
the running generation checks the flag between deltas and while idle, at most every
``CHECK_INTERVAL_SECONDS``: a cancel takes effect within about that long.
"""

from __future__ import annotations

import time

from django.core.cache import cache

CHECK_INTERVAL_SECONDS = 0.25
_FLAG_TTL_SECONDS = 3600


def _flag_key(response_id: str) -> str:
    return f"response-cancel:{response_id}"


def cancel_request(*, response_id: str) -> None:
    cache.set(_flag_key(response_id), 1, timeout=_FLAG_TTL_SECONDS)


async def cancel_requested(*, response_id: str) -> bool:
    return bool(await cache.aget(_flag_key(response_id)))


class CancellationProbe:
    """Rate-limited checks of the cancel flag for one running generation."""

    def __init__(self, response_id: str | None, *, interval: float = CHECK_INTERVAL_SECONDS):
        self._response_id = response_id
        self.interval = interval
        self._next_check = time.monotonic() + interval

    async def due_and_cancelled(self) -> bool:
        if self._response_id is None:
            return False
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.interval
        return await cancel_requested(response_id=self._response_id)
