"""``manage.py openapi``: print (or write) the OpenAPI 3.1 document that /openapi.json serves.

DRF's ``generateschema`` describes only the DRF views (the Responses endpoints are plain async
views) and needs packages the platform does not install; this is the complete document."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from api.openapi.document import openapi_document


class Command(BaseCommand):
    help = "Print the platform's OpenAPI 3.1 document (the one served at /openapi.json)."

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, help="write it to this file instead")

    def handle(self, *args, output: Path | None = None, **options):
        text = json.dumps(openapi_document(), indent=2) + "\n"
        if output is None:
            self.stdout.write(text, ending="")
            return
        output.write_text(text)
        self.stdout.write(f"Wrote {output}")
