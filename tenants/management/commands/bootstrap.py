"""Idempotent set-up for the embedded default: a demo organization, project and key."""

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenants.models import ApiKey, Organization
from tenants.services.api_keys import api_key_issue
from tenants.services.organizations import organization_create

DEMO_SLUG = "demo"
DEMO_KEY_NAME = "Demo key (bootstrap)"


class Command(BaseCommand):
    help = (
        "Create the demo organization, project and API key if they do not exist, seed the "
        "models from settings, and print how to call the API. Safe to run on every start."
    )

    def add_arguments(self, parser):
        # `make run` serves on $PORT (default 8000): print the address it really listens on.
        port = os.environ.get("PORT") or "8000"
        parser.add_argument("--base-url", default=f"http://127.0.0.1:{port}/v1")
        parser.add_argument(
            "--new-key", action="store_true", help="issue another demo key even if one exists"
        )

    def handle(self, *args, base_url: str, new_key: bool, **options):
        call_command("syncmodels", verbosity=0)
        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        if organization is None:
            organization = organization_create(name="Demo organization", slug=DEMO_SLUG)
            self.stdout.write(f"Created organization {organization.public_id} (slug demo).")
        project = organization.projects.order_by("created_at").first()
        existing = [
            key
            for key in ApiKey.objects.filter(organization=organization, name=DEMO_KEY_NAME)
            if key.status == "active"
        ]
        model = self._first_model_name(organization)
        if existing and not new_key:
            key = existing[0]
            self.stdout.write(
                f"Demo key already issued: {key.redacted_value} ({key.public_id}). Its secret was "
                "shown when it was created and cannot be shown again; run "
                "`python manage.py bootstrap --new-key` for another one."
            )
            self._print_usage(base_url, "<your demo key>", model)
            return
        issued = api_key_issue(organization=organization, project=project, name=DEMO_KEY_NAME)
        self.stdout.write("")
        self.stdout.write("=" * 72)
        self.stdout.write(" Demo API key (shown once, save it now):")
        self.stdout.write(f"   {issued.secret}")
        self.stdout.write("=" * 72)
        self._print_usage(base_url, issued.secret, model)

    def _first_model_name(self, organization) -> str:
        from engines.selectors import model_list

        first = model_list(organization=organization).first()
        return first.name if first else "<model>"

    def _print_usage(self, base_url: str, key: str, model: str) -> None:
        self.stdout.write(
            f"""
Call the API:
  curl {base_url}/models -H "Authorization: Bearer {key}"

  python -c 'from openai import OpenAI; c = OpenAI(base_url="{base_url}", api_key="{key}"); print([m.id for m in c.models.list()])'

  Model: {model}
"""
        )
