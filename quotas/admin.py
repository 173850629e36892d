"""Staff admin for quotas: limits and budgets (editable), the ledger, the monthly counters and the
daily rollup (read-only: they are written by settlement only). The "Daily usage" page carries
the charts: tokens per day by model, requests per day, cost per day, 429s per organization."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.contrib import admin
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.html import format_html

from quotas import charts
from quotas.models import ModelPrice, MonthlyUsage, QuotaLimit, UsageDaily, UsageRecord
from quotas.selectors import USAGE_FIELDS, BudgetStatus, budget_for_counter
from quotas.services.ledger import month_start
from quotas.services.limits import limits_cache_clear

CHART_DAYS = 31

_STATE_STYLE = {
    "exhausted": ("#b0413e", "exhausted (hard: refusing)"),
    "over": ("#e07b39", "over budget (soft)"),
    "ok": ("#5b9e4d", "ok"),
    "none": ("#888", "no budget"),
}


def _state_badge(state: str):
    color, text = _STATE_STYLE[state]
    return format_html('<strong style="color:{}">{}</strong>', color, text)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(QuotaLimit)
class QuotaLimitAdmin(admin.ModelAdmin):
    list_display = (
        "scope_display",
        "organization",
        "requests_per_minute",
        "tokens_per_minute",
        "max_concurrent",
        "monthly_token_budget",
        "budget_is_hard",
        "this_month",
        "updated_at",
    )
    list_filter = ("organization", "budget_is_hard")
    search_fields = ("organization__name", "organization__slug", "project__name", "api_key__name")
    autocomplete_fields = ("organization", "project", "api_key")
    fieldsets = (
        ("Scope", {"fields": ("organization", "project", "api_key")}),
        ("Rate limits", {"fields": ("requests_per_minute", "tokens_per_minute", "max_concurrent")}),
        (
            "Monthly budget",
            {"fields": ("monthly_token_budget", "monthly_cost_budget", "budget_is_hard")},
        ),
    )

    @admin.display(description="Scope")
    def scope_display(self, obj: QuotaLimit) -> str:
        return obj.scope_label

    @admin.display(description="This month")
    def this_month(self, obj: QuotaLimit):
        if obj.api_key_id or obj.monthly_token_budget is None:
            return "—"
        # django-stubs refuse None in a nullable foreign key's `_id` lookup; Django reads IS NULL.
        counter = MonthlyUsage.objects.filter(  # type: ignore[misc]
            organization_id=obj.organization_id,
            project_id=obj.project_id,
            month=month_start(timezone.now()),
        ).first()
        status = BudgetStatus(
            scope=obj.scope_label,
            month=month_start(timezone.now()),
            budget=obj.monthly_token_budget,
            hard=obj.budget_is_hard,
            used=counter.used_tokens if counter else 0,
            reserved=counter.reserved_tokens if counter else 0,
        )
        return format_html("{} used · {}", f"{status.used:,}", _state_badge(status.state))

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        limits_cache_clear()  # this process at once; others within QUOTA_LIMITS_CACHE_SECONDS

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        limits_cache_clear()


class BudgetStateFilter(admin.SimpleListFilter):
    title = "budget"
    parameter_name = "budget"

    def lookups(self, request, model_admin):
        return [(key, text) for key, (_, text) in _STATE_STYLE.items()]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        keep = [c.pk for c in queryset if _counter_status(c).state == self.value()]
        return queryset.filter(pk__in=keep)


def _counter_status(counter: MonthlyUsage) -> BudgetStatus:
    limit = budget_for_counter(counter)
    return BudgetStatus(
        scope=str(counter),
        month=counter.month,
        budget=limit.monthly_token_budget if limit else None,
        hard=limit.budget_is_hard if limit else True,
        used=counter.used_tokens,
        reserved=counter.reserved_tokens,
    )


@admin.register(MonthlyUsage)
class MonthlyUsageAdmin(ReadOnlyAdmin):
    list_display = (
        "organization",
        "project",
        "month",
        "used_tokens",
        "reserved_tokens",
        "budget",
        "state",
    )
    list_filter = (BudgetStateFilter, "month", "organization")
    list_select_related = ("organization", "project")

    @admin.display(description="Budget")
    def budget(self, obj: MonthlyUsage):
        status = _counter_status(obj)
        if status.budget is None:
            return "—"
        return f"{status.budget:,} ({'hard' if status.hard else 'soft'})"

    @admin.display(description="State")
    def state(self, obj: MonthlyUsage):
        return _state_badge(_counter_status(obj).state)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    """The ledger. The responses app registers a subclass that adds each turn's error, which
    lives on the stored response (quotas knows nothing of those)."""

    list_display: tuple[str, ...] = (
        "response_id",
        "organization",
        "project",
        "model",
        "status",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost",
        "latency_ms",
        "created_at",
    )
    list_filter = ("status", "model", "service_tier", "stored", "usage_estimated", "organization")
    search_fields = ("response_id", "request_id", "organization__name")
    date_hierarchy = "created_at"
    list_select_related = ("organization", "project")


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "input_per_million",
        "cached_input_per_million",
        "output_per_million",
        "currency",
        "updated_at",
    )
    search_fields = ("model",)


@admin.register(UsageDaily)
class UsageDailyAdmin(ReadOnlyAdmin):
    change_list_template = "admin/quotas/usagedaily/change_list.html"
    list_display = ("day", "organization", "model", *USAGE_FIELDS)
    list_filter = ("organization", "model")
    date_hierarchy = "day"
    list_select_related = ("organization",)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            # The charts follow the page's filters (organization, model, date drill-down).
            context["charts"] = usage_charts(context["cl"].queryset)
        return response


def usage_charts(rows: QuerySet[UsageDaily]) -> list[dict]:
    """The three charts for a selection of rollup rows (its last CHART_DAYS days)."""
    rows = list(rows.select_related("organization").order_by("day"))
    if rows:
        last = max(row.day for row in rows)
    else:
        last = timezone.now().date()
    first = last - timedelta(days=CHART_DAYS - 1)
    days = [first + timedelta(days=n) for n in range(CHART_DAYS)]
    recent = [row for row in rows if row.day >= first]
    tokens: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    cost: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    served: dict = defaultdict(int)
    refused: dict = defaultdict(int)
    by_org: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in recent:
        tokens[row.model][row.day] += row.total_tokens
        cost[row.model][row.day] += float(row.cost)
        served[row.day] += row.requests
        refused[row.day] += row.rate_limited + row.quota_exceeded
        by_org[row.organization.name][0] += row.rate_limited
        by_org[row.organization.name][1] += row.quota_exceeded
    organizations = sorted(by_org, key=lambda name: -sum(by_org[name]))[:12]
    return [
        {
            "title": "Tokens per day by model",
            "svg": charts.line_chart(
                title="Tokens per day by model",
                days=days,
                series={
                    model: [per_day[d] for d in days] for model, per_day in sorted(tokens.items())
                },
            ),
        },
        {
            "title": "Requests per day",
            "svg": charts.bar_chart(
                title="Requests per day",
                labels=[f"{d:%m-%d}" for d in days],
                series={
                    "served": [served[d] for d in days],
                    "refused (429)": [refused[d] for d in days],
                },
            ),
        },
        {
            "title": "Cost per day by model (USD)",
            "svg": charts.bar_chart(
                title="Cost per day by model (USD)",
                labels=[f"{d:%m-%d}" for d in days],
                series={
                    model: [per_day[d] for d in days] for model, per_day in sorted(cost.items())
                },
                whole=False,
            ),
        },
        {
            "title": "429s per organization",
            "svg": charts.bar_chart(
                title="429s per organization",
                labels=organizations,
                series={
                    "rate_limit_exceeded": [by_org[o][0] for o in organizations],
                    "insufficient_quota": [by_org[o][1] for o in organizations],
                },
            ),
        },
    ]
