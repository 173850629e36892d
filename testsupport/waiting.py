"""Waiting on a condition instead of sleeping a fixed time: a loaded machine (CI, two cores shared
by everything) makes any fixed pause too short some day."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_until(condition: Callable[[], object], *, within: float, every: float = 0.1, what=""):
    """The condition's first truthy value, polled until ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within:g} s: {what or condition}")
        time.sleep(every)


async def await_until(
    condition: Callable[[], object | Awaitable[object]],
    *,
    within: float,
    every: float = 0.1,
    what: str = "",
):
    """:func:`wait_until` for async tests; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within:g} s: {what or condition}")
        await asyncio.sleep(every)
