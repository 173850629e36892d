"""The operator's and the tenant's main journeys, in Chromium, step by step (screenshots in
``artifacts/browser/``): onboard an organization, issue and revoke a key, set a limit, see a
request in usage and in the response list, read a failed response's error, and a tenant who
cannot reach another organization's pages."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest
from django.contrib.auth import get_user_model

from engines.models import EngineReplica, ServedModel
from quotas.models import ModelPrice, QuotaLimit
from tenants.models import ApiKey, Organization
from testsupport.browser import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def _get(url: str, secret: str) -> httpx.Response:
    # A generous timeout: CI machines are small and shared.
    return httpx.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)


def _expect_text(page, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for()


def _served(upstream, name: str, upstream_model: str) -> str:
    model = ServedModel.objects.create(
        name=name, upstream_model=upstream_model, default_max_output_tokens=64
    )
    EngineReplica.objects.create(model=model, base_url=upstream.base_url)
    return model.name


def test_operator_onboards_an_organization_issues_limits_and_revokes_a_key(
    page, shots, server, transactional_cast
):
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    page.goto(f"{server.base_url}/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    shots(page, "admin sign in")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")

    # Onboard an organization: the admin makes its default project, like `createorg`.
    page.goto(f"{server.base_url}/admin/tenants/organization/add/")
    page.locator("#id_name").press_sequentially("Initech")
    assert page.input_value("#id_slug") == "initech"  # prepopulated from the name
    shots(page, "new organization form")
    page.click("input[name=_save]")
    _expect_text(page, "was added successfully")
    shots(page, "organization added")
    initech = Organization.objects.get(slug="initech")
    assert [p.name for p in initech.projects.all()] == ["Default project"]

    # Issue a key: the secret is shown once, a reload neither shows it nor issues another.
    page.goto(f"{server.base_url}/admin/tenants/apikey/add/")
    page.select_option("#id_organization", label=str(initech))
    # Only Initech's projects are offered once Initech is chosen.
    offered = page.eval_on_selector_all(
        "#id_project option:not([disabled])", "options => options.map(o => o.textContent)"
    )
    assert offered == ["---------", "Initech / Default project"]
    shots(page, "new key form offers only the organizations projects")
    page.fill("#id_name", "initech production")
    page.click("input[name=_save]")
    secret = page.inner_text("#api-key-secret").strip()
    shots(page, "key secret shown once")
    page.reload()
    _expect_text(page, "already shown")
    shots(page, "key secret gone after reload")
    assert ApiKey.objects.filter(name="initech production").count() == 1
    models_url = f"{server.base_url}/v1/models"
    assert _get(models_url, secret).status_code == 200

    # Set a limit for the new organization.
    page.goto(f"{server.base_url}/admin/quotas/quotalimit/add/")
    # The organization field is the admin's autocomplete (select2): type and pick.
    page.click("#id_organization + .select2 .select2-selection")
    page.fill(".select2-search__field", "Initech")
    page.click(".select2-results__option:has-text('Initech')")
    page.fill("#id_requests_per_minute", "120")
    page.fill("#id_tokens_per_minute", "50000")
    shots(page, "limit form")
    page.click("input[name=_save]")
    _expect_text(page, "was added successfully")
    shots(page, "limit saved")
    limit = QuotaLimit.objects.get(organization=initech)
    assert (limit.requests_per_minute, limit.tokens_per_minute) == (120, 50000)
    answer = _get(models_url, secret)
    assert answer.headers["x-ratelimit-limit-requests"] == "120"

    # Revoke it: refused from the next request on.
    page.goto(f"{server.base_url}/admin/tenants/apikey/?q=initech")
    key = ApiKey.objects.get(name="initech production")
    page.check(f"input[name=_selected_action][value='{key.pk}']")
    page.select_option("select[name=action]", "revoke_selected")
    shots(page, "revoke action")
    page.click("button[name=index]")
    _expect_text(page, "Revoked 1 key")
    shots(page, "key revoked")
    assert _get(models_url, secret).status_code == 401


def _console_sign_in(page, server, username: str) -> None:
    page.goto(f"{server.base_url}/console/")
    page.wait_for_url("**/console/login/**")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/o/**")


def test_tenant_issues_a_key_sees_usage_and_responses_reads_an_error_and_revokes(
    page, shots, server, upstream, transactional_cast
):
    alice = transactional_cast.alice.user
    alice.set_password(PASSWORD)
    alice.save()
    good = _served(upstream, "journey-ok", "up-ok")
    ModelPrice.objects.create(
        model=good, input_per_million=Decimal("1000"), output_per_million=Decimal("2000")
    )
    broken = _served(upstream, "journey-broken", "up-broken")

    _console_sign_in(page, server, "alice")
    shots(page, "usage before any request")

    # A key, created in the console: the secret once, with a copy button.
    page.click("text=API keys")
    page.fill("#new-key #id_name", "browser journey")
    shots(page, "new key form")
    page.click("#new-key button[type=submit]")
    secret = page.inner_text("#secret").strip()
    assert secret.startswith("sk-rp-")
    page.locator("#copy").wait_for()
    shots(page, "key created secret shown once")
    page.reload()
    page.locator("#secret-gone").wait_for()
    shots(page, "secret not shown again")

    # Requests with it: one that works and one the engine fails.
    client = openai.OpenAI(api_key=secret, base_url=f"{server.base_url}/v1", max_retries=0)
    ok = client.responses.create(model=good, input="Hello there")
    assert ok.output_text == "Hello from the browser journey."
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model=broken, input="Please fail")

    page.goto(f"{server.base_url}/console/o/acme/?days=7&group=model")
    assert page.inner_text("#total-requests") == "2"
    assert float(page.inner_text("#total-cost")) > 0
    shots(page, "usage with the two requests")

    page.click("nav >> text=Responses")
    _expect_text(page, ok.id)
    shots(page, "response list")
    page.click("text=failed")  # the status filter
    failed_link = page.locator("#responses a").first
    failed_id = failed_link.inner_text()
    assert failed_id != ok.id
    failed_link.click()
    page.locator("#error").wait_for()
    error_text = page.inner_text("#error")
    # What the client was told (the engine's own words stay in the operator's logs).
    assert "server_error: The model's engine failed while generating this response." in error_text
    assert page.inner_text("#status") == "failed"
    shots(page, "failed response with its error")

    page.goto(f"{server.base_url}/console/o/acme/responses/{ok.id}/")
    _expect_text(page, "Hello from the browser journey.")
    shots(page, "completed response detail")

    # Revoke the key in the console.
    page.click("nav >> text=API keys")
    key = ApiKey.objects.get(name="browser journey")
    page.click(f"tr[data-key='{key.public_id}'] button:has-text('Revoke')")
    _expect_text(page, "revoked")
    shots(page, "key revoked")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_tenant_cannot_see_another_organizations_pages_and_members_cannot_manage_keys(
    page, shots, server, transactional_cast
):
    for persona in (transactional_cast.bob, transactional_cast.charlie):
        persona.user.set_password(PASSWORD)
        persona.user.save()

    _console_sign_in(page, server, "charlie")
    shots(page, "charlie in globex")
    for path in ("/console/o/acme/", "/console/o/acme/keys/", "/console/o/acme/responses/"):
        answer = page.goto(f"{server.base_url}{path}")
        assert answer.status == 404, path
    shots(page, "acme is not found for charlie")
    page.click("text=Sign out")
    page.wait_for_url("**/console/login/**")

    _console_sign_in(page, server, "bob")
    page.click("nav >> text=API keys")
    _expect_text(page, "Only owners and admins can create or revoke keys.")
    assert page.locator("button:has-text('Revoke')").count() == 0
    shots(page, "member sees keys read only")
