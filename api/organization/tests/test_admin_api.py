"""The Administration API driven by the official SDK's admin client, unchanged (its paths, its
parameters, its response models with strict validation), through Django's whole stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai
import pytest
from django.core.management import call_command

from quotas.models import ModelPrice, QuotaLimit, UsageRecord
from quotas.services.ledger import TokenUsage, usage_record_open, usage_record_settle
from quotas.services.limits import limits_for
from tenants.models import ApiKey, Invite, Membership, Project
from tenants.services.api_keys import api_key_find_active
from testsupport.sdk_clients import admin_client

pytestmark = pytest.mark.django_db


def test_projects_create_list_retrieve_update_archive(admin, cast):
    created = admin.admin.organization.projects.create(name="Search")
    assert created.id.startswith("proj_") and created.object == "organization.project"
    assert created.status == "active" and created.archived_at is None

    names = [project.name for project in admin.admin.organization.projects.list()]
    assert names == ["Default project", "Mobile", "Search"]

    renamed = admin.admin.organization.projects.update(created.id, name="Search v2")
    assert (
        admin.admin.organization.projects.retrieve(created.id).name == renamed.name == "Search v2"
    )

    archived = admin.admin.organization.projects.archive(created.id)
    assert archived.status == "archived" and archived.archived_at is not None
    assert "Search v2" not in [p.name for p in admin.admin.organization.projects.list()]
    assert "Search v2" in [
        p.name for p in admin.admin.organization.projects.list(include_archived=True)
    ]


def test_project_list_paginates_with_the_sdks_cursor(admin, cast):
    for index in range(5):
        admin.admin.organization.projects.create(name=f"P{index}")
    first = admin.admin.organization.projects.list(limit=3)
    assert len(first.data) == 3 and first.has_more
    everything = [project.name for project in admin.admin.organization.projects.list(limit=3)]
    assert everything == ["Default project", "Mobile", "P0", "P1", "P2", "P3", "P4"]


def test_duplicate_project_name_is_a_400(admin, cast):
    with pytest.raises(openai.BadRequestError) as caught:
        admin.admin.organization.projects.create(name="Mobile")
    assert caught.value.body["param"] == "name"


def test_project_api_keys_secret_once_list_redacted_update_revoke(admin, cast):
    project = admin.admin.organization.projects.create(name="Backend")
    created = admin.post(
        f"/organization/projects/{project.id}/api_keys",
        body={"name": "ci", "scopes": ["api.all.read"]},
        cast_to=dict,
        options={"security": {"admin_api_key_auth": True}},
    )
    secret = created["value"]
    assert secret.startswith("sk-rp-")
    listed = list(admin.admin.organization.projects.api_keys.list(project.id))
    assert [key.id for key in listed] == [created["id"]]
    assert listed[0].redacted_value != secret and secret not in listed[0].model_dump_json()
    assert listed[0].owner.type == "service_account"

    key = api_key_find_active(secret=secret)
    assert key.project.public_id == project.id and key.scope == ApiKey.Scope.READ_ONLY

    updated = admin.admin.organization.projects.api_keys.update(
        created["id"], project_id=project.id, scopes=["api.responses.write"]
    )
    assert updated.model_extra["scopes"] == ["api.responses.write"]

    deleted = admin.admin.organization.projects.api_keys.delete(
        created["id"], project_id=project.id
    )
    assert deleted.deleted and deleted.id == created["id"]
    assert api_key_find_active(secret=secret) is None


def test_keys_made_by_a_person_name_their_owner(admin, cast):
    mobile = Project.objects.get(organization=cast.alice.organization, name="Mobile")
    key = admin.admin.organization.projects.api_keys.retrieve(
        cast.bob.api_key.public_id, project_id=mobile.public_id
    )
    assert key.owner.type == "user" and key.owner.user.email == "bob@example.com"
    assert key.owner.user.role == "member"


def test_rate_limits_list_and_update_reach_the_limiter(admin, cast):
    mobile = Project.objects.get(organization=cast.alice.organization, name="Mobile")
    limits = admin.admin.organization.projects.rate_limits.list_rate_limits(mobile.public_id)
    [limit] = limits.data
    updated = admin.admin.organization.projects.rate_limits.update_rate_limit(
        limit.id,
        project_id=mobile.public_id,
        max_requests_per_1_minute=7,
        max_tokens_per_1_minute=9000,
    )
    assert updated.max_requests_per_1_minute == 7 and updated.max_tokens_per_1_minute == 9000
    row = QuotaLimit.objects.get(project=mobile)
    assert (row.requests_per_minute, row.tokens_per_minute) == (7, 9000)
    effective = limits_for(organization=cast.alice.organization, project=mobile, api_key=None)
    assert [scope.requests_per_minute for scope in effective.scopes] == [7]

    cleared = admin.admin.organization.projects.rate_limits.update_rate_limit(
        limit.id, project_id=mobile.public_id, max_requests_per_1_minute=0
    )
    assert cleared.max_requests_per_1_minute == 0
    assert QuotaLimit.objects.get(project=mobile).requests_per_minute is None


def test_users_list_role_change_and_removal(admin, cast):
    users = list(admin.admin.organization.users.list())
    assert sorted((user.email, user.role) for user in users) == [
        ("alice@example.com", "owner"),
        ("bob@example.com", "reader"),
    ]
    bob = next(user for user in users if user.email == "bob@example.com")
    promoted = admin.admin.organization.users.update(bob.id, role="owner")
    assert promoted.role == "owner"
    assert Membership.objects.get(user=cast.bob.user).role == Membership.Role.OWNER

    alice = next(user for user in users if user.email == "alice@example.com")
    removed = admin.admin.organization.users.delete(alice.id)
    assert removed.deleted
    # Bob is now the last owner: he cannot be removed or demoted.
    with pytest.raises(openai.BadRequestError, match="at least one owner"):
        admin.admin.organization.users.delete(bob.id)
    with pytest.raises(openai.BadRequestError, match="at least one owner"):
        admin.admin.organization.users.update(bob.id, role="reader")


def test_users_of_another_organization_are_not_found(admin, cast):
    charlie_id = f"user-{cast.charlie.user.pk}"
    with pytest.raises(openai.NotFoundError):
        admin.admin.organization.users.retrieve(charlie_id)
    with pytest.raises(openai.NotFoundError):
        admin.admin.organization.users.delete(charlie_id)


def test_invites_create_list_retrieve_delete(admin, cast):
    invite = admin.admin.organization.invites.create(email="dana@example.com", role="reader")
    assert (
        invite.status == "pending" and invite.role == "reader" and invite.id.startswith("invite_")
    )
    assert [i.email for i in admin.admin.organization.invites.list()] == ["dana@example.com"]
    assert admin.admin.organization.invites.retrieve(invite.id).email == "dana@example.com"
    with pytest.raises(openai.BadRequestError, match="pending invitation"):
        admin.admin.organization.invites.create(email="dana@example.com", role="owner")
    with pytest.raises(openai.BadRequestError, match="already a member"):
        admin.admin.organization.invites.create(email="bob@example.com", role="reader")
    assert admin.admin.organization.invites.delete(invite.id).deleted
    assert not Invite.objects.exists()


def test_admin_api_keys_create_list_delete(admin, acme_admin, cast):
    created = admin.admin.organization.admin_api_keys.create(name="terraform")
    assert created.value.startswith("sk-adm-")
    ids = [key.id for key in admin.admin.organization.admin_api_keys.list()]
    assert ids == [acme_admin.api_key.public_id, created.id]
    second = admin_client(created.value)
    assert [p.name for p in second.admin.organization.projects.list()][:1] == ["Default project"]
    assert admin.admin.organization.admin_api_keys.delete(created.id).deleted
    with pytest.raises(openai.AuthenticationError):
        second.admin.organization.projects.list()


def test_admin_keys_only_work_on_the_administration_api(acme_admin, cast, client):
    answer = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {acme_admin.secret}")
    assert answer.status_code == 401
    assert "Administration API" in answer.json()["error"]["message"]
    answer = client.post(
        "/v1/responses",
        data={"model": "m", "input": "hi"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {acme_admin.secret}",
    )
    assert answer.status_code == 401


def test_ordinary_keys_are_refused_by_the_administration_api(cast):
    with pytest.raises(openai.AuthenticationError, match="admin API key"):
        admin_client(cast.alice.secret).admin.organization.projects.list()


def test_another_organizations_objects_are_404(admin, globex_admin, cast):
    globex_project = globex_admin.admin.organization.projects.create(name="Secret")
    with pytest.raises(openai.NotFoundError):
        admin.admin.organization.projects.retrieve(globex_project.id)
    with pytest.raises(openai.NotFoundError):
        admin.admin.organization.projects.api_keys.list(globex_project.id)
    with pytest.raises(openai.NotFoundError):
        admin.admin.organization.projects.archive(globex_project.id)
    with pytest.raises(openai.NotFoundError):
        admin.admin.organization.admin_api_keys.retrieve(
            ApiKey.objects.get(name="globex admin").public_id
        )


def _turn(cast, *, response_id, model, created_at, usage, project=None, api_key=None):
    usage_record_open(
        response_id=response_id,
        request_id="req_1",
        organization_id=cast.alice.organization.pk,
        project_id=project.pk if project else None,
        api_key_id=(api_key or cast.alice.api_key).pk,
        model=model,
        service_tier="default",
        stored=True,
        reserved_tokens=100,
    )
    UsageRecord.objects.filter(response_id=response_id).update(created_at=created_at)
    usage_record_settle(response_id=response_id, status="completed", usage=usage)


def test_usage_completions_buckets_grouped_by_project_and_model(admin, cast):
    mobile = Project.objects.get(organization=cast.alice.organization, name="Mobile")
    day = datetime(2026, 3, 2, tzinfo=UTC)
    _turn(
        cast,
        response_id="resp_a",
        model="small",
        created_at=day + timedelta(hours=1),
        usage=TokenUsage(input_tokens=10, cached_tokens=4, output_tokens=5),
    )
    _turn(
        cast,
        response_id="resp_b",
        model="small",
        created_at=day + timedelta(hours=2),
        usage=TokenUsage(input_tokens=20, output_tokens=1),
        project=mobile,
        api_key=cast.bob.api_key,
    )
    _turn(
        cast,
        response_id="resp_c",
        model="big",
        created_at=day + timedelta(days=1),
        usage=TokenUsage(input_tokens=3, output_tokens=3),
    )

    page = admin.admin.organization.usage.completions(
        start_time=int(day.timestamp()),
        end_time=int((day + timedelta(days=3)).timestamp()),
    )
    assert [len(bucket.results) for bucket in page.data] == [1, 1, 0]
    first = page.data[0].results[0]
    assert (first.input_tokens, first.output_tokens, first.num_model_requests) == (30, 6, 2)
    assert first.input_cached_tokens == 4

    grouped = admin.admin.organization.usage.completions(
        start_time=int(day.timestamp()),
        end_time=int((day + timedelta(days=1)).timestamp()),
        group_by=["project_id", "model"],
    )
    results = {(r.project_id, r.model, r.num_model_requests) for r in grouped.data[0].results}
    assert results == {(None, "small", 1), (mobile.public_id, "small", 1)}

    by_key = admin.admin.organization.usage.completions(
        start_time=int(day.timestamp()),
        end_time=int((day + timedelta(days=1)).timestamp()),
        api_key_ids=[cast.bob.api_key.public_id],
        bucket_width="1h",
    )
    counts = [sum(r.num_model_requests for r in b.results) for b in by_key.data]
    assert counts[2] == 1 and sum(counts) == 1


def test_usage_pages_follow_next_page(admin, cast):
    day = datetime(2026, 3, 2, tzinfo=UTC)
    _turn(
        cast,
        response_id="resp_late",
        model="small",
        created_at=day + timedelta(days=9),
        usage=TokenUsage(input_tokens=1, output_tokens=1),
    )
    start, end = int(day.timestamp()), int((day + timedelta(days=10)).timestamp())
    first = admin.admin.organization.usage.completions(start_time=start, end_time=end)
    assert len(first.data) == 7 and first.has_more and first.next_page
    second = admin.admin.organization.usage.completions(
        start_time=start, end_time=end, page=first.next_page
    )
    assert len(second.data) == 3 and not second.has_more
    assert sum(len(b.results) for b in second.data) == 1


def test_usage_rejects_bad_parameters_with_400(admin, cast):
    with pytest.raises(openai.BadRequestError) as caught:
        admin.admin.organization.usage.completions(start_time=0, bucket_width="1w")
    assert caught.value.body["param"] == "bucket_width"
    with pytest.raises(openai.BadRequestError):
        admin.admin.organization.usage.completions(start_time=0, group_by=["user_id"])
    with pytest.raises(openai.BadRequestError):
        admin.get(
            "/organization/usage/completions",
            cast_to=dict,
            options={"security": {"admin_api_key_auth": True}},
        )


def test_costs_use_the_models_price_at_settlement(admin, cast):
    ModelPrice.objects.create(
        model="small",
        input_per_million=Decimal("2"),
        cached_input_per_million=Decimal("1"),
        output_per_million=Decimal("8"),
    )
    day = datetime(2026, 3, 2, tzinfo=UTC)
    _turn(
        cast,
        response_id="resp_p",
        model="small",
        created_at=day + timedelta(hours=3),
        usage=TokenUsage(input_tokens=1_000_000, cached_tokens=500_000, output_tokens=250_000),
    )
    record = UsageRecord.objects.get(response_id="resp_p")
    assert record.cost == Decimal("3.5")  # 0.5M×2 + 0.5M×1 + 0.25M×8 = 1 + 0.5 + 2
    costs = admin.admin.organization.usage.costs(
        start_time=int(day.timestamp()),
        end_time=int((day + timedelta(days=1)).timestamp()),
        group_by=["line_item"],
    )
    [result] = costs.data[0].results
    assert result.amount.value == 3.5 and result.amount.currency == "usd"
    assert result.line_item == "small"


def test_createapikey_admin_flag_issues_an_admin_key(cast, capsys):
    call_command("createapikey", "--org", "acme", "--admin", "--json")
    out = capsys.readouterr().out
    assert '"kind": "admin"' in out and '"secret": "sk-adm-' in out


def test_no_client_input_gives_a_5xx(admin, cast):
    project = Project.objects.filter(organization=cast.alice.organization).first()
    odd_inputs = [
        ("GET", "/organization/projects?limit=abc", None),
        ("GET", "/organization/projects?limit=100000", None),
        ("GET", "/organization/projects?after=proj_nope", None),
        ("GET", "/organization/users?after=nonsense", None),
        ("GET", "/organization/usage/completions?start_time=99999999999999999999", None),
        ("GET", "/organization/usage/completions?start_time=1&page=garbage", None),
        ("GET", "/organization/usage/completions?start_time=1&page=page_999999999999999999", None),
        ("GET", "/organization/usage/completions?start_time=-99999999999999", None),
        ("GET", "/organization/costs?start_time=1&bucket_width=1h", None),
        ("POST", f"/organization/projects/{project.public_id}/rate_limits/other", b"{}"),
        ("POST", f"/organization/projects/{project.public_id}", b"{not json"),
        ("POST", f"/organization/projects/{project.public_id}", b'{"name": 5}'),
        ("POST", f"/organization/projects/{project.public_id}", b"[]"),
        ("POST", "/organization/invites", b'{"email": "x@example.com", "role": "king"}'),
        ("POST", "/organization/invites", b'{"email": "nope", "role": "reader"}'),
        ("DELETE", "/organization/projects", None),
        ("GET", "/organization/nothing-here", None),
    ]
    for method, path, body in odd_inputs:
        response = admin._client.request(
            method,
            f"http://platform.test/v1{path}",
            content=body,
            headers={
                "Authorization": f"Bearer {admin.admin_api_key}",
                "Content-Type": "application/json",
            },
        )
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("path", "status", "param"),
    [
        ("/v1/organization/projects?after=a%00b", 400, "after"),
        ("/v1/organization/users?emails=a%00b", 400, "emails"),
        ("/v1/organization/projects/proj_a%00b", 404, "project_id"),
        ("/v1/organization/invites/a%00b", 404, "invite_id"),
    ],
)
def test_a_nul_character_in_an_id_or_a_query_value_is_a_4xx_not_a_500(
    acme_admin, client, path, status, param
):
    # Found by the schema fuzzing: PostgreSQL text cannot hold NUL, so the lookups failed with
    # a database error.
    answer = client.get(path, HTTP_AUTHORIZATION=f"Bearer {acme_admin.secret}")
    assert answer.status_code == status, answer.content[:300]
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize("project_key", [False, True])
def test_a_lifetime_past_any_date_is_a_400_not_a_500(acme_admin, cast, client, project_key):
    # Found by the schema fuzzing: now + 10**20 seconds overflowed the datetime (a 500).
    path = "/v1/organization/admin_api_keys"
    if project_key:
        project = Project.objects.create(organization=cast.alice.organization, name="Lifetimes")
        path = f"/v1/organization/projects/{project.public_id}/api_keys"
    answer = client.post(
        path,
        data={"name": "k", "expires_in_seconds": 10**20},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {acme_admin.secret}",
    )
    assert answer.status_code == 400, answer.content[:300]
    assert answer.json()["error"]["param"] == "expires_in_seconds"
