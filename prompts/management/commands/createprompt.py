import json as jsonlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApiError
from prompts.models import Prompt
from prompts.services import prompt_create, prompt_version_create
from tenants.models import Organization, Project


class Command(BaseCommand):
    help = (
        "Create a prompt template (version 1), or with --prompt add the next version of one. "
        "Placeholders are {{name}}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organization slug or id (new prompts)")
        parser.add_argument("--project", help="project id (default: the organization's first)")
        parser.add_argument("--name", help="name of a new prompt")
        parser.add_argument("--prompt", help="pmpt_… id: add a version to this prompt")
        parser.add_argument("--instructions", default="", help="instructions text")
        parser.add_argument("--instructions-file", help="read the instructions from this file")
        parser.add_argument(
            "--input", help='messages as JSON: [{"role": "user", "content": "…{{name}}…"}]'
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        instructions = options["instructions"]
        if options["instructions_file"]:
            instructions = Path(options["instructions_file"]).read_text()
        try:
            items = jsonlib.loads(options["input"]) if options["input"] else None
        except ValueError as exc:
            raise CommandError(f"--input is not valid JSON: {exc}") from exc
        try:
            if options["prompt"]:
                prompt = Prompt.objects.filter(public_id=options["prompt"]).first()
                if prompt is None:
                    raise CommandError(f"No prompt {options['prompt']!r}.")
                version = prompt_version_create(
                    prompt=prompt, instructions=instructions, input=items
                )
            else:
                if not options["org"] or not options["name"]:
                    raise CommandError("A new prompt needs --org and --name.")
                version = prompt_create(
                    project=self._project(options["org"], options["project"]),
                    name=options["name"],
                    instructions=instructions,
                    input=items,
                )
        except ApiError as exc:
            raise CommandError(f"{exc.param}: {exc.message}") from exc
        prompt = version.prompt
        if options["json"]:
            self.stdout.write(
                jsonlib.dumps(
                    {
                        "id": prompt.public_id,
                        "version": str(version.version),
                        "project": prompt.project.public_id,
                        "name": prompt.name,
                    }
                )
            )
        else:
            self.stdout.write(
                f"Prompt {prompt.name} ({prompt.public_id}) version {version.version} in project "
                f"{prompt.project.public_id}."
            )

    def _project(self, org_ref: str, project_ref: str | None) -> Project:
        organization = Organization.objects.filter(slug=org_ref).first() or (
            Organization.objects.filter(public_id=org_ref).first()
        )
        if organization is None:
            raise CommandError(f"No organization {org_ref!r}.")
        projects = Project.objects.filter(organization=organization, archived_at__isnull=True)
        project = (
            projects.filter(public_id=project_ref).first()
            if project_ref
            else projects.order_by("created_at").first()
        )
        if project is None:
            raise CommandError(f"No project {project_ref or ''!r} in {organization.slug}.")
        return project
