"""Who is calling, once the HTTP edge has authenticated the request: the key, its organization
and its project. Services take it as a plain value; they never see the HTTP request."""

from __future__ import annotations

from dataclasses import dataclass

from tenants.models import ApiKey, Organization, Project
from tenants.services.api_keys import key_allows


@dataclass(frozen=True)
class ApiPrincipal:
    api_key: ApiKey
    organization: Organization
    project: Project | None

    def allows(self, *, group: str, write: bool) -> bool:
        return key_allows(api_key=self.api_key, group=group, write=write)
