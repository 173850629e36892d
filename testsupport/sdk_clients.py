"""The official ``openai`` SDK wired to Django in this process: its requests go through the whole
stack (middleware, gateway, DRF) against the test database, with no socket and no server."""

from __future__ import annotations

import httpx
import openai
from django.test import Client


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
        # The SDK takes an httpx.Client as well as its own httpx2.Client (see
        # is_legacy_httpx_sync_client); its annotation names only the latter.
        http_client=httpx.Client(transport=django_transport()),  # type: ignore[arg-type]
        max_retries=0,
        _strict_response_validation=strict,
    )
