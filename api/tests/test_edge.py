"""The HTTP edge (reliability issue, item 5): refusals in the envelope before the body is read
or when it never comes, long URLs and malformed lengths, security and cache headers on every
answer, CORS off by default, and log lines a request cannot forge.

Two tiers: the ASGI layer alone (what holds under any server), and a real daphne over raw
sockets (what daphne decides before the application runs)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import httpx
import pytest
from django.test import AsyncClient

from api.asgi import BodyLimitMiddleware
from core.logging import EscapeControlCharactersFilter
from testsupport.live_server import DaphneProcess

SECURITY = ("x-content-type-options", "x-frame-options", "referrer-policy")


# --- the ASGI layer ---------------------------------------------------------------------------


class OkApp:
    async def __call__(self, scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app, *, method="POST", path="/v1/responses", headers=(), receive=None, query=b""):
    sent: list[dict] = []

    async def one_body():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": query, "headers": list(headers)}  # fmt: skip
    await app(scope, receive or one_body, send)
    return sent


def envelope(sent) -> dict:
    return json.loads(sent[1]["body"])["error"]


def header_names(start) -> set[bytes]:
    return {name for name, _ in start["headers"]}


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1e3", b" -5 "])
async def test_a_malformed_content_length_is_a_400_envelope(value):
    sent = await call(BodyLimitMiddleware(OkApp()), headers=[(b"content-length", value)])
    assert sent[0]["status"] == 400
    assert envelope(sent)["type"] == "invalid_request_error"


async def test_conflicting_content_lengths_are_a_400():
    sent = await call(
        BodyLimitMiddleware(OkApp()),
        headers=[(b"content-length", b"2"), (b"content-length", b"3")],
    )
    assert sent[0]["status"] == 400


async def test_a_huge_content_length_is_a_413_not_a_crash():
    sent = await call(BodyLimitMiddleware(OkApp()), headers=[(b"content-length", b"9" * 5000)])
    assert sent[0]["status"] == 413


async def test_a_body_that_never_arrives_is_a_408(settings):
    settings.REQUEST_BODY_TIMEOUT_SECONDS = 0.2
    never = asyncio.Event()

    async def stalled():
        await never.wait()

    sent = await call(
        BodyLimitMiddleware(OkApp()), headers=[(b"content-length", b"10")], receive=stalled
    )
    assert sent[0]["status"] == 408
    assert envelope(sent)["code"] == "request_timeout"


async def test_a_long_url_is_a_414():
    sent = await call(BodyLimitMiddleware(OkApp()), method="GET", query=b"q=" + b"x" * 17000)
    assert sent[0]["status"] == 414
    assert envelope(sent)["code"] == "request_uri_too_long"


async def test_every_answer_gets_the_security_headers():
    sent = await call(BodyLimitMiddleware(OkApp()))
    assert sent[0]["status"] == 200
    assert {name.encode() for name in SECURITY} <= header_names(sent[0])
    refused = await call(BodyLimitMiddleware(OkApp()), headers=[(b"content-length", b"-1")])
    assert {name.encode() for name in SECURITY} <= header_names(refused[0])
    admin = await call(BodyLimitMiddleware(OkApp()), method="GET", path="/admin/login/")
    assert b"content-security-policy" in header_names(admin[0])
    assert b"content-security-policy" not in header_names(sent[0])


# --- Django: headers, CORS, logs ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_api_answers_are_not_cacheable(transactional_cast):
    cast = transactional_cast
    ok = await AsyncClient().get("/v1/models", headers=cast.alice.headers)
    assert ok.status_code == 200
    assert ok["Cache-Control"] == "no-store"
    refused = await AsyncClient().get("/v1/models")
    assert refused.status_code == 401
    assert refused["Cache-Control"] == "no-store"


@pytest.mark.django_db
async def test_cors_is_off_by_default(cast):
    preflight = await AsyncClient().options(
        "/v1/responses",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.django_db(transaction=True)
async def test_cors_allows_configured_origins_and_answers_preflight_without_a_key(
    transactional_cast, settings
):
    cast = transactional_cast
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    preflight = await AsyncClient().options(
        "/v1/responses",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight["access-control-allow-origin"] == "https://app.example"
    assert "idempotency-key" in preflight["access-control-allow-headers"]
    answer = await AsyncClient().get(
        "/v1/models", headers={**cast.alice.headers, "Origin": "https://app.example"}
    )
    assert answer["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in answer["access-control-expose-headers"]
    other = await AsyncClient().get(
        "/v1/models", headers={**cast.alice.headers, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    # The admin is never opened to other origins.
    admin = await AsyncClient().get("/admin/login/", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in admin.headers


@pytest.mark.django_db(transaction=True)
async def test_a_request_cannot_forge_log_lines(transactional_cast, caplog):
    cast = transactional_cast
    caplog.set_level(logging.INFO, logger="api")
    await AsyncClient().get(
        "/v1/models%0a2026-01-01 INFO [req_x] api: GET /v1/admin 200 1ms%00",
        headers=cast.alice.headers,
    )
    records = [r for r in caplog.records if r.name == "api"]
    assert records
    escape = EscapeControlCharactersFilter()
    for record in records:
        escape.filter(record)
        message = record.getMessage()
        assert "\n" not in message and "\x00" not in message
        assert "\\n2026-01-01" in message


def test_the_console_handler_escapes_before_it_writes():
    from django.conf import settings

    assert "escape_control" in settings.LOGGING["handlers"]["console"]["filters"]


# --- a real daphne ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker):
    server = DaphneProcess(
        {"REQUEST_BODY_TIMEOUT_SECONDS": "1", "MAX_REQUEST_BODY_BYTES": str(1024 * 1024)}
    ).start()
    yield server
    server.stop()


def exchange(server, head: bytes, *, body: bytes = b"", wait: float = 15.0) -> bytes:
    """Send ``head`` (and ``body``), then read until the server closes or answers fully."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(head + body)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                headers, _, rest = received.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":", 1)[1])
                    for line in headers.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
        return received


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.django_db(transaction=True)
def test_daphne_refuses_a_declared_oversized_body_before_reading_it(daphne):
    # 100 MiB declared, none of it sent: the answer comes from the headers alone.
    raw = exchange(
        daphne,
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n",
        body=b"{" * 1000,
    )
    status, headers, body = parse(raw)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert set(SECURITY) <= set(headers)


