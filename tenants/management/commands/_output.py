"""Shared rendering for the tenant commands: plain text for people, --json for scripts."""

from __future__ import annotations

import json
from typing import Any

from tenants.models import ApiKey


def api_key_as_dict(api_key: ApiKey, *, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": api_key.public_id,
        "name": api_key.name,
        "organization": api_key.organization.public_id,
        "project": api_key.project.public_id if api_key.project else None,
        "kind": api_key.kind,
        "scope": api_key.scope,
        "permissions": api_key.permissions,
        "redacted_value": api_key.redacted_value,
        "status": api_key.status,
        "created_at": api_key.created_at.isoformat(),
        "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None,
        "last_used_at": api_key.last_used_at.isoformat() if api_key.last_used_at else None,
    }
    if secret is not None:
        data["secret"] = secret
    return data


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)
