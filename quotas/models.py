"""Quotas: the limits each tenant runs under, and the usage ledger that accounts for every turn.

* :class:`QuotaLimit`: requests and tokens per minute, concurrent responses, and a monthly token
  budget, for one scope: an organization, one of its projects, or one of its API keys. Empty =
  unlimited. Every scope that applies to a request is checked; the tightest one decides.
* :class:`UsageRecord`: the ledger. Exactly one row per response turn (unique ``response_id``),
  opened at admission (status ``reserved``) and settled once when the response ends, however it
  ends. It is the source of truth; the two tables below are derived from it.
* :class:`MonthlyUsage`: per organization and per project, the tokens used and reserved this
  month, the counters that hard budgets are enforced against (conditional F() updates, see
  ``quotas.services.ledger``).
* :class:`UsageDaily`: per organization, model and day, what the admin charts and
  ``manage.py usage`` read, including the 429s.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import ApiKey, Organization, Project


class QuotaLimit(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="quota_limits"
    )
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quota_limits",
        help_text="Limit one project of the organization (leave empty for the organization).",
    )
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quota_limits",
        verbose_name="API key",
        help_text="Limit one API key of the organization (leave empty for the organization).",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        verbose_name="RPM",
        help_text="Responses created per minute. Empty = unlimited.",
    )
    tokens_per_minute = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        verbose_name="TPM",
        help_text="Input + output tokens per minute; a request reserves its input estimate plus "
        "max_output_tokens (or the model's default) and gets the unused part back. Empty = "
        "unlimited.",
    )
    max_concurrent = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        verbose_name="concurrency",
        help_text="Responses in progress at the same time. Empty = unlimited.",
    )
    monthly_token_budget = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Tokens per calendar month (UTC). Organizations and projects only.",
    )
    monthly_cost_budget = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
        verbose_name="monthly budget (USD)",
        help_text="Spend per calendar month at the model prices. Organizations and projects "
        "only. Once what settled turns cost reaches it, further requests get 429 "
        "insufficient_quota (hard) or are served and flagged (soft). Empty = none.",
    )
    budget_is_hard = models.BooleanField(
        default=True,
        verbose_name="hard budget",
        help_text="Hard: requests past the budget get 429 insufficient_quota. Soft: they are "
        "served and the overrun is flagged in the admin.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "quota limit"
        constraints = [
            models.CheckConstraint(
                condition=Q(project__isnull=True) | Q(api_key__isnull=True),
                name="quota_limit_one_scope",
            ),
            models.CheckConstraint(
                condition=Q(api_key__isnull=True) | Q(monthly_token_budget__isnull=True),
                name="quota_limit_no_key_budget",
            ),
            models.CheckConstraint(
                condition=Q(api_key__isnull=True) | Q(monthly_cost_budget__isnull=True),
                name="quota_limit_no_key_cost_budget",
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(project__isnull=True, api_key__isnull=True),
                name="quota_limit_unique_org",
            ),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(project__isnull=False),
                name="quota_limit_unique_project",
            ),
            models.UniqueConstraint(
                fields=["api_key"],
                condition=Q(api_key__isnull=False),
                name="quota_limit_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return f"limits of {self.scope_label}"

    @property
    def scope(self) -> str:
        if self.api_key_id:
            return "api_key"
        if self.project_id:
            return "project"
        return "organization"

    @property
    def scope_label(self) -> str:
        if self.api_key is not None:
            return f"key {self.api_key.redacted_value}"
        if self.project is not None:
            return f"project {self.project.name}"
        return f"organization {self.organization.name}"

    def clean(self) -> None:
        if self.project_id and self.api_key_id:
            raise ValidationError("Limit either a project or an API key, not both.")
        if self.project is not None and self.project.organization_id != self.organization_id:
            raise ValidationError({"project": "This project belongs to another organization."})
        if self.api_key is not None and self.api_key.organization_id != self.organization_id:
            raise ValidationError({"api_key": "This key belongs to another organization."})
        if self.api_key_id and self.monthly_token_budget is not None:
            raise ValidationError(
                {"monthly_token_budget": "Budgets apply to organizations and projects only."}
            )
        if self.api_key_id and self.monthly_cost_budget is not None:
            raise ValidationError(
                {"monthly_cost_budget": "Budgets apply to organizations and projects only."}
            )


class MonthlyUsage(models.Model):
    """Budget counters: tokens used (settled) and reserved (admitted, not yet settled) in one
    calendar month, for an organization (``project`` empty) or one project."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="monthly_usage"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, null=True, blank=True, related_name="monthly_usage"
    )
    month = models.DateField(help_text="First day of the month (UTC).")
    used_tokens = models.BigIntegerField(default=0)
    reserved_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=0)

    class Meta:
        verbose_name = "monthly usage"
        verbose_name_plural = "monthly usage"
        ordering = ["-month", "organization__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "month"],
                condition=Q(project__isnull=True),
                name="monthly_usage_unique_org",
            ),
            models.UniqueConstraint(
                fields=["project", "month"],
                condition=Q(project__isnull=False),
                name="monthly_usage_unique_project",
            ),
        ]

    def __str__(self) -> str:
        scope = self.project.name if self.project is not None else self.organization.name
        return f"{scope} {self.month:%Y-%m}"


