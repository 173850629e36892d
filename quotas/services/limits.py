"""Which limits apply to a caller, and setting them.

Every request needs the limits of its organization, project and key. They change rarely and are
read on every API answer (the rate-limit headers), so each process keeps them for
``QUOTA_LIMITS_CACHE_SECONDS``: a change made in the admin or with ``manage.py setlimits``
reaches every process within that time (this process at once). Unlike API keys, where a
revocation must bite on the next request, a limit that bites a few seconds late is harmless.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from quotas.models import QuotaLimit
from quotas.services.limiter import Check
from tenants.models import ApiKey, Organization, Project

SCOPE_ORDER = ("organization", "project", "api_key")
_SCOPE_CODE = {"organization": "o", "project": "p", "api_key": "k"}


@dataclass(frozen=True)
class ScopeLimits:
    scope: str
    """``organization``, ``project`` or ``api_key``."""
    pk: int
    label: str
    """How messages name the scope: ``organization org_…``, ``project proj_…``, ``API key sk-…``."""
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None
    monthly_token_budget: int | None = None
    budget_is_hard: bool = True
    monthly_cost_budget: Decimal | None = None


@dataclass(frozen=True)
class EffectiveLimits:
    organization_pk: int
    scopes: tuple[ScopeLimits, ...]

    @property
    def has_rate_limits(self) -> bool:
        return any(
            s.requests_per_minute or s.tokens_per_minute or s.max_concurrent for s in self.scopes
        )

    @property
    def cost_budgets(self) -> tuple[ScopeLimits, ...]:
        return tuple(s for s in self.scopes if s.monthly_cost_budget and s.budget_is_hard)

    @property
    def hard_budgets(self) -> tuple[ScopeLimits, ...]:
        return tuple(s for s in self.scopes if s.monthly_token_budget and s.budget_is_hard)

    def checks(self, *, tokens: int, admission: bool) -> list[Check]:
        """Limiter checks for every limit set. ``tokens`` is the token reservation; without
        ``admission`` only requests and tokens are listed, at zero cost (a peek)."""
        period_ms = float(settings.QUOTA_WINDOW_SECONDS) * 1000
        prefix = f"{{o{self.organization_pk}}}"  # hash tag: one cluster slot per organization
        out: list[Check] = []
        for scope in self.scopes:
            base = f"{prefix}:{_SCOPE_CODE[scope.scope]}{scope.pk}"
            if scope.requests_per_minute:
                out.append(
                    Check(
                        f"{base}:r",
                        "requests",
                        scope.requests_per_minute,
                        period_ms,
                        1 if admission else 0,
                        scope.label,
                    )
                )
            if scope.tokens_per_minute:
                out.append(
                    Check(
                        f"{base}:t",
                        "tokens",
                        scope.tokens_per_minute,
                        period_ms,
                        tokens if admission else 0,
                        scope.label,
                    )
                )
            if admission and scope.max_concurrent:
                out.append(
                    Check(
                        f"{base}:c", "concurrency", scope.max_concurrent, period_ms, 1, scope.label
                    )
                )
        return out


_cache: dict[tuple[int, int | None, int | None], tuple[float, EffectiveLimits]] = {}
_cache_lock = threading.Lock()


def limits_cached(
    *, organization_id: int, project_id: int | None, api_key_id: int | None
) -> EffectiveLimits | None:
    """The cached limits if still fresh, else None (then call :func:`limits_for`). Lets async
    callers skip the thread hop of a database read on the hot path."""
    entry = _cache.get((organization_id, project_id, api_key_id))
    if entry is not None and entry[0] > time.monotonic():
        return entry[1]
    return None


def limits_for(
    *, organization: Organization, project: Project | None, api_key: ApiKey | None
) -> EffectiveLimits:
    key = (organization.pk, project.pk if project else None, api_key.pk if api_key else None)
    cached = limits_cached(organization_id=key[0], project_id=key[1], api_key_id=key[2])
    if cached is not None:
        return cached
    scope_filter = Q(project__isnull=True, api_key__isnull=True)
    if project is not None:
        scope_filter |= Q(project=project)
    if api_key is not None:
        scope_filter |= Q(api_key=api_key)
    rows = QuotaLimit.objects.filter(scope_filter, organization=organization)
    scopes = []
    for row in rows:
        if row.api_key_id and api_key is not None:
            label = f"API key {api_key.redacted_value}"
            pk = row.api_key_id
        elif row.project_id and project is not None:
            label = f"project {project.public_id}"
            pk = row.project_id
        else:
            label = f"organization {organization.public_id}"
            pk = organization.pk
        scopes.append(
            ScopeLimits(
                scope=row.scope,
                pk=pk,
                label=label,
                requests_per_minute=row.requests_per_minute,
                tokens_per_minute=row.tokens_per_minute,
                max_concurrent=row.max_concurrent,
                monthly_token_budget=row.monthly_token_budget,
                budget_is_hard=row.budget_is_hard,
                monthly_cost_budget=row.monthly_cost_budget,
            )
        )
    scopes.sort(key=lambda s: SCOPE_ORDER.index(s.scope))
    limits = EffectiveLimits(organization_pk=organization.pk, scopes=tuple(scopes))
    with _cache_lock:
        _cache[key] = (time.monotonic() + settings.QUOTA_LIMITS_CACHE_SECONDS, limits)
    return limits


def limits_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


UNSET = object()
"""``limits_set`` argument default: leave this field as it is (``None`` clears it)."""


def limits_set(
    *,
    organization: Organization,
    project: Project | None = None,
    api_key: ApiKey | None = None,
    requests_per_minute: int | object | None = UNSET,
    tokens_per_minute: int | object | None = UNSET,
    max_concurrent: int | object | None = UNSET,
    monthly_token_budget: int | object | None = UNSET,
    budget_is_hard: bool | object = UNSET,
    monthly_cost_budget: Decimal | object | None = UNSET,
) -> QuotaLimit:
    """Create or change the limits of one scope; fields left UNSET keep their value."""
    if project is not None and api_key is not None:
        raise ValueError("Limit either a project or an API key, not both.")
    row, _ = QuotaLimit.objects.get_or_create(
        organization=organization, project=project, api_key=api_key
    )
    changes = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "max_concurrent": max_concurrent,
        "monthly_token_budget": monthly_token_budget,
        "budget_is_hard": budget_is_hard,
        "monthly_cost_budget": monthly_cost_budget,
    }
    for name, value in changes.items():
        if value is not UNSET:
            setattr(row, name, value)
    row.full_clean()
    row.save()
    limits_cache_clear()
    return row
