"""The usage ledger and the counters derived from it (reliability.md §3).

Three writes, each one transaction, each safe under any concurrency. Called inside a caller's
transaction, a write joins it without a savepoint of its own (a savepoint is two more round
trips): the responses layer writes the ledger row with the response's own row, and the
settlement with the stored outcome, one transaction each. An error then rolls the caller's
transaction back as a whole, as raising out of its atomic block does.

1. :func:`usage_record_open` (admission): hard budgets are reserved with a *conditional* F()
   update (``… SET reserved = reserved + n WHERE used + reserved + n <= budget``; a row count of
   0 means the budget cannot cover the request) and the ledger row is inserted with status
   ``reserved``. The unique ``response_id`` makes a second opening of the same turn fail.
2. :func:`usage_record_settle` (the end of the response, however it ended): the row leaves
   ``reserved`` with one conditional UPDATE (whoever changes it settles; a second settlement
   finds nothing and does nothing), and in the same transaction the monthly counters and the
   daily rollup are incremented with F() expressions, never read-modify-write.
3. :func:`usage_refusal_count`: a 429 counted in the daily rollup.

:func:`usage_reservations_expire` settles rows whose process died before settling them (as
``expired``, with the usage the caller finds recorded for them), and :func:`usage_reconcile` recomputes the counters from the
ledger to prove nothing was lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from core.db import commit_without_flush_wait
from quotas.models import MonthlyUsage, UsageDaily, UsageRecord
from quotas.services.pricing import usage_cost

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class BudgetHold:
    """A hard budget to reserve against at admission."""

    project_id: int | None
    """None: the organization's budget."""
    budget: int
    label: str


class BudgetExhausted(Exception):
    def __init__(self, hold: BudgetHold, *, left: int, requested: int) -> None:
        super().__init__(f"{hold.label}: {left} tokens left, {requested} requested")
        self.hold = hold
        self.left = left
        self.requested = requested


def month_start(moment: datetime) -> date:
    return timezone.localtime(moment, UTC).date().replace(day=1)


def next_month_start(moment: datetime) -> datetime:
    first = month_start(moment)
    year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _counter(*, organization_id: int, project_id: int | None, month: date) -> MonthlyUsage:
    # django-stubs refuse None in a nullable foreign key's `_id` lookup; Django reads IS NULL.
    counter, _ = MonthlyUsage.objects.get_or_create(  # type: ignore[misc]
        organization_id=organization_id, project_id=project_id, month=month
    )
    return counter


def _increment(model, lookup: dict, changes: dict) -> None:
    """``UPDATE … SET f = f + n`` on the row matching ``lookup``, creating it first if it does
    not exist yet. The UPDATE comes first: the row nearly always exists, so that is one query."""
    if model.objects.filter(**lookup).update(**changes):
        return
    try:
        with transaction.atomic():  # a savepoint: losing the creation race is not an error
            model.objects.create(**lookup)
    except IntegrityError:
        pass
    model.objects.filter(**lookup).update(**changes)


def usage_record_open(
    *,
    response_id: str,
    request_id: str,
    organization_id: int,
    project_id: int | None,
    api_key_id: int | None,
    model: str,
    service_tier: str,
    stored: bool,
    reserved_tokens: int,
    limiter_checks: list[list] | None = None,
    holds: tuple[BudgetHold, ...] = (),
) -> UsageRecord:
    """Reserve the hard budgets and open the ledger row; raises :class:`BudgetExhausted` and
    changes nothing when a budget cannot cover ``reserved_tokens``. Its own transaction commits
    without waiting for the flush (``commit_without_flush_wait``); inside a caller's, the caller
    decides."""
    now = timezone.now()
    month = month_start(now)
    outermost = not transaction.get_connection().in_atomic_block
    with (
        transaction.atomic(savepoint=False),
        commit_without_flush_wait() if outermost else contextlib.nullcontext(),
    ):
        held: list[int] = []
        for hold in holds:
            counter = _counter(
                organization_id=organization_id, project_id=hold.project_id, month=month
            )
            updated = MonthlyUsage.objects.filter(
                pk=counter.pk,
                used_tokens__lte=hold.budget - reserved_tokens - F("reserved_tokens"),
            ).update(reserved_tokens=F("reserved_tokens") + reserved_tokens)
            if updated != 1:
                counter.refresh_from_db()
                left = max(hold.budget - counter.used_tokens - counter.reserved_tokens, 0)
                # Leaving the atomic block by exception rolls back the holds taken so far.
                raise BudgetExhausted(hold, left=left, requested=reserved_tokens)
            held.append(counter.pk)
        return UsageRecord.objects.create(
            response_id=response_id,
            request_id=request_id,
            organization_id=organization_id,
            project_id=project_id,
            api_key_id=api_key_id,
            model=model,
            service_tier=service_tier,
            stored=stored,
            reserved_tokens=reserved_tokens,
            limiter_checks=limiter_checks or [],
            budget_holds=held,
            created_at=now,
        )


