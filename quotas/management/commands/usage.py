"""``manage.py usage --org acme [--since 2026-07-01] [--until …] [--project proj_…]
[--key key_…] [--json]``: usage per day and model (the daily rollup, or the ledger itself when
one project or key is asked for), this month by default."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from quotas.reports import usage_buckets
from quotas.selectors import USAGE_FIELDS, budget_status_list, usage_daily_list
from quotas.services.ledger import month_start
from tenants.models import ApiKey
from tenants.selectors import api_key_list, organization_get_by_ref, project_get_any

_COLUMNS = (
    ("DAY", 10),
    ("MODEL", 24),
    ("REQUESTS", 9),
    ("FAILED", 7),
    ("INPUT", 11),
    ("CACHED", 10),
    ("OUTPUT", 11),
    ("REASONING", 10),
    ("TOTAL", 12),
    ("429 RATE", 9),
    ("429 QUOTA", 9),
)


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Token usage and refusals of an organization per day and model (from the ledger)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization public id or slug")
        parser.add_argument(
            "--since", type=_day, help="first day, YYYY-MM-DD (default: the 1st of this month)"
        )
        parser.add_argument("--until", type=_day, help="last day (default: today)")
        parser.add_argument("--project", help="only this project (proj_…)")
        parser.add_argument(
            "--key", help="only this API key (key_… or its prefix); 429s are not counted per key"
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        organization = organization_get_by_ref(ref=options["org"])
        if organization is None:
            raise CommandError(f"No organization {options['org']!r}.")
        since = options["since"] or month_start(timezone.now())
        options["since"] = since
        project = key = None
        if options["project"]:
            project = project_get_any(organization=organization, ref=options["project"])
            if project is None:
                raise CommandError(f"No project {options['project']!r} in {organization.slug}.")
        if options["key"]:
            key = (
                api_key_list(organization=organization)
                .filter(kind=ApiKey.Kind.PROJECT)
                .filter(public_id=options["key"])
                .first()
                or api_key_list(organization=organization)
                .filter(prefix=options["key"][:12])
                .first()
            )
            if key is None:
                raise CommandError(f"No API key {options['key']!r} in {organization.slug}.")
        rows: list[dict[str, Any]]
        if project is None and key is None:
            rows = [
                {"day": row.day, "model": row.model, "cost": row.cost}
                | {name: getattr(row, name) for name in USAGE_FIELDS}
                for row in usage_daily_list(
                    organization=organization, since=since, until=options["until"]
                )
            ]
        else:
            rows = _ledger_rows(organization, since, options["until"], project, key)
        totals = {name: sum(row[name] for row in rows) for name in USAGE_FIELDS}
        cost = sum((row["cost"] for row in rows), Decimal(0))
        budgets = budget_status_list(organization=organization)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "organization": organization.public_id,
                        "since": options["since"].isoformat(),
                        "until": options["until"].isoformat() if options["until"] else None,
                        "project": project.public_id if project else None,
                        "key": key.public_id if key else None,
                        "days": [
                            {"day": row["day"].isoformat(), "model": row["model"]}
                            | {name: row[name] for name in totals}
                            | {"cost": str(row["cost"])}
                            for row in rows
                        ],
                        "totals": totals | {"cost": str(cost)},
                        "budgets": [
                            {
                                "scope": b.scope,
                                "month": b.month.isoformat(),
                                "budget": b.budget,
                                "hard": b.hard,
                                "used": b.used,
                                "reserved": b.reserved,
                                "state": b.state,
                            }
                            for b in budgets
                        ],
                    },
                    indent=2,
                )
            )
            return
        self.stdout.write(" ".join(f"{name:<{width}}" for name, width in _COLUMNS).rstrip())
        for row in rows:
            self.stdout.write(self._line(row["day"].isoformat(), row["model"], row))
        self.stdout.write(self._line("TOTAL", "", totals))
        self.stdout.write(f"Cost: {cost:.6f} USD")
        for budget in budgets:
            kind = "hard" if budget.hard else "soft"
            self.stdout.write(
                f"Budget {budget.month:%Y-%m} ({budget.scope}, {kind}): {budget.used:,} used, "
                f"{budget.reserved:,} reserved of {budget.budget:,} — {budget.state}"
            )

    def _line(self, day: str, model: str, values: dict) -> str:
        numbers = [
            values["requests"],
            values["failed_requests"],
            values["input_tokens"],
            values["cached_tokens"],
            values["output_tokens"],
            values["reasoning_tokens"],
            values["total_tokens"],
            values["rate_limited"],
            values["quota_exceeded"],
        ]
        cells = [f"{day:<10}", f"{model[:24]:<24}"] + [
            f"{n:<{width}}" for n, (_, width) in zip(numbers, _COLUMNS[2:], strict=True)
        ]
        return " ".join(cells).rstrip()


def _ledger_rows(organization, since: date, until: date | None, project, key) -> list[dict]:
    """Per day and model from the ledger, for one project and/or key (the daily rollup is
    per organization only). Refusals are not attributed to projects or keys: zero here."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    last = until or timezone.now().astimezone(UTC).date()
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    rows = []
    for bucket in usage_buckets(
        organization=organization,
        start=start,
        end=end,
        width="1d",
        group_by=("model",),
        project_ids=(project.public_id,) if project else (),
        api_key_ids=(key.public_id,) if key else (),
    ):
        for result in bucket.results:
            rows.append(
                {
                    "day": bucket.start.date(),
                    "model": result["model"],
                    "requests": result["requests"],
                    "failed_requests": result["failed_requests"],
                    "input_tokens": result["input_tokens"],
                    "cached_tokens": result["cached_tokens"],
                    "output_tokens": result["output_tokens"],
                    "reasoning_tokens": result["reasoning_tokens"],
                    "total_tokens": result["input_tokens"] + result["output_tokens"],
                    "rate_limited": 0,
                    "quota_exceeded": 0,
                    "cost": result["cost"],
                }
            )
    return rows