@pytest.mark.django_db(transaction=True)
def test_daphne_times_out_a_body_that_never_arrives(daphne):
    raw = exchange(
        daphne,
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n",
        body=b'{"model"',
    )
    status, _, body = parse(raw)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"


@pytest.mark.django_db(transaction=True)
def test_daphne_answers_a_long_url_with_an_envelope(daphne):
    raw = exchange(daphne, b"GET /v1/models?q=" + b"x" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = parse(raw)
    assert status == 414
    assert json.loads(body)["error"]["code"] == "request_uri_too_long"


@pytest.mark.django_db(transaction=True)
def test_daphne_answers_a_negative_content_length_with_an_envelope(daphne):
    raw = exchange(daphne, b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    status, headers, body = parse(raw)
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert set(SECURITY) <= set(headers)


@pytest.mark.django_db(transaction=True)
def test_daphne_answers_carry_security_headers_including_401(daphne):
    refused = httpx.get(f"{daphne.base_url}/v1/models")
    assert refused.status_code == 401
    for name in SECURITY:
        assert name in refused.headers
    assert refused.headers["cache-control"] == "no-store"
    admin = httpx.get(f"{daphne.base_url}/admin/login/")
    assert "default-src 'self'" in admin.headers["content-security-policy"]
    assert admin.headers["x-frame-options"] == "DENY"
    # An ordinary body still goes through (the refusal hooks leave it alone).
    ok = httpx.post(
        f"{daphne.base_url}/v1/responses", content=b"{}",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert ok.status_code == 401
