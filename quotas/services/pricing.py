"""Prices per model and the cost of a turn.

Prices change rarely and every settled turn needs one, so each process keeps them for
``QUOTA_LIMITS_CACHE_SECONDS`` like the limits (a price edited in the admin applies to turns
settled after that, in every process).
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from quotas.models import ModelPrice

MILLION = Decimal(1_000_000)
_cache: dict[str, tuple[float, ModelPrice | None]] = {}
_lock = threading.Lock()


def price_for(*, model: str) -> ModelPrice | None:
    entry = _cache.get(model)
    if entry is not None and entry[0] > time.monotonic():
        return entry[1]
    price = ModelPrice.objects.filter(model=model).first()
    with _lock:
        _cache[model] = (time.monotonic() + settings.QUOTA_LIMITS_CACHE_SECONDS, price)
    return price


@receiver([post_save, post_delete], sender=ModelPrice)
def prices_cache_clear(**_kwargs) -> None:
    """Also run on every change of a price, so this process applies it at once."""
    with _lock:
        _cache.clear()


def cost_of(
    *, price: ModelPrice | None, input_tokens: int, cached_tokens: int, output_tokens: int
) -> Decimal:
    """Cached input tokens are part of ``input_tokens`` (OpenAI's usage shape) and are charged
    at the cached price instead of the full one."""
    if price is None:
        return Decimal(0)
    cached = min(cached_tokens, input_tokens)
    total = (
        (input_tokens - cached) * price.input_per_million
        + cached * price.cached_input_per_million
        + output_tokens * price.output_per_million
    ) / MILLION
    return total.quantize(Decimal("0.00000001"))


def usage_cost(*, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
    return cost_of(
        price=price_for(model=model),
        input_tokens=input_tokens,
        cached_tokens=cached_tokens,
        output_tokens=output_tokens,
    )
