"""``manage.py setlimits --org acme [--project proj_…|--key key_…] --rpm 60 --tpm 100000 …``"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from quotas.services.limits import UNSET, limits_set
from tenants.selectors import api_key_get_by_ref, organization_get_by_ref, project_get


def _limit(value: str) -> int | None:
    """A positive integer, or ``none``/``unlimited`` to remove the limit."""
    if value.lower() in ("none", "unlimited", "-"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a number (or 'none').") from None
    if number < 1:
        raise CommandError("Limits are at least 1 (use 'none' for unlimited).")
    return number


def _money(value: str) -> Decimal | None:
    """An amount in USD, or ``none`` to remove the budget."""
    if value.lower() in ("none", "unlimited", "-"):
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{value!r} is not an amount (or 'none').") from None
    if not amount.is_finite() or amount < Decimal("0.01"):
        raise CommandError("Budgets are at least 0.01 (use 'none' for no budget).")
    return amount.quantize(Decimal("0.01"))


class Command(BaseCommand):
    help = (
        "Set the rate limits and monthly token budget of an organization, one of its projects, "
        "or one of its API keys. Options left out keep their value; 'none' removes a limit."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization public id or slug")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--project", help="project public id (proj_…)")
        scope.add_argument("--key", help="API key public id or displayed prefix")
        parser.add_argument("--rpm", type=_limit, default=UNSET, help="requests per minute")
        parser.add_argument("--tpm", type=_limit, default=UNSET, help="tokens per minute")
        parser.add_argument(
            "--concurrency", type=_limit, default=UNSET, help="responses in progress at once"
        )
        parser.add_argument(
            "--monthly-tokens", type=_limit, default=UNSET, help="monthly token budget"
        )
        parser.add_argument(
            "--monthly-usd", type=_money, default=UNSET, help="monthly budget in USD"
        )
        hardness = parser.add_mutually_exclusive_group()
        hardness.add_argument(
            "--soft", action="store_true", help="budget only flagged in the admin when exceeded"
        )
        hardness.add_argument(
            "--hard", action="store_true", help="budget refused with 429 insufficient_quota"
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        organization = organization_get_by_ref(ref=options["org"])
        if organization is None:
            raise CommandError(f"No organization {options['org']!r}.")
        project = api_key = None
        if options["project"]:
            project = project_get(organization=organization, ref=options["project"])
            if project is None:
                raise CommandError(f"No project {options['project']!r} in {organization.slug}.")
        if options["key"]:
            api_key = api_key_get_by_ref(ref=options["key"])
            if api_key is None or api_key.organization_id != organization.pk:
                raise CommandError(f"No API key {options['key']!r} in {organization.slug}.")
        hard = False if options["soft"] else True if options["hard"] else UNSET
        try:
            row = limits_set(
                organization=organization,
                project=project,
                api_key=api_key,
                requests_per_minute=options["rpm"],
                tokens_per_minute=options["tpm"],
                max_concurrent=options["concurrency"],
                monthly_token_budget=options["monthly_tokens"],
                monthly_cost_budget=options["monthly_usd"],
                budget_is_hard=hard,
            )
        except (ValidationError, ValueError) as exc:
            raise CommandError("; ".join(getattr(exc, "messages", [str(exc)]))) from exc
        data = {
            "organization": organization.public_id,
            "project": project.public_id if project else None,
            "api_key": api_key.public_id if api_key else None,
            "requests_per_minute": row.requests_per_minute,
            "tokens_per_minute": row.tokens_per_minute,
            "max_concurrent": row.max_concurrent,
            "monthly_token_budget": row.monthly_token_budget,
            "monthly_cost_budget": str(row.monthly_cost_budget)
            if row.monthly_cost_budget is not None
            else None,
            "budget_is_hard": row.budget_is_hard,
        }
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return

        def show(value: int | None) -> str:
            return "unlimited" if value is None else f"{value:,}"

        self.stdout.write(f"Limits of {row.scope_label}:")
        self.stdout.write(f"  requests per minute  {show(row.requests_per_minute)}")
        self.stdout.write(f"  tokens per minute    {show(row.tokens_per_minute)}")
        self.stdout.write(f"  concurrent responses {show(row.max_concurrent)}")
        budget = show(row.monthly_token_budget)
        if row.monthly_token_budget is not None:
            budget += " (hard)" if row.budget_is_hard else " (soft)"
        self.stdout.write(f"  monthly token budget {budget}")
        if row.monthly_cost_budget is not None:
            self.stdout.write(f"  monthly budget       USD {row.monthly_cost_budget}")
