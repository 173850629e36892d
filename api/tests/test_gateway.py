"""The API gateway: error envelope (M2), headers (M5, L7), authentication, body limits (E4)."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from django.test import AsyncClient, Client

from tenants.services.api_keys import api_key_revoke

pytestmark = pytest.mark.django_db

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def assert_envelope(response, *, status: int, type: str, code: str | None = None):  # noqa: A002
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ENVELOPE_KEYS
    assert body["error"]["type"] == type
    assert body["error"]["code"] == code
    assert response["x-request-id"]
    assert response["openai-version"] == "2020-10-01"
    return body["error"]


def test_it_rejects_a_missing_key(client: Client):
    error = assert_envelope(
        client.get("/v1/models"), status=401, type="invalid_request_error", code="invalid_api_key"
    )
    assert "API key" in error["message"]


def test_it_rejects_an_unknown_key(client: Client, cast):
    bogus = cast.alice.secret[:-8] + "AAAAAAAA"
    error = assert_envelope(
        client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {bogus}"),
        status=401,
        type="invalid_request_error",
        code="invalid_api_key",
    )
    assert bogus not in error["message"]


def test_it_rejects_a_revoked_key_on_the_next_request(client: Client, cast):
    assert client.get("/v1/models", **cast.alice.auth).status_code == 200
    api_key_revoke(api_key=cast.alice.api_key)
    assert_envelope(
        client.get("/v1/models", **cast.alice.auth),
        status=401,
        type="invalid_request_error",
        code="invalid_api_key",
    )


def test_it_rejects_an_expired_key(client: Client, cast):
    from django.utils import timezone

    cast.alice.api_key.expires_at = timezone.now()
    cast.alice.api_key.save()
    assert client.get("/v1/models", **cast.alice.auth).status_code == 401


@pytest.mark.compliance("M1")
def test_it_accepts_the_azure_api_key_header(client: Client, cast):
    response = client.get("/openai/v1/models", HTTP_API_KEY=cast.alice.secret)
    assert response.status_code == 200


def test_it_refuses_session_cookie_authentication(client: Client, cast):
    cast.alice.user.is_staff = True
    cast.alice.user.is_superuser = True
    cast.alice.user.save()
    client.force_login(cast.alice.user)
    assert client.get("/admin/").status_code == 200  # the session is valid for the admin…
    assert_envelope(  # …and worthless on the API
        client.get("/v1/models"), status=401, type="invalid_request_error", code="invalid_api_key"
    )


def test_unknown_route_is_a_404_envelope(client: Client, cast):
    error = assert_envelope(
        client.get("/v1/nothing-here", **cast.alice.auth), status=404, type="invalid_request_error"
    )
    assert error["message"] == "Invalid URL (GET /v1/nothing-here)"


def test_wrong_method_is_a_405_envelope(client: Client, cast):
    assert_envelope(
        client.post("/v1/models", data="{}", content_type="application/json", **cast.alice.auth),
        status=405,
        type="invalid_request_error",
        code="method_not_allowed",
    )


@pytest.mark.urls("api.tests.urls")
def test_malformed_json_is_a_400_envelope(client: Client, cast):
    response = client.post(
        "/v1/test-echo", data=b'{"model": ', content_type="application/json", **cast.alice.auth
    )
    error = assert_envelope(response, status=400, type="invalid_request_error")
    assert "could not parse the JSON body" in error["message"]


@pytest.mark.urls("api.tests.urls")
def test_deep_json_through_a_view_is_a_400_envelope(client: Client, cast):
    response = client.post(
        "/v1/test-echo",
        data=b"[" * 50_000 + b"]" * 50_000,
        content_type="application/json",
        **cast.alice.auth,
    )
    assert_envelope(response, status=400, type="invalid_request_error", code="json_too_deep")


@pytest.mark.urls("api.tests.urls")
def test_a_read_only_key_cannot_write(client: Client, cast):
    response = client.post(
        "/v1/test-echo", data=b"{}", content_type="application/json", **cast.bob.auth
    )
    assert_envelope(
        response, status=403, type="invalid_request_error", code="insufficient_permissions"
    )


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000 + b"]" * 100_000, json.dumps(_nested := {"a": None}).encode()],
)
def test_deeply_nested_json_is_a_400_not_a_crash(settings, payload):
    from core.errors import InvalidRequest
    from core.json_body import parse_json_body

    settings.MAX_JSON_DEPTH = 64
    if payload.startswith(b"["):
        with pytest.raises(InvalidRequest) as raised:
            parse_json_body(payload)
        assert raised.value.code == "json_too_deep"
    else:
        assert parse_json_body(payload) == {"a": None}


def test_depth_limit_is_exact(settings):
    from core.errors import InvalidRequest
    from core.json_body import parse_json_body

    settings.MAX_JSON_DEPTH = 8
    assert parse_json_body(b"[" * 8 + b"]" * 8)
    with pytest.raises(InvalidRequest):
        parse_json_body(b"[" * 9 + b"]" * 9)


@pytest.mark.urls("api.tests.urls")
@pytest.mark.parametrize("path", ["/v1/test-boom", "/v1/test-async-boom"])
def test_unhandled_exception_is_a_500_naming_the_request_id(client: Client, cast, path, caplog):
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR):
        response = client.get(path, **cast.alice.auth, HTTP_X_REQUEST_ID="req-trace-me")
    error = assert_envelope(response, status=500, type="server_error", code="server_error")
    assert "req-trace-me" in error["message"]
    assert "secret internal detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert any(getattr(r, "request_id", None) == "req-trace-me" for r in caplog.records)


@pytest.mark.urls("api.tests.urls")
@pytest.mark.django_db(transaction=True)
async def test_unhandled_exception_under_asgi_is_a_500_envelope(transactional_cast):
    client = AsyncClient(raise_request_exception=False)
    response = await client.get("/v1/test-async-boom", headers=transactional_cast.alice.headers)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


@pytest.mark.compliance("M5")
def test_every_answer_carries_the_openai_headers(client: Client, cast):
    response = client.get("/v1/models", **cast.bob.auth)
    assert response.status_code == 200
    assert re.fullmatch(r"req_[0-9a-f]{32}", response["x-request-id"])
    assert response["openai-version"] == "2020-10-01"
    assert int(response["openai-processing-ms"]) >= 0
    assert response["openai-organization"] == cast.bob.organization.public_id
    assert response["openai-project"] == cast.bob.api_key.project.public_id
    # An org-level key has no project header.
    assert "openai-project" not in client.get("/v1/models", **cast.alice.auth)


@pytest.mark.compliance("L7")
def test_a_well_formed_client_request_id_is_honoured(client: Client, cast):
    response = client.get("/v1/models", **cast.alice.auth, HTTP_X_CLIENT_REQUEST_ID="trace-123")
    assert response["x-request-id"] == "trace-123"
    response = client.get("/v1/models", **cast.alice.auth, HTTP_X_REQUEST_ID="abc.def:42")
    assert response["x-request-id"] == "abc.def:42"


def test_a_malformed_client_request_id_is_replaced(client: Client, cast):
    response = client.get("/v1/models", **cast.alice.auth, HTTP_X_REQUEST_ID="bad id <script>")
    assert response["x-request-id"].startswith("req_")


def test_errors_carry_the_headers_too(client: Client):
    response = client.get("/v1/models", HTTP_X_CLIENT_REQUEST_ID="trace-err")
    assert response.status_code == 401
    assert response["x-request-id"] == "trace-err"
    assert "openai-processing-ms" in response


@pytest.mark.compliance("M2", "M5")
def test_organization_header_must_match_the_key(client: Client, cast):
    ok = client.get(
        "/v1/models", **cast.alice.auth, HTTP_OPENAI_ORGANIZATION=cast.alice.organization.public_id
    )
    assert ok.status_code == 200
    assert_envelope(
        client.get(
            "/v1/models",
            **cast.alice.auth,
            HTTP_OPENAI_ORGANIZATION=cast.charlie.organization.public_id,
        ),
        status=401,
        type="invalid_request_error",
        code="mismatched_organization",
    )


@pytest.mark.compliance("M5")
def test_project_header_is_honoured_within_the_organization(client: Client, cast):
    mobile = cast.bob.api_key.project
    response = client.get("/v1/models", **cast.alice.auth, HTTP_OPENAI_PROJECT=mobile.public_id)
    assert response.status_code == 200
    assert response["openai-project"] == mobile.public_id


def test_project_header_from_another_organization_is_refused(client: Client, cast):
    foreign = cast.charlie.organization.projects.first()
    assert_envelope(
        client.get("/v1/models", **cast.alice.auth, HTTP_OPENAI_PROJECT=foreign.public_id),
        status=401,
        type="invalid_request_error",
        code="mismatched_project",
    )


def test_a_project_key_cannot_switch_projects(client: Client, cast):
    other = cast.alice.organization.projects.exclude(pk=cast.bob.api_key.project_id).first()
    assert_envelope(
        client.get("/v1/models", **cast.bob.auth, HTTP_OPENAI_PROJECT=other.public_id),
        status=401,
        type="invalid_request_error",
        code="mismatched_project",
    )


def test_request_id_is_on_every_log_line_of_the_request(client: Client, cast, caplog):
    from core.logging import RequestIdFilter

    handler_filter = RequestIdFilter()
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            handler_filter.filter(record)
            seen.append(record.request_id)

    capture = Capture(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(capture)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection):  # turns on SQL debug logging
            client.get("/v1/models", **cast.alice.auth, HTTP_X_REQUEST_ID="req-logged")
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    assert seen, "the request produced no log lines"
    assert set(seen) == {"req-logged"}


def test_no_plaintext_key_in_logs(client: Client, cast, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/v1/models", **cast.alice.auth)
        client.get("/v1/nothing", **cast.alice.auth)
        client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {cast.alice.secret}x")
    assert cast.alice.secret not in caplog.text


def test_redaction_filter_masks_keys():
    from core.logging import RedactSecretsFilter

    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "header was %s", ("sk-rp-abcdefghijkl",), None
    )
    RedactSecretsFilter().filter(record)
    assert "abcdefghijkl" not in record.getMessage()


def test_health_endpoints_answer_json(client: Client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    body = ready.json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert "engines" in body["checks"]


def test_readyz_reports_a_dead_engine(client: Client):
    from engines.models import EngineReplica, ServedModel

    model = ServedModel.objects.create(name="dead", upstream_model="dead")
    EngineReplica.objects.create(model=model, base_url="http://127.0.0.1:9/v1")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["engines"]["models"]["dead"]["healthy_replicas"] == 0


@pytest.mark.compliance("M3")
def test_an_unreachable_database_is_a_503_envelope_not_an_html_page():
    """A real daphne whose database refuses connections (nothing listens on its port): the key
    lookup fails inside the gateway, and the client gets OpenAI's envelope with a 503 (which
    the SDK retries), never Django's HTML error page."""
    from engines.embedded.server import free_port
    from testsupport.live_server import DaphneProcess

    unreachable = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    daphne = DaphneProcess({"DATABASE_URL": unreachable, "DATABASE_POOL_TIMEOUT": "1"}).start()
    try:
        from tenants.services.api_keys import generate_secret

        headers = {"Authorization": f"Bearer {generate_secret()}"}  # well-formed: looked up
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/responses")):
            response = httpx.request(
                method, f"{daphne.base_url}{path}", headers=headers, json={}, timeout=30
            )
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/json")
            error = response.json()["error"]
            assert error["type"] == "server_error"
            assert error["code"] == "service_unavailable"
            assert response.headers["x-request-id"] in error["message"]
            # M3: when to retry, from how long the database has been failing (a fresh outage
            # in this process: about a second; never a header-less 503).
            wait_ms = int(response.headers["retry-after-ms"])
            assert 1000 <= wait_ms <= 30_000
            assert response.headers["retry-after"] == str(-(-wait_ms // 1000))
    finally:
        daphne.stop()


@pytest.mark.compliance("M3")
def test_an_outage_clock_backs_off_as_long_as_the_outage_lasts(monkeypatch):
    from core import errors

    now = [1000.0]
    monkeypatch.setattr(errors.time, "monotonic", lambda: now[0])
    clock = errors.OutageClock(quiet=10, ceiling=30)
    assert clock.failed() == 1000  # a fresh outage: retry in a second
    now[0] += 7
    assert clock.failed() == 7000  # it has lasted 7 s: wait as long again
    now[0] += 9
    assert clock.failed() == 16_000
    now[0] += 100
    assert clock.failed() == 1000  # quiet for long: the next failure starts a new outage
    assert errors.retry_after_headers(1500) == {"retry-after": "2", "retry-after-ms": "1500"}
