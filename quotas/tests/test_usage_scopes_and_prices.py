"""``manage.py usage`` for one project or key and without --since; prices and costs in the
ledger, the rollup and the admin."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from quotas.models import ModelPrice, UsageDaily, UsageRecord
from quotas.services.ledger import TokenUsage, usage_record_open, usage_record_settle
from responses.models import StoredResponse
from tenants.models import Project

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _turn(cast, response_id, *, project=None, api_key=None, model="m1", status="completed"):
    usage_record_open(
        response_id=response_id,
        request_id="",
        organization_id=cast.alice.organization.pk,
        project_id=project.pk if project else None,
        api_key_id=api_key.pk if api_key else None,
        model=model,
        service_tier="default",
        stored=True,
        reserved_tokens=10,
    )
    usage_record_settle(
        response_id=response_id,
        status=status,
        usage=TokenUsage(input_tokens=1000, output_tokens=500),
    )


def test_usage_defaults_to_this_month_and_filters_by_project_and_key(cast):
    mobile = Project.objects.get(organization=cast.alice.organization, name="Mobile")
    _turn(cast, "resp_1", project=mobile, api_key=cast.bob.api_key)
    _turn(cast, "resp_2", api_key=cast.alice.api_key, status="failed")
    everything = json.loads(run("usage", "--org", "acme", "--json"))
    assert everything["totals"]["requests"] == 2
    by_project = json.loads(run("usage", "--org", "acme", "--project", mobile.public_id, "--json"))
    assert by_project["totals"]["requests"] == 1 and by_project["project"] == mobile.public_id
    by_key = json.loads(
        run("usage", "--org", "acme", "--key", cast.alice.api_key.public_id, "--json")
    )
    assert by_key["totals"]["requests"] == 1 and by_key["totals"]["failed_requests"] == 1
    by_prefix = run("usage", "--org", "acme", "--key", cast.bob.api_key.prefix)
    assert "TOTAL      " in by_prefix and "Cost:" in by_prefix
    with pytest.raises(CommandError):
        run("usage", "--org", "acme", "--key", cast.charlie.api_key.public_id)
    with pytest.raises(CommandError):
        run("usage", "--org", "globex", "--project", mobile.public_id)


def test_prices_make_costs_in_the_ledger_and_the_rollup(cast):
    ModelPrice.objects.create(
        model="m1", input_per_million=Decimal("3"), output_per_million=Decimal("15")
    )
    _turn(cast, "resp_p")
    _turn(cast, "resp_free", model="unpriced")
    assert UsageRecord.objects.get(response_id="resp_p").cost == Decimal("0.0105")
    assert UsageRecord.objects.get(response_id="resp_free").cost == 0
    assert UsageDaily.objects.get(organization=cast.alice.organization, model="m1").cost == Decimal(
        "0.0105"
    )
    data = json.loads(run("usage", "--org", "acme", "--json"))
    assert Decimal(data["totals"]["cost"]) == Decimal("0.0105")


@pytest.fixture
def staff(cast) -> Client:
    cast.alice.user.is_staff = cast.alice.user.is_superuser = True
    cast.alice.user.save()
    client = Client()
    client.force_login(cast.alice.user)
    return client


def test_admin_shows_prices_costs_and_a_usage_records_error(staff, cast):
    ModelPrice.objects.create(model="m1", input_per_million=Decimal("1"))
    _turn(cast, "resp_err", status="failed")
    StoredResponse.objects.create(
        public_id="resp_err",
        organization=cast.alice.organization,
        model="m1",
        status="failed",
        body={"error": {"code": "server_error", "message": "engine down"}},
    )
    listing = staff.get("/admin/quotas/usagerecord/").content.decode()
    assert "server_error" in listing and "0.00100000" in listing
    assert staff.get("/admin/quotas/modelprice/").status_code == 200
    detail = staff.get("/admin/responses/storedresponse/?q=resp_err").content.decode()
    assert "resp_err" in detail
    response = StoredResponse.objects.get(public_id="resp_err")
    page = staff.get(f"/admin/responses/storedresponse/{response.pk}/change/").content.decode()
    assert "engine down" in page and "Stored event stream" in page


def test_stored_responses_admin_filters_and_searches(staff, cast):
    for index, status in enumerate(("completed", "failed")):
        StoredResponse.objects.create(
            public_id=f"resp_s{index}",
            organization=cast.alice.organization,
            model="m1",
            status=status,
            request_id=f"req_find_{index}",
            body={},
        )
    failed = staff.get("/admin/responses/storedresponse/?status__exact=failed").content.decode()
    assert "resp_s1" in failed and "resp_s0" not in failed
    by_request = staff.get("/admin/responses/storedresponse/?q=req_find_0").content.decode()
    assert "resp_s0" in by_request and "resp_s1" not in by_request
    by_org = staff.get("/admin/responses/storedresponse/?q=acme").content.decode()
    assert "resp_s0" in by_org and "resp_s1" in by_org
    assert staff.get("/admin/responses/responsesession/").status_code == 200
