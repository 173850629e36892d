"""``manage.py usage --org acme --since 2026-07-01 [--until …] [--json]``: the daily rollup."""

from __future__ import annotations

import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from quotas.selectors import budget_status_list, usage_daily_list, usage_totals
from tenants.selectors import organization_get_by_ref

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
        parser.add_argument("--since", required=True, type=_day, help="first day, YYYY-MM-DD")
        parser.add_argument("--until", type=_day, help="last day (default: today)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        organization = organization_get_by_ref(ref=options["org"])
        if organization is None:
            raise CommandError(f"No organization {options['org']!r}.")
        rows = usage_daily_list(
            organization=organization, since=options["since"], until=options["until"]
        )
        totals = usage_totals(rows)
        budgets = budget_status_list(organization=organization)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "organization": organization.public_id,
                        "since": options["since"].isoformat(),
                        "until": options["until"].isoformat() if options["until"] else None,
                        "days": [
                            {"day": row.day.isoformat(), "model": row.model}
                            | {name: getattr(row, name) for name in totals}
                            for row in rows
                        ],
                        "totals": totals,
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
            self.stdout.write(self._line(row.day.isoformat(), row.model, row.__dict__))
        self.stdout.write(self._line("TOTAL", "", totals))
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
