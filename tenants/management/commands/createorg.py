from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from tenants.management.commands._output import dumps
from tenants.services.organizations import organization_create


class Command(BaseCommand):
    help = "Create an organization (with a default project)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--slug", help="URL-safe short name; derived from the name if omitted")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, name: str, slug: str | None, json: bool, **options):
        try:
            organization = organization_create(name=name, slug=slug)
        except IntegrityError as exc:
            raise CommandError(
                f"An organization with slug {slug or name!r} already exists."
            ) from exc
        project = organization.projects.first()
        assert project is not None  # organization_create makes the default project
        if json:
            self.stdout.write(
                dumps(
                    {
                        "id": organization.public_id,
                        "name": organization.name,
                        "slug": organization.slug,
                        "default_project": project.public_id,
                    }
                )
            )
        else:
            self.stdout.write(
                f"Created organization {organization.name} ({organization.public_id}, "
                f"slug {organization.slug}) with project {project.public_id}."
            )
