"""Usage and cost over time for one organization, from the ledger (``UsageRecord``): buckets of
a minute, an hour or a day, optionally grouped by project, API key, model or service tier.

Shared by the Administration API (``/v1/organization/usage/completions``, ``/costs``) and the
console's charts and CSV export, so both always show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from quotas.models import UsageRecord
from tenants.models import Organization

BUCKET_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
_TRUNC = {"1m": TruncMinute, "1h": TruncHour, "1d": TruncDay}
GROUP_FIELDS = {
    "project_id": "project__public_id",
    "api_key_id": "api_key__public_id",
    "model": "model",
    "service_tier": "service_tier",
}


@dataclass
class Bucket:
    start: datetime
    end: datetime
    results: list[dict] = field(default_factory=list)


def align(moment: datetime, width: str) -> datetime:
    seconds = BUCKET_WIDTHS[width]
    stamp = int(moment.timestamp())
    return datetime.fromtimestamp(stamp - stamp % seconds, tz=UTC)


def usage_buckets(
    *,
    organization: Organization,
    start: datetime,
    end: datetime,
    width: str = "1d",
    group_by: tuple[str, ...] = (),
    project_ids: tuple[str, ...] = (),
    api_key_ids: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
) -> list[Bucket]:
    """Every bucket from ``start`` (aligned down to the width) until ``end``, empty ones
    included. Only settled turns count (a running one has no final usage yet)."""
    step = timedelta(seconds=BUCKET_WIDTHS[width])
    first = align(start, width)
    buckets: list[Bucket] = []
    moment = first
    while moment < end:
        buckets.append(Bucket(start=moment, end=moment + step))
        moment += step
    if not buckets:
        return buckets
    rows = UsageRecord.objects.filter(
        organization=organization, created_at__gte=first, created_at__lt=buckets[-1].end
    ).exclude(status=UsageRecord.Status.RESERVED)
    if project_ids:
        rows = rows.filter(project__public_id__in=project_ids)
    if api_key_ids:
        rows = rows.filter(api_key__public_id__in=api_key_ids)
    if models:
        rows = rows.filter(model__in=models)
    group_columns = [GROUP_FIELDS[name] for name in group_by]
    aggregated = (
        rows.annotate(bucket=_TRUNC[width]("created_at", tzinfo=UTC))
        .values("bucket", *group_columns)
        .annotate(
            requests=Count("pk"),
            failed_requests=Count("pk", filter=Q(status=UsageRecord.Status.FAILED)),
            input_tokens=Sum("input_tokens"),
            cached_tokens=Sum("cached_tokens"),
            output_tokens=Sum("output_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"),
            cost=Sum("cost"),
        )
        .order_by("bucket", *group_columns)
    )
    by_start = {bucket.start: bucket for bucket in buckets}
    for row in aggregated:
        bucket = by_start.get(row["bucket"])
        if bucket is None:
            continue
        result = {
            "requests": row["requests"],
            "failed_requests": row["failed_requests"],
            "input_tokens": int(row["input_tokens"] or 0),
            "cached_tokens": int(row["cached_tokens"] or 0),
            "output_tokens": int(row["output_tokens"] or 0),
            "reasoning_tokens": int(row["reasoning_tokens"] or 0),
            "cost": row["cost"] or Decimal(0),
        }
        for name in group_by:
            result[name] = row[GROUP_FIELDS[name]]
        bucket.results.append(result)
    return buckets
