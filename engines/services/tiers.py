"""Service tiers: which tier a request runs in, and what that means to vLLM.

``service_tier`` is ``auto|default|flex|priority``. The organization's ``allowed_service_tiers``
says which concrete tiers it may use. ``auto`` (or no value) is always acceptable as a *request*:
it means "the platform picks", and resolves to ``default`` when allowed, else to the first allowed
of ``default``, ``flex``, ``priority``. The resolved tier is what the response echoes and what
becomes vLLM's request ``priority`` (lower runs first).
"""

from __future__ import annotations

from collections.abc import Iterable

from engines.runtime.types import TIER_PRIORITY

__all__ = [
    "CONCRETE_TIERS",
    "SERVICE_TIERS",
    "ServiceTierError",
    "resolve_service_tier",
    "tier_priority",
]

SERVICE_TIERS: tuple[str, ...] = ("auto", "default", "flex", "priority")
CONCRETE_TIERS: tuple[str, ...] = ("default", "flex", "priority")
"""Resolution order for ``auto``: the first of these the organization may use."""


class ServiceTierError(ValueError):
    """The requested tier is unknown or not allowed; the API answers 400 on ``service_tier``."""

    param = "service_tier"
    code = "invalid_value"


def resolve_service_tier(requested: str | None, allowed: Iterable[str]) -> str:
    """The concrete tier a request runs in, or :class:`ServiceTierError`."""
    allowed_set = {tier for tier in allowed if tier in SERVICE_TIERS}
    if requested is not None and requested not in SERVICE_TIERS:
        raise ServiceTierError(
            f"Invalid value for 'service_tier': {requested!r}. "
            f"Supported values are: {', '.join(repr(t) for t in SERVICE_TIERS)}."
        )
    if requested is None or requested == "auto":
        for tier in CONCRETE_TIERS:
            if tier in allowed_set:
                return tier
        raise ServiceTierError(
            "This organization has no service tier enabled; ask an administrator to allow one "
            "of 'default', 'flex' or 'priority'."
        )
    if requested not in allowed_set:
        usable = [t for t in CONCRETE_TIERS if t in allowed_set]
        raise ServiceTierError(
            f"The service tier {requested!r} is not available to this organization. "
            f"Available tiers: {', '.join(repr(t) for t in ['auto', *usable])}."
        )
    return requested


def tier_priority(tier: str) -> int:
    """vLLM request priority for a resolved tier (``priority`` < ``default`` < ``flex``)."""
    try:
        return TIER_PRIORITY[tier]
    except KeyError:
        raise ServiceTierError(f"{tier!r} is not a concrete service tier.") from None