def usage_record_settle(
    *,
    response_id: str,
    status: str,
    usage: TokenUsage,
    estimated: bool = False,
    latency_ms: int | None = None,
) -> bool:
    """Settle one turn exactly once. False when it was already settled (or never opened)."""
    return (
        usage_record_settle_row(
            response_id=response_id,
            status=status,
            usage=usage,
            estimated=estimated,
            latency_ms=latency_ms,
        )
        is not None
    )


def usage_record_settle_row(
    *,
    response_id: str,
    status: str,
    usage: TokenUsage,
    estimated: bool = False,
    latency_ms: int | None = None,
    latency_since_opened: bool = False,
    opened: UsageRecord | None = None,
) -> UsageRecord | None:
    """:func:`usage_record_settle`, returning the row as it was before settlement (its limiter
    checks and reservation), or None when there was nothing to settle.
    ``latency_since_opened``: the latency is the time since the row was opened (a settlement in
    another process than the admission's). ``opened``: the row as :func:`usage_record_open`
    returned it, when the caller kept it (the process that admitted the turn): it is not read
    again (what settlement reads of it never changes; the conditional update still decides)."""
    with transaction.atomic(savepoint=False):
        record = opened
        if record is None:
            record = UsageRecord.objects.filter(
                response_id=response_id, status=UsageRecord.Status.RESERVED
            ).first()
        if record is None:
            return None
        cost = usage_cost(
            model=record.model,
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
        )
        if latency_since_opened:
            latency_ms = int((timezone.now() - record.created_at).total_seconds() * 1000)
        updated = UsageRecord.objects.filter(
            pk=record.pk, status=UsageRecord.Status.RESERVED
        ).update(
            status=status,
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            total_tokens=usage.total_tokens,
            usage_estimated=estimated,
            latency_ms=latency_ms,
            cost=cost,
            settled_at=timezone.now(),
        )
        if updated != 1:
            return None  # another process settled it between our read and our update
        month = month_start(record.created_at)
        for project_id in [None] + ([record.project_id] if record.project_id else []):
            lookup = {
                "organization_id": record.organization_id,
                "project_id": project_id,
                "month": month,
            }
            changes = {
                "used_tokens": F("used_tokens") + usage.total_tokens,
                "cost": F("cost") + cost,
            }
            if record.budget_holds:
                # Give back the hold this turn took on this counter (if it took one).
                held = MonthlyUsage.objects.filter(pk__in=record.budget_holds, **lookup)
                if held.update(
                    used_tokens=F("used_tokens") + usage.total_tokens,
                    reserved_tokens=F("reserved_tokens") - record.reserved_tokens,
                    cost=F("cost") + cost,
                ):
                    continue
            _increment(MonthlyUsage, lookup, changes)
        _increment(
            UsageDaily,
            {
                "organization_id": record.organization_id,
                "day": timezone.localtime(record.created_at, UTC).date(),
                "model": record.model,
            },
            {
                "requests": F("requests") + 1,
                "failed_requests": F("failed_requests") + (1 if status == "failed" else 0),
                "input_tokens": F("input_tokens") + usage.input_tokens,
                "cached_tokens": F("cached_tokens") + usage.cached_tokens,
                "output_tokens": F("output_tokens") + usage.output_tokens,
                "reasoning_tokens": F("reasoning_tokens") + usage.reasoning_tokens,
                "total_tokens": F("total_tokens") + usage.total_tokens,
                "cost": F("cost") + cost,
            },
        )
    return record


