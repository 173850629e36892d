"""Schema fuzzing (issue 14): Schemathesis drives a live daphne from its own ``/openapi.json``.

Every operation of the document (the Azure aliases and the Administration API, with an admin
key, included) gets generated requests, valid and invalid; every answer must be no 5xx, have a
documented status and content type, carry the documented headers, and match the documented
schema (errors: the envelope). Creates reach a fake vLLM replica: half of the generated bodies get
a model that exists, so valid requests run a real generation and the others exercise
``model_not_found``.

Bounded for CI: a fixed number of examples per operation (``FUZZ_EXAMPLES``, default 25) and no
shrinking phase; the whole module (about 100 operations) takes about two minutes on the 2-core
CI machine.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engines.models import EngineReplica, ServedModel
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_issue
from testsupport.fake_vllm import FakeBehavior

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def fuzz_target(live_daphne, transactional_cast, fake_vllm_factory):
    fake = fake_vllm_factory(behavior=FakeBehavior(text="Fuzzed answer."))
    model = ServedModel.objects.create(name=f"fuzz-{fake.port}", upstream_model="fuzz")
    EngineReplica.objects.create(model=model, base_url=fake.base_url)
    # The Administration API takes admin keys only: with the ordinary key it would only ever
    # answer 401, and its own validation would go unfuzzed.
    admin = api_key_issue(
        organization=transactional_cast.alice.organization, name="fuzz", kind=ApiKey.Kind.ADMIN
    )
    yield {
        "base_url": live_daphne,
        "model": model.name,
        "headers": {"Authorization": f"Bearer {transactional_cast.alice.secret}"},
        "admin_headers": {"Authorization": f"Bearer {admin.secret}"},
    }
    # Every operation runs inside this one test (as subtests): by now some generated creates
    # must have reached the engine, or the fuzzing only ever saw validation errors.
    assert fake.chat_requests(), "no generated request reached the engine"


@pytest.fixture
def api_schema(live_daphne):
    return schemathesis.openapi.from_url(f"{live_daphne}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_document(case, fuzz_target):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str) and len(body["model"]) % 2:
        body["model"] = fuzz_target["model"]
    admin = case.path.startswith("/v1/organization/")
    case.call_and_validate(
        base_url=fuzz_target["base_url"],
        headers=fuzz_target["admin_headers" if admin else "headers"],
        checks=CHECKS,
        timeout=30,
    )
