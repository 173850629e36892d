"""The Prometheus endpoint (protected; ledger numbers, time to first token, limiter decisions,
replica health) and the staff engine-health page, against a real daphne and a fake vLLM."""

from __future__ import annotations

import httpx
import openai
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from engines.models import EngineReplica, ServedModel
from quotas.services.limits import limits_set
from testsupport.fake_vllm import FakeBehavior
from testsupport.live_server import DaphneProcess

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "metrics-test-token"


@pytest.fixture(scope="module")
def server(django_db_setup):
    served = DaphneProcess({"METRICS_TOKEN": TOKEN, "QUOTA_LIMITS_CACHE_SECONDS": "0"}).start()
    yield served
    served.stop()


def test_metrics_are_protected_and_report_requests_ttft_limiter_and_replicas(
    server, fake_vllm_factory, transactional_cast
):
    fake = fake_vllm_factory(behavior=FakeBehavior(text="metrics answer", prompt_tokens=4))
    model = ServedModel.objects.create(
        name="metrics-model", upstream_model="up", default_max_output_tokens=16
    )
    EngineReplica.objects.create(model=model, base_url=fake.base_url)
    alice = transactional_cast.alice
    limits_set(organization=alice.organization, requests_per_minute=1000)
    client = openai.OpenAI(api_key=alice.secret, base_url=f"{server.base_url}/v1", max_retries=0)
    assert client.responses.create(model=model.name, input="hi").output_text == "metrics answer"

    url = f"{server.base_url}/metrics"
    assert httpx.get(url, timeout=60).status_code == 404
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=60).status_code == 404
    # An API key is not a metrics credential either.
    assert (
        httpx.get(url, headers={"Authorization": f"Bearer {alice.secret}"}, timeout=60).status_code
        == 404
    )
    answer = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    org, name = alice.organization.public_id, model.name
    assert f'rp_responses_total{{model="{name}",organization="{org}"}} 1.0' in text
    assert (
        f'rp_time_to_first_token_seconds_count{{model="{name}",organization="{org}"}} 1.0' in text
    )
    assert f'rp_limiter_decisions_total{{decision="allowed",organization="{org}"}} 1.0' in text
    assert (
        f'rp_engine_replica_healthy{{model="{name}",replica="{fake.base_url.rstrip("/")}"}} 1.0'
        in text
    )
    assert 'rp_responses_open{mode="background",status="queued"} 0.0' in text


def test_metrics_for_a_staff_session(transactional_cast):
    staff = get_user_model().objects.create_user("ops", is_staff=True)
    browser = Client()
    assert browser.get("/metrics").status_code == 404
    browser.force_login(transactional_cast.bob.user)  # a member, not staff
    assert browser.get("/metrics").status_code == 404
    browser.force_login(staff)
    assert b"rp_responses_open" in browser.get("/metrics").content


def test_engine_health_page_lists_each_replica(fake_vllm_factory, transactional_cast):
    fake = fake_vllm_factory()
    model = ServedModel.objects.create(name="health-model", upstream_model="up")
    EngineReplica.objects.create(model=model, base_url=fake.base_url)
    EngineReplica.objects.create(model=model, base_url="http://127.0.0.1:9/v1")  # nothing there
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "x")
    browser = Client()
    assert browser.get("/admin/engines/health/").status_code == 302  # staff only
    browser.force_login(staff)
    page = browser.get("/admin/engines/health/").content.decode()
    assert page.count("<tr>") >= 3 and "health-model" in page
    assert "healthy" in page and "unhealthy" in page and " ms" in page
    model_page = browser.get(f"/admin/engines/servedmodel/{model.pk}/change/").content.decode()
    assert 'id="replica-health"' in model_page and "unhealthy" in model_page