def cost_budget_exceeded(
    *, organization_id: int, budgets: list[tuple[int | None, Decimal, str]]
) -> tuple[str, Decimal, Decimal] | None:
    """The first money budget (project id or None, budget, label) that what this month's
    settled turns cost has reached: ``(label, budget, spent)``, else None. Unlike token budgets
    nothing is reserved: a turn's cost is known only when it settles, so turns already running
    may take the spend a little past the budget."""
    month = month_start(timezone.now())
    spent: dict[int | None, Decimal] = {
        row["project_id"]: row["cost"]
        for row in MonthlyUsage.objects.filter(organization_id=organization_id, month=month).values(
            "project_id", "cost"
        )
    }
    for project_id, budget, label in budgets:
        if spent.get(project_id, Decimal(0)) >= budget:
            return label, budget, spent[project_id]
    return None


def usage_refusal_count(*, organization_id: int, model: str, insufficient_quota: bool) -> None:
    """Count a 429 in today's rollup (for the admin's "429s per organization" chart)."""
    field = "quota_exceeded" if insufficient_quota else "rate_limited"
    _increment(
        UsageDaily,
        {"organization_id": organization_id, "day": timezone.now().date(), "model": model},
        {field: F(field) + 1},
    )


UsageLookup = Callable[[list[str]], Mapping[str, TokenUsage]]
"""Given response ids, the usage each recorded (ids with nothing recorded left out)."""


def usage_reservations_expire(
    *, older_than: timedelta, now: datetime | None = None, usage_of: UsageLookup | None = None
) -> int:
    """Settle turns still ``reserved`` after ``older_than``: their process died (a killed
    worker, a lost stream that was never closed). The usage is what ``usage_of`` says the turn
    recorded (the responses layer passes what the stored responses hold), else zero, marked
    estimated; such rows are marked ``expired`` and counted like any other."""
    cutoff = (now or timezone.now()) - older_than
    expired = 0
    stale = list(
        UsageRecord.objects.filter(
            status=UsageRecord.Status.RESERVED, created_at__lt=cutoff
        ).values_list("response_id", flat=True)[:1000]
    )
    recorded = usage_of(stale) if usage_of is not None and stale else {}
    for response_id in stale:
        usage = recorded.get(response_id)
        if usage_record_settle(
            response_id=response_id,
            status=UsageRecord.Status.EXPIRED,
            usage=usage or TokenUsage(),
            estimated=usage is None,
        ):
            expired += 1
    if expired:
        logger.warning("settled %d usage reservations their process never settled", expired)
    return expired


@dataclass(frozen=True)
class Mismatch:
    what: str
    expected: int
    found: int


def usage_reconcile(*, organization_id: int) -> list[Mismatch]:
    """Compare the counters and rollups of one organization with its ledger (the source of
    truth). An empty list means nothing was lost or counted twice."""
    problems: list[Mismatch] = []
    settled = UsageRecord.objects.filter(organization_id=organization_id).exclude(
        status=UsageRecord.Status.RESERVED
    )
    open_rows = UsageRecord.objects.filter(
        organization_id=organization_id, status=UsageRecord.Status.RESERVED
    )
    for counter in MonthlyUsage.objects.filter(organization_id=organization_id):
        scope = Q(project_id=counter.project_id) if counter.project_id else Q()
        first = datetime.combine(counter.month, datetime.min.time(), tzinfo=UTC)
        in_month = Q(created_at__gte=first, created_at__lt=next_month_start(first))
        used = settled.filter(scope, in_month).aggregate(n=Sum("total_tokens"))["n"] or 0
        if used != counter.used_tokens:
            problems.append(Mismatch(f"used {counter}", used, counter.used_tokens))
        reserved = sum(
            row.reserved_tokens
            for row in open_rows.filter(in_month)
            if counter.pk in row.budget_holds
        )
        if reserved != counter.reserved_tokens:
            problems.append(Mismatch(f"reserved {counter}", reserved, counter.reserved_tokens))
    totals = settled.aggregate(
        requests=Count("pk"),
        tokens=Sum("total_tokens"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
    )
    rolled = UsageDaily.objects.filter(organization_id=organization_id).aggregate(
        requests=Sum("requests"),
        tokens=Sum("total_tokens"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
    )
    for name in ("requests", "tokens", "input", "output"):
        if (totals[name] or 0) != (rolled[name] or 0):
            problems.append(Mismatch(f"rollup {name}", totals[name] or 0, rolled[name] or 0))
    return problems
