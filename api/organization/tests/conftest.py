from __future__ import annotations

import httpx
import openai
import pytest
from django.test import Client

from tenants.models import ApiKey
from tenants.services.api_keys import api_key_issue


def django_transport(*, strict_csrf: bool = False) -> httpx.MockTransport:
    """Requests from the SDK go through Django's whole stack in this process (middleware,
    gateway, DRF), against the test database, without a socket."""
    client = Client(enforce_csrf_checks=strict_csrf)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("content-length", "host", "content-type")
        }
        answer = client.generic(
            request.method,
            request.url.raw_path.decode(),
            data=request.content,
            content_type=request.headers.get("content-type", "application/octet-stream"),
            headers=headers,
        )
        return httpx.Response(
            answer.status_code,
            headers={name: value for name, value in answer.items()},
            content=answer.content,
        )

    return httpx.MockTransport(handler)


def admin_client(secret: str, *, strict: bool = True) -> openai.OpenAI:
    return openai.OpenAI(
        admin_api_key=secret,
        base_url="http://platform.test/v1",
        http_client=httpx.Client(transport=django_transport()),
        max_retries=0,
        _strict_response_validation=strict,
    )


@pytest.fixture
def acme_admin(cast):
    """Acme's admin key, issued by Alice (Acme's owner)."""
    issued = api_key_issue(
        organization=cast.alice.organization,
        name="acme admin",
        kind=ApiKey.Kind.ADMIN,
        created_by=cast.alice.user,
    )
    return issued


@pytest.fixture
def admin(acme_admin) -> openai.OpenAI:
    return admin_client(acme_admin.secret)


@pytest.fixture
def globex_admin(cast) -> openai.OpenAI:
    issued = api_key_issue(
        organization=cast.charlie.organization, name="globex admin", kind=ApiKey.Kind.ADMIN
    )
    return admin_client(issued.secret)
