from django.core.management.base import BaseCommand, CommandError

from tenants.selectors import api_key_get_by_ref
from tenants.services.api_keys import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key (by key_… id or its displayed prefix). Effective immediately."

    def add_arguments(self, parser):
        parser.add_argument("key", help="key public id (key_…) or prefix (sk-rp-…)")

    def handle(self, *args, key: str, **options):
        api_key = api_key_get_by_ref(ref=key)
        if api_key is None:
            raise CommandError(f"No API key {key!r}.")
        if api_key_revoke(api_key=api_key):
            self.stdout.write(f"Revoked {api_key.public_id} ({api_key.redacted_value}).")
        else:
            self.stdout.write(f"{api_key.public_id} was already revoked.")
