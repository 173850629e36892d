from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants.management.commands._output import api_key_as_dict, dumps
from tenants.models import ApiKey
from tenants.selectors import organization_get_by_ref, project_get
from tenants.services.api_keys import ENDPOINT_GROUPS, api_key_issue


class Command(BaseCommand):
    help = "Issue an API key. The secret is printed once and cannot be shown again."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization public id or slug")
        parser.add_argument("--project", help="project public id (proj_…) to bind the key to")
        parser.add_argument("--name", default="API key")
        parser.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.ALL)
        parser.add_argument(
            "--permission",
            action="append",
            default=[],
            metavar="GROUP=LEVEL",
            help=f"for --scope restricted: groups {', '.join(ENDPOINT_GROUPS)}; "
            "levels none, read, write (repeatable)",
        )
        parser.add_argument("--expires-in-days", type=int)
        parser.add_argument(
            "--admin",
            action="store_true",
            help="an admin key: the Administration API (/v1/organization/) only",
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        organization = organization_get_by_ref(ref=options["org"])
        if organization is None:
            raise CommandError(f"No organization {options['org']!r}.")
        project = None
        if options["project"]:
            project = project_get(organization=organization, ref=options["project"])
            if project is None:
                raise CommandError(f"No project {options['project']!r} in {organization.slug}.")
        permissions = {}
        for item in options["permission"]:
            group, _, level = item.partition("=")
            permissions[group] = level
        expires_at = None
        if options["expires_in_days"] is not None:
            expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
        if options["admin"] and (project is not None or options["scope"] != ApiKey.Scope.ALL):
            raise CommandError("Admin keys take no --project or --scope.")
        try:
            issued = api_key_issue(
                kind=ApiKey.Kind.ADMIN if options["admin"] else ApiKey.Kind.PROJECT,
                organization=organization,
                project=project,
                name=options["name"],
                scope=options["scope"],
                permissions=permissions,
                expires_at=expires_at,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(dumps(api_key_as_dict(issued.api_key, secret=issued.secret)))
            return
        self.stdout.write(f"Created API key {issued.api_key.public_id} for {organization.name}.")
        self.stdout.write("Save it now; it will not be shown again:\n")
        self.stdout.write(f"    {issued.secret}\n")
