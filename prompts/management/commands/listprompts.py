import json as jsonlib

from django.core.management.base import BaseCommand

from prompts.models import Prompt


class Command(BaseCommand):
    help = "List prompt templates (id, name, project, latest version)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug or id)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, org: str | None, json: bool, **options):
        prompts = Prompt.objects.select_related("organization", "project").order_by("name")
        if org:
            prompts = prompts.filter(organization__slug=org) | prompts.filter(
                organization__public_id=org
            )
        rows = [
            {"id": p.public_id, "name": p.name, "organization": p.organization.slug,
             "project": p.project.public_id, "latest_version": str(p.latest_version)}
            for p in prompts
        ]  # fmt: skip
        if json:
            self.stdout.write(jsonlib.dumps(rows))
            return
        for row in rows:
            self.stdout.write(
                f"{row['id']}  v{row['latest_version']}  {row['name']}  "
                f"({row['organization']}, {row['project']})"
            )
