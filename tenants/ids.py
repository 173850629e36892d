"""Public identifiers: ``<prefix>_<24 base62 characters>`` (~143 bits), OpenAI-style."""

from __future__ import annotations

import secrets
import string

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
