"""Public identifiers: ``<prefix>_<24 base62 characters>`` (~143 bits), OpenAI-style."""

from __future__ import annotations

import secrets
import string
from datetime import datetime, timedelta

from django.utils import timezone

BASE62 = string.digits + string.ascii_letters


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_public_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_base62(length)}"


def new_organization_id() -> str:
    return new_public_id("org")


def new_project_id() -> str:
    return new_public_id("proj")


def new_api_key_id() -> str:
    return new_public_id("key")


def new_invite_id() -> str:
    return new_public_id("invite")


def new_invite_token() -> str:
    return secrets.token_urlsafe(32)


INVITE_LIFETIME = timedelta(days=7)


def invite_expiry() -> datetime:
    return timezone.now() + INVITE_LIFETIME
