"""``manage.py syncmodels``: make the database's models and replicas match ``ENGINE_MODELS``.

Idempotent: running it twice changes nothing the second time. Each entry of ``ENGINE_MODELS``
upserts a ServedModel by ``name`` (only the keys the entry gives are written, so admin edits of
other fields survive) and its replicas by ``base_url``. Replicas of a seeded model that the entry
no longer lists are disabled, not deleted, so their history and admin edits are kept. Models that
are not in the setting are left alone.

Entry shape::

    {"name": "smollm2-135m-instruct", "upstream_model": "...", "context_length": 4096,
     "tool_call_parser": "hermes", "replicas": ["http://127.0.0.1:8100/v1",
                                                 {"base_url": "http://…/v1", "api_key": "…"}]}
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from engines.models import EngineReplica, ServedModel

# ServedModel fields an ENGINE_MODELS entry may set (besides name and replicas).
_MODEL_FIELDS = (
    "upstream_model",
    "context_length",
    "owned_by",
    "available_to_all",
    "tool_call_parser",
    "reasoning_parser",
    "supports_structured_output",
    "accepts_images",
    "default_max_output_tokens",
    "enabled",
)


def _replica_specs(entry: dict[str, Any]) -> list[tuple[str, str]]:
    specs: list[tuple[str, str]] = []
    for item in entry.get("replicas") or []:
        if isinstance(item, str):
            url, api_key = item, ""
        elif isinstance(item, dict) and isinstance(item.get("base_url"), str):
            url, api_key = item["base_url"], str(item.get("api_key") or "")
        else:
            raise CommandError(f"model {entry['name']!r}: bad replica entry {item!r}")
        url = url.rstrip("/")
        # Not Django's URLValidator: it rejects TLD-less hosts such as ``http://vllm-0:8000/v1``.
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"model {entry['name']!r}: invalid replica URL {url!r}")
        specs.append((url, api_key))
    return specs


def _validate(entries: Any) -> list[dict[str, Any]]:
    if not isinstance(entries, list):
        raise CommandError("ENGINE_MODELS must be a list of model entries")
    names: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CommandError(f"ENGINE_MODELS entry without a 'name': {entry!r}")
        if entry["name"] in names:
            raise CommandError(f"ENGINE_MODELS lists {entry['name']!r} twice")
        names.add(entry["name"])
        unknown = set(entry) - {"name", "replicas", *_MODEL_FIELDS}
        if unknown:
            raise CommandError(f"model {entry['name']!r}: unknown keys {sorted(unknown)}")
    return entries


def sync_models(*, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Upsert ``entries``; returns a report per model of what changed."""
    report = []
    with transaction.atomic():
        for entry in _validate(entries):
            fields = {key: entry[key] for key in _MODEL_FIELDS if key in entry}
            fields.setdefault("upstream_model", entry["name"])
            model, created = ServedModel.objects.get_or_create(name=entry["name"], defaults=fields)
            changed = [key for key, value in fields.items() if getattr(model, key) != value]
            if changed and not created:
                for key in changed:
                    setattr(model, key, fields[key])
                model.save(update_fields=changed)
            specs = _replica_specs(entry)
            listed = {url for url, _ in specs}
            replicas_added, replicas_updated = [], []
            for url, api_key in specs:
                replica, made = EngineReplica.objects.get_or_create(
                    model=model, base_url=url, defaults={"api_key": api_key, "enabled": True}
                )
                if made:
                    replicas_added.append(url)
                elif not replica.enabled or replica.api_key != api_key:
                    replica.enabled = True
                    replica.api_key = api_key
                    replica.save(update_fields=["enabled", "api_key"])
                    replicas_updated.append(url)
            stale = model.replicas.filter(enabled=True).exclude(base_url__in=listed)
            replicas_disabled = sorted(stale.values_list("base_url", flat=True))
            stale.update(enabled=False)
            report.append(
                {
                    "name": model.name,
                    "created": created,
                    "updated_fields": [] if created else changed,
                    "replicas_added": replicas_added,
                    "replicas_updated": replicas_updated,
                    "replicas_disabled": replicas_disabled,
                }
            )
    return report


class Command(BaseCommand):
    help = "Create or update served models and their vLLM replicas from settings.ENGINE_MODELS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        report = sync_models(entries=getattr(settings, "ENGINE_MODELS", []))
        if options["json"]:
            self.stdout.write(json.dumps({"models": report}, indent=2))
            return
        if not report:
            self.stdout.write("ENGINE_MODELS is empty: nothing to sync.")
        for item in report:
            if item["created"]:
                state = "created"
            elif item["updated_fields"]:
                state = f"updated ({', '.join(item['updated_fields'])})"
            else:
                state = "unchanged"
            self.stdout.write(f"model {item['name']}: {state}")
            for url in item["replicas_added"]:
                self.stdout.write(f"  + replica {url}")
            for url in item["replicas_updated"]:
                self.stdout.write(f"  ~ replica {url} (re-enabled or key changed)")
            for url in item["replicas_disabled"]:
                self.stdout.write(f"  - replica {url} (disabled)")
