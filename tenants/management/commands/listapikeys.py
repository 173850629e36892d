from django.core.management.base import BaseCommand, CommandError

from tenants.management.commands._output import api_key_as_dict, dumps
from tenants.selectors import api_key_list, organization_get_by_ref


class Command(BaseCommand):
    help = "List API keys (never their secrets)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (public id or slug)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, org: str | None, json: bool, **options):
        organization = None
        if org:
            organization = organization_get_by_ref(ref=org)
            if organization is None:
                raise CommandError(f"No organization {org!r}.")
        keys = list(api_key_list(organization=organization))
        if json:
            self.stdout.write(dumps([api_key_as_dict(key) for key in keys]))
            return
        header = f"{'ID':<30} {'KEY':<22} {'ORG':<16} {'SCOPE':<10} {'STATUS':<8} LAST USED"
        self.stdout.write(header)
        for key in keys:
            last_used = (
                key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
            )
            self.stdout.write(
                f"{key.public_id:<30} {key.redacted_value:<22} {key.organization.slug:<16} "
                f"{key.scope:<10} {key.status:<8} {last_used}"
            )
