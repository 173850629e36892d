"""The official openai SDK against a live daphne server (the foundation's endpoints)."""

from __future__ import annotations

import httpx
import openai
import pytest

from engines.models import ServedModel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(live_daphne, transactional_cast):
    ServedModel.objects.create(name="smollm2-test", upstream_model="smollm2")
    return openai.OpenAI(
        base_url=f"{live_daphne}/v1", api_key=transactional_cast.alice.secret, max_retries=0
    )


def test_the_sdk_lists_and_retrieves_models(sdk):
    page = sdk.models.list()
    assert [m.id for m in page.data] == ["smollm2-test"]
    assert sdk.models.retrieve("smollm2-test").object == "model"


@pytest.mark.compliance("M2")
def test_the_sdk_raises_the_right_exceptions(sdk, live_daphne):
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk.models.retrieve("nope")
    assert not_found.value.code == "model_not_found"
    assert not_found.value.request_id.startswith("req_")
    bad = openai.OpenAI(base_url=f"{live_daphne}/v1", api_key="sk-rp-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        bad.models.list()
    assert unauthorized.value.code == "invalid_api_key"


@pytest.mark.compliance("M5")
def test_headers_on_the_wire(live_daphne, transactional_cast):
    ServedModel.objects.create(name="m", upstream_model="m")
    response = httpx.get(f"{live_daphne}/v1/models", headers=transactional_cast.alice.headers)
    assert response.status_code == 200
    for header in ("x-request-id", "openai-processing-ms", "openai-version", "openai-organization"):
        assert header in response.headers
    missing = httpx.get(f"{live_daphne}/v1/nope", headers=transactional_cast.alice.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
    wrong = httpx.delete(f"{live_daphne}/v1/models", headers=transactional_cast.alice.headers)
    assert wrong.status_code == 405


def test_admin_assets_are_served_locally(live_daphne):
    response = httpx.get(f"{live_daphne}/static/admin/css/base.css")
    assert response.status_code == 200
    assert "text/css" in response.headers["content-type"]
