"""Service tier resolution (L8)."""

from __future__ import annotations

import pytest

from engines.runtime.registry import resolve_service_tier as exported
from engines.services.tiers import ServiceTierError, resolve_service_tier, tier_priority

ALL = ["auto", "default", "flex", "priority"]


@pytest.mark.parametrize("requested", [None, "auto"])
def test_auto_resolves_to_default_when_allowed(requested: str | None) -> None:
    assert resolve_service_tier(requested, ALL) == "default"


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        (["auto", "flex", "priority"], "flex"),
        (["priority"], "priority"),
        (["flex", "default"], "default"),
    ],
)
def test_auto_falls_back_to_the_first_allowed_tier(allowed: list[str], expected: str) -> None:
    assert resolve_service_tier("auto", allowed) == expected
    assert resolve_service_tier(None, allowed) == expected


@pytest.mark.parametrize("tier", ["default", "flex", "priority"])
def test_allowed_explicit_tier_is_used(tier: str) -> None:
    assert resolve_service_tier(tier, ALL) == tier


def test_disallowed_tier_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ServiceTierError, match="'priority' is not available") as caught:
        resolve_service_tier("priority", ["auto", "default", "flex"])
    assert isinstance(caught.value, ValueError)
    assert caught.value.param == "service_tier"
    assert "'default'" in str(caught.value)


def test_unknown_tier_is_refused() -> None:
    with pytest.raises(ServiceTierError, match="Invalid value for 'service_tier'"):
        resolve_service_tier("scale", ALL)


def test_no_concrete_tier_allowed() -> None:
    with pytest.raises(ServiceTierError):
        resolve_service_tier(None, ["auto"])


def test_priority_order_and_registry_export() -> None:
    assert tier_priority("priority") < tier_priority("default") < tier_priority("flex")
    with pytest.raises(ServiceTierError):
        tier_priority("auto")
    assert exported is resolve_service_tier
