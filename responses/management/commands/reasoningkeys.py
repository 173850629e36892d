"""Keys for encrypted reasoning (``REASONING_ENCRYPTION_KEYS``); the rotation procedure is in
``docs/encrypted-reasoning.md``."""

import hashlib

from django.conf import settings
from django.core.management.base import BaseCommand

from responses.services.encrypted_reasoning import reasoning_key_generate


def _fingerprint(key: str) -> str:
    # Enough to tell keys apart in a runbook without printing the secret itself.
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Command(BaseCommand):
    help = (
        "generate: print a new Fernet key for REASONING_ENCRYPTION_KEYS (put it first in the "
        "list to rotate). status: the configured keys' fingerprints, newest first."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["generate", "status"])

    def handle(self, *args, action: str, **options):
        if action == "generate":
            self.stdout.write(reasoning_key_generate())
            return
        keys = settings.REASONING_ENCRYPTION_KEYS
        if not keys:
            self.stdout.write(
                "No key configured: include=reasoning.encrypted_content is refused (400)."
            )
            return
        for position, key in enumerate(keys):
            role = "encrypts and decrypts" if position == 0 else "decrypts only"
            self.stdout.write(f"{position + 1}. {_fingerprint(key)} ({role})")
        self.stdout.write(f"Blobs expire after {settings.REASONING_ENCRYPTION_TTL_SECONDS} s.")