class UsageRecord(models.Model):
    """One response turn in the ledger. Never deleted with the response (``store=false`` turns
    and deleted responses are billed too)."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved (running)"
        COMPLETED = "completed"
        INCOMPLETE = "incomplete"
        FAILED = "failed"
        CANCELLED = "cancelled"
        EXPIRED = "expired", "Expired (never settled by its process)"

    response_id = models.CharField(max_length=64, unique=True)
    request_id = models.CharField(max_length=128, blank=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="usage_records"
    )
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True)
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, verbose_name="API key"
    )
    model = models.CharField(max_length=128)
    service_tier = models.CharField(max_length=16, blank=True)
    stored = models.BooleanField(default=True, help_text="The request's store flag.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RESERVED, db_index=True
    )
    reserved_tokens = models.BigIntegerField(
        default=0, help_text="Admission estimate: input upper bound + max output tokens."
    )
    limiter_checks = models.JSONField(
        default=list,
        blank=True,
        help_text="The rate-limit counters admission charged ([key, kind, limit, period_ms, "
        "cost, scope]), so that any process can settle exactly them.",
    )
    budget_holds = models.JSONField(
        default=list,
        blank=True,
        help_text="MonthlyUsage rows whose reserved_tokens this turn holds until it settles.",
    )
    input_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    usage_estimated = models.BooleanField(
        default=False,
        help_text="The engine never reported usage (disconnect, failure): output tokens were "
        "estimated from what was streamed.",
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(
        max_digits=18,
        decimal_places=8,
        default=0,
        help_text="What the turn cost at the model's price when it settled (USD).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "usage record"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.response_id} ({self.status}, {self.total_tokens} tokens)"


class UsageDaily(models.Model):
    """The daily rollup of the ledger per organization and model, plus the requests refused."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="usage_daily"
    )
    day = models.DateField()
    model = models.CharField(max_length=128)
    requests = models.BigIntegerField(default=0, help_text="Settled response turns.")
    failed_requests = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    rate_limited = models.BigIntegerField(default=0, help_text="429 rate_limit_exceeded.")
    quota_exceeded = models.BigIntegerField(default=0, help_text="429 insufficient_quota.")

    class Meta:
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        ordering = ["-day", "organization__name", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "model"], name="usage_daily_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization.name} {self.day} {self.model}"


class ModelPrice(models.Model):
    """What a model costs per million tokens. Usage is priced when a turn settles, so changing
    a price changes what later turns cost, never what earlier ones did."""

    model = models.CharField(
        max_length=128, unique=True, help_text="The model name clients send (as in /v1/models)."
    )
    input_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, verbose_name="input / 1M tokens"
    )
    cached_input_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, verbose_name="cached input / 1M tokens"
    )
    output_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, verbose_name="output / 1M tokens"
    )
    currency = models.CharField(max_length=3, default="usd")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        verbose_name = "model price"

    def __str__(self) -> str:
        return f"{self.model} price"
