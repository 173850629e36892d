from django.core.management.base import BaseCommand, CommandError

from tenants.models import STREAM_DIALECTS
from tenants.selectors import organization_get_by_ref
from tenants.services.organizations import organization_set_dialect


class Command(BaseCommand):
    help = (
        "Set an organization's default stream dialect (openai, open-responses, legacy); "
        "'default' clears it so the server's RESPONSES_DIALECT applies. A request's "
        "X-Responses-Dialect header still wins."
    )

    def add_arguments(self, parser):
        parser.add_argument("org", help="organization public id or slug")
        parser.add_argument("dialect", choices=[*STREAM_DIALECTS, "default"])

    def handle(self, *args, org: str, dialect: str, **options):
        organization = organization_get_by_ref(ref=org)
        if organization is None:
            raise CommandError(f"No organization {org!r}.")
        organization_set_dialect(
            organization=organization, dialect="" if dialect == "default" else dialect
        )
        shown = dialect if dialect != "default" else "the server default"
        self.stdout.write(f"{organization.name} now streams in {shown}.")
