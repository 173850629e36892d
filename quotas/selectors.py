"""Reads of usage and budgets, always for one organization unless the caller is staff-only
(the admin's charts across organizations)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet, Sum
from django.utils import timezone

from quotas.models import MonthlyUsage, QuotaLimit, UsageDaily
from quotas.services.ledger import month_start
from tenants.models import Organization

USAGE_FIELDS = (
    "requests",
    "failed_requests",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "rate_limited",
    "quota_exceeded",
)


def usage_daily_list(
    *, organization: Organization, since: date, until: date | None = None
) -> QuerySet[UsageDaily]:
    rows = UsageDaily.objects.filter(organization=organization, day__gte=since)
    if until is not None:
        rows = rows.filter(day__lte=until)
    return rows.order_by("day", "model")


def usage_totals(rows: QuerySet[UsageDaily]) -> dict[str, int]:
    sums = rows.aggregate(**{name: Sum(name) for name in USAGE_FIELDS})
    return {name: int(sums[name] or 0) for name in USAGE_FIELDS}


@dataclass(frozen=True)
class BudgetStatus:
    scope: str
    month: date
    budget: int | None
    hard: bool
    used: int
    reserved: int

    @property
    def state(self) -> str:
        """``none`` (no budget), ``ok``, ``exhausted`` (hard, refusing) or ``over`` (soft)."""
        if self.budget is None:
            return "none"
        if self.used + self.reserved < self.budget:
            return "ok"
        return "exhausted" if self.hard else "over"


def budget_status_list(
    *, organization: Organization, month: date | None = None
) -> list[BudgetStatus]:
    """Budgets of the organization and its projects for ``month`` (default: this month)."""
    month = month or month_start(timezone.now())
    counters = {
        counter.project_id: counter
        for counter in MonthlyUsage.objects.filter(organization=organization, month=month)
    }
    out = []
    limits = QuotaLimit.objects.filter(
        organization=organization, api_key__isnull=True, monthly_token_budget__isnull=False
    ).select_related("project")
    for limit in limits:
        counter = counters.get(limit.project_id)
        out.append(
            BudgetStatus(
                scope=f"project {limit.project.name}"
                if limit.project is not None
                else "organization",
                month=month,
                budget=limit.monthly_token_budget,
                hard=limit.budget_is_hard,
                used=counter.used_tokens if counter else 0,
                reserved=counter.reserved_tokens if counter else 0,
            )
        )
    return out


def budget_for_counter(counter: MonthlyUsage) -> QuotaLimit | None:
    # django-stubs refuse None in a nullable foreign key's `_id` lookup; Django reads IS NULL.
    return QuotaLimit.objects.filter(
        organization_id=counter.organization_id,
        project_id=counter.project_id,  # type: ignore[misc]
        api_key__isnull=True,
        monthly_token_budget__isnull=False,
    ).first()
