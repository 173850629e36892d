"""``manage.py setlimits`` and ``manage.py usage`` (table and --json), and the admin pages with
their charts."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from quotas.models import QuotaLimit, UsageDaily
from quotas.services.ledger import TokenUsage, usage_record_open, usage_record_settle
from tenants.models import ApiKey, Project

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _turn(
    organization, response_id: str, *, model: str = "m1", tokens=(30, 70), status="completed"
):
    usage_record_open(
        response_id=response_id,
        request_id="",
        organization_id=organization.pk,
        project_id=None,
        api_key_id=None,
        model=model,
        service_tier="default",
        stored=True,
        reserved_tokens=500,
    )
    usage_record_settle(
        response_id=response_id,
        status=status,
        usage=TokenUsage(
            input_tokens=tokens[0], cached_tokens=10, output_tokens=tokens[1], reasoning_tokens=5
        ),
    )


def test_setlimits_creates_and_updates_one_scope(cast):
    out = run(
        "setlimits",
        "--org",
        "acme",
        "--rpm",
        "5",
        "--tpm",
        "10000",
        "--concurrency",
        "2",
        "--monthly-tokens",
        "1000000",
    )
    assert "requests per minute  5" in out and "(hard)" in out
    row = QuotaLimit.objects.get(organization=cast.alice.organization, project=None, api_key=None)
    assert (row.requests_per_minute, row.tokens_per_minute, row.max_concurrent) == (5, 10_000, 2)
    data = json.loads(run("setlimits", "--org", "acme", "--rpm", "none", "--soft", "--json"))
    assert data["requests_per_minute"] is None and data["tokens_per_minute"] == 10_000
    assert data["budget_is_hard"] is False and data["monthly_token_budget"] == 1_000_000
    assert QuotaLimit.objects.count() == 1


def test_setlimits_for_a_project_and_a_key(cast):
    mobile = Project.objects.get(organization=cast.alice.organization, name="Mobile")
    run("setlimits", "--org", "acme", "--project", mobile.public_id, "--rpm", "3")
    run(
        "setlimits",
        "--org",
        cast.alice.organization.public_id,
        "--key",
        cast.alice.api_key.public_id,
        "--tpm",
        "500",
    )
    assert QuotaLimit.objects.get(project=mobile).requests_per_minute == 3
    assert QuotaLimit.objects.get(api_key=cast.alice.api_key).tokens_per_minute == 500


@pytest.mark.parametrize(
    "args",
    [
        ["--org", "nope", "--rpm", "1"],
        ["--org", "acme", "--rpm", "0"],
        ["--org", "acme", "--rpm", "lots"],
        ["--org", "acme", "--project", "proj_missing", "--rpm", "1"],
        ["--org", "globex", "--key", "KEY_OF_ALICE", "--rpm", "1"],  # another org's key
        ["--org", "acme", "--key", "KEY_OF_ALICE", "--monthly-tokens", "5"],  # no key budgets
    ],
)
def test_setlimits_refuses_bad_input(cast, args):
    args = [cast.alice.api_key.public_id if a == "KEY_OF_ALICE" else a for a in args]
    with pytest.raises(CommandError):
        run("setlimits", *args)
    assert not QuotaLimit.objects.exclude(monthly_token_budget=None).filter(api_key__isnull=False)


def test_usage_as_a_table_and_as_json(cast):
    acme = cast.alice.organization
    _turn(acme, "resp_a")
    _turn(acme, "resp_b", model="m2", tokens=(100, 200))
    _turn(acme, "resp_c", status="failed", tokens=(10, 0))
    _turn(cast.charlie.organization, "resp_other")  # another organization: never shown
    UsageDaily.objects.filter(organization=acme, model="m1").update(rate_limited=4)
    run("setlimits", "--org", "acme", "--monthly-tokens", "1000")

    today = timezone.now().date()
    table = run("usage", "--org", "acme", "--since", (today - timedelta(days=3)).isoformat())
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["DAY", "MODEL", "REQUESTS"]
    m1 = next(line for line in lines if " m1 " in line).split()
    assert m1[:4] == [today.isoformat(), "m1", "2", "1"]  # two turns, one failed
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    assert total[1:] == ["3", "1", "140", "30", "270", "15", "410", "4", "0"]
    assert "410 used, 0 reserved of 1,000 — ok" in table

    data = json.loads(run("usage", "--org", acme.slug, "--since", today.isoformat(), "--json"))
    assert data["organization"] == acme.public_id
    assert {row["model"] for row in data["days"]} == {"m1", "m2"}
    assert data["totals"]["total_tokens"] == 410 and data["totals"]["rate_limited"] == 4
    assert data["budgets"] == [
        {
            "scope": "organization",
            "month": today.replace(day=1).isoformat(),
            "budget": 1000,
            "hard": True,
            "used": 410,
            "reserved": 0,
            "state": "ok",
        }
    ]
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert json.loads(run("usage", "--org", "acme", "--since", tomorrow, "--json"))["days"] == []


def test_usage_refuses_bad_dates_and_organizations(cast):
    with pytest.raises(CommandError):
        run("usage", "--org", "acme", "--since", "yesterday")
    with pytest.raises(CommandError):
        run("usage", "--org", "nope", "--since", "2026-01-01")


# --- admin -----------------------------------------------------------------------------------


@pytest.fixture
def staff_client(cast) -> Client:
    client = Client()
    cast.alice.user.is_staff = True
    cast.alice.user.is_superuser = True
    cast.alice.user.save()
    client.force_login(cast.alice.user)
    return client


def test_the_usage_page_draws_the_four_charts_inline(staff_client, cast):
    _turn(cast.alice.organization, "resp_a")
    _turn(cast.alice.organization, "resp_b", model="m2")
    UsageDaily.objects.filter(organization=cast.charlie.organization).delete()
    UsageDaily.objects.create(
        organization=cast.charlie.organization,
        day=timezone.now().date(),
        model="m1",
        quota_exceeded=3,
    )
    html = staff_client.get("/admin/quotas/usagedaily/").content.decode()
    assert html.count('class="quota-chart"') == 4
    for title in (
        "Tokens per day by model",
        "Requests per day",
        "Cost per day by model",
        "429s per organization",
    ):
        assert title in html
    assert "<polyline" in html and "<rect" in html
    assert "Globex" in html  # the 429 chart names the organization
    charts = html.split('id="quota-charts"')[1].split("<!-- /quota-charts -->")[0]
    assert "<script" not in charts and "<img" not in charts  # inline SVG, nothing to fetch
    assert "cdn" not in html.lower()
    filtered = staff_client.get(
        f"/admin/quotas/usagedaily/?organization__id__exact={cast.charlie.organization.pk}"
    ).content.decode()
    charts = filtered.split('id="quota-charts"')[1].split("<!-- /quota-charts -->")[0]
    assert "Globex" in charts and "m2" not in charts and "Acme" not in charts  # follows filters


def test_limits_and_budgets_in_the_admin(staff_client, cast):
    acme = cast.alice.organization
    response = staff_client.post(
        "/admin/quotas/quotalimit/add/",
        {
            "organization": acme.pk,
            "project": "",
            "api_key": "",
            "requests_per_minute": "60",
            "tokens_per_minute": "",
            "max_concurrent": "",
            "monthly_token_budget": "100",
            "budget_is_hard": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    _turn(acme, "resp_a")  # 100 tokens: at the soft budget
    listing = staff_client.get("/admin/quotas/quotalimit/").content.decode()
    assert "over budget (soft)" in listing
    counters = staff_client.get("/admin/quotas/monthlyusage/?budget=over").content.decode()
    assert "over budget (soft)" in counters and "100 (soft)" in counters
    for page in ("usagerecord", "monthlyusage"):
        assert staff_client.get(f"/admin/quotas/{page}/").status_code == 200
    assert staff_client.get("/admin/quotas/usagerecord/add/").status_code == 403


def test_the_admin_refuses_a_key_of_another_organization(staff_client, cast):
    response = staff_client.post(
        "/admin/quotas/quotalimit/add/",
        {
            "organization": cast.alice.organization.pk,
            "project": "",
            "api_key": ApiKey.objects.get(organization=cast.charlie.organization).pk,
            "requests_per_minute": "1",
            "tokens_per_minute": "",
            "max_concurrent": "",
            "monthly_token_budget": "",
            "budget_is_hard": "on",
        },
    )
    assert response.status_code == 200
    assert "belongs to another organization" in response.content.decode()
