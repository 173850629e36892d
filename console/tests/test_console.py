"""The tenant console through Django's test client: roles, isolation between organizations,
keys shown once (POST-redirect-GET), usage CSV, responses, sign-in throttling and CSRF."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from quotas.models import QuotaLimit, UsageRecord
from quotas.services.ledger import TokenUsage, usage_record_open, usage_record_settle
from responses.models import StoredResponse
from tenants.models import ApiKey, Invite, Membership, Project
from tenants.services.api_keys import api_key_find_active

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-test-password-9"


@pytest.fixture
def people(cast):
    for persona in (cast.alice, cast.bob, cast.charlie):
        persona.user.set_password(PASSWORD)
        persona.user.save()
    return cast


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_console_requires_sign_in(people):
    answer = Client().get("/console/o/acme/")
    assert answer.status_code == 302 and answer["Location"].startswith("/console/login/")


def test_sign_in_then_home_goes_to_the_only_organization(people):
    client = Client()
    answer = client.post("/console/login/", {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 302
    assert client.get("/console/")["Location"] == "/console/o/acme/"


def test_sign_in_is_throttled_after_repeated_failures(people):
    client = Client()
    for _ in range(5):
        assert (
            client.post("/console/login/", {"username": "alice", "password": "no"}).status_code
            == 200
        )
    locked = client.post("/console/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429 and b"Too many failed sign-ins" in locked.content
    # Another person behind the same address is not locked out by Alice's failures.
    assert (
        client.post("/console/login/", {"username": "bob", "password": PASSWORD}).status_code == 302
    )


def test_forms_need_csrf(people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.alice.user)
    answer = client.post("/console/o/acme/keys/", {"kind": "project", "name": "x", "scope": "all"})
    assert answer.status_code == 403
    assert not ApiKey.objects.filter(name="x").exists()


def test_another_organizations_pages_are_404(people):
    charlie = signed_in(people.charlie.user)
    acme_key = people.alice.api_key.public_id
    for path in (
        "/console/o/acme/",
        "/console/o/acme/keys/",
        "/console/o/acme/members/",
        "/console/o/acme/responses/",
        "/console/o/acme/usage.csv",
        "/console/o/acme/limits/",
        "/console/o/acme/projects/",
    ):
        assert charlie.get(path).status_code == 404, path
    assert charlie.post(f"/console/o/acme/keys/{acme_key}/revoke").status_code == 404
    # Acme's key addressed through Charlie's own organization is not found either.
    assert charlie.post(f"/console/o/globex/keys/{acme_key}/revoke").status_code == 404
    assert api_key_find_active(secret=people.alice.secret) is not None


def test_owner_creates_a_key_and_its_secret_is_shown_exactly_once(people):
    alice = signed_in(people.alice.user)
    mobile = Project.objects.get(organization=people.alice.organization, name="Mobile")
    answer = alice.post(
        "/console/o/acme/keys/",
        {"kind": "project", "name": "ci", "project": mobile.pk, "scope": "all"},
    )
    assert answer.status_code == 302
    key = ApiKey.objects.get(name="ci")
    assert answer["Location"] == f"/console/o/acme/keys/{key.public_id}/created"
    page = alice.get(answer["Location"])
    secret = page.context["secret"]
    assert secret and secret.encode() in page.content and page["Cache-Control"] == "no-store"
    assert api_key_find_active(secret=secret).project == mobile
    again = alice.get(answer["Location"])
    assert again.context["secret"] is None and secret.encode() not in again.content
    assert ApiKey.objects.filter(name="ci").count() == 1


def test_key_form_lists_only_this_organizations_projects(people):
    page = signed_in(people.alice.user).get("/console/o/acme/keys/")
    choices = [
        str(label).split(" (")[0] for _, label in page.context["form"].fields["project"].choices
    ]
    assert choices == ["All projects", "Default project", "Mobile"]
    foreign = Project.objects.get(organization=people.charlie.organization)
    answer = signed_in(people.alice.user).post(
        "/console/o/acme/keys/",
        {"kind": "project", "name": "x", "project": foreign.pk, "scope": "all"},
    )
    assert answer.status_code == 200 and not ApiKey.objects.filter(name="x").exists()


def test_owner_revokes_a_key(people):
    alice = signed_in(people.alice.user)
    answer = alice.post(f"/console/o/acme/keys/{people.bob.api_key.public_id}/revoke")
    assert answer.status_code == 302
    assert api_key_find_active(secret=people.bob.secret) is None


def test_members_read_but_cannot_manage(people):
    bob = signed_in(people.bob.user)
    for path in ("/console/o/acme/", "/console/o/acme/responses/", "/console/o/acme/keys/"):
        assert bob.get(path).status_code == 200, path
    assert b"Revoke" not in bob.get("/console/o/acme/keys/").content
    assert (
        bob.post(
            "/console/o/acme/keys/", {"kind": "project", "name": "x", "scope": "all"}
        ).status_code
        == 403
    )
    assert (
        bob.post(f"/console/o/acme/keys/{people.alice.api_key.public_id}/revoke").status_code == 403
    )
    assert bob.post("/console/o/acme/projects/", {"name": "Mine"}).status_code == 403
    assert (
        bob.post(
            "/console/o/acme/members/", {"email": "x@example.com", "role": "member"}
        ).status_code
        == 403
    )
    assert bob.post(f"/console/o/acme/members/{people.alice.user.pk}/remove").status_code == 403
    assert api_key_find_active(secret=people.alice.secret) is not None


def test_admins_manage_keys_but_not_owners_or_admin_keys(people):
    Membership.objects.filter(user=people.bob.user).update(role=Membership.Role.ADMIN)
    bob = signed_in(people.bob.user)
    assert (
        bob.post(
            "/console/o/acme/keys/", {"kind": "project", "name": "ok", "scope": "all"}
        ).status_code
        == 302
    )
    assert bob.post("/console/o/acme/keys/", {"kind": "admin", "name": "adm"}).status_code == 403
    bob.post(f"/console/o/acme/members/{people.alice.user.pk}/role", {"role": "member"})
    assert Membership.objects.get(user=people.alice.user).role == Membership.Role.OWNER


def test_owner_creates_an_admin_key(people):
    alice = signed_in(people.alice.user)
    answer = alice.post("/console/o/acme/keys/", {"kind": "admin", "name": "terraform"})
    secret = alice.get(answer["Location"]).context["secret"]
    assert secret.startswith("sk-adm-") and api_key_find_active(secret=secret).is_admin


def test_invite_and_accept_with_a_new_account(people):
    alice = signed_in(people.alice.user)
    alice.post("/console/o/acme/members/", {"email": "dana@example.com", "role": "member"})
    invite = Invite.objects.get()
    page = alice.get("/console/o/acme/members/")
    assert f"/console/invite/{invite.token}/".encode() in page.content
    dana = Client()
    answer = dana.post(
        f"/console/invite/{invite.token}/",
        {"username": "dana", "email": "dana@example.com", "password": PASSWORD},
    )
    assert answer.status_code == 302 and answer["Location"] == "/console/o/acme/"
    assert Membership.objects.get(user__username="dana").role == Membership.Role.MEMBER
    assert dana.get("/console/o/acme/").status_code == 200
    assert Client().get(f"/console/invite/{invite.token}/").status_code == 404


def test_last_owner_cannot_be_removed(people):
    alice = signed_in(people.alice.user)
    alice.post(f"/console/o/acme/members/{people.alice.user.pk}/remove", follow=True)
    assert Membership.objects.filter(user=people.alice.user).exists()


def test_limits_read_only_unless_staff_allows(people):
    alice = signed_in(people.alice.user)
    assert b"Read only" in alice.get("/console/o/acme/limits/").content
    assert alice.post("/console/o/acme/limits/", {"requests_per_minute": 5}).status_code == 403
    people.alice.organization.console_edits_limits = True
    people.alice.organization.save()
    mobile = Project.objects.get(organization=people.alice.organization, name="Mobile")
    answer = alice.post(
        "/console/o/acme/limits/", {"project": mobile.public_id, "requests_per_minute": 5}
    )
    assert answer.status_code == 302
    assert QuotaLimit.objects.get(project=mobile).requests_per_minute == 5


def _settled(cast, response_id, *, status="completed", model="m1", tokens=(10, 5)):
    usage_record_open(
        response_id=response_id,
        request_id=f"req_{response_id}",
        organization_id=cast.alice.organization.pk,
        project_id=None,
        api_key_id=cast.alice.api_key.pk,
        model=model,
        service_tier="default",
        stored=True,
        reserved_tokens=10,
    )
    usage_record_settle(
        response_id=response_id,
        status=status,
        usage=TokenUsage(input_tokens=tokens[0], output_tokens=tokens[1]),
        latency_ms=42,
    )


def test_usage_page_and_csv_export(people):
    _settled(people, "resp_1", model="m1")
    _settled(people, "resp_2", model="m2", tokens=(1, 1))
    alice = signed_in(people.alice.user)
    page = alice.get("/console/o/acme/?days=7&group=model")
    assert page.context["totals"]["requests"] == 2 and page.context["totals"]["tokens"] == 17
    assert page.content.count(b'class="quota-chart"') == 3
    export = alice.get("/console/o/acme/usage.csv?days=7&group=model")
    assert export["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert {(row["model"], row["requests"]) for row in rows} == {("m1", "1"), ("m2", "1")}
    by_key = alice.get("/console/o/acme/usage.csv?days=7&group=key").content.decode()
    assert "alice (" in by_key


def test_failed_response_detail_shows_its_error(people):
    _settled(people, "resp_bad", status="failed", tokens=(3, 0))
    StoredResponse.objects.create(
        public_id="resp_bad",
        organization=people.alice.organization,
        model="m1",
        status="failed",
        request_id="req_resp_bad",
        body={
            "id": "resp_bad",
            "status": "failed",
            "output": [],
            "error": {"code": "server_error", "message": "The engine went away."},
        },
        input_items=[
            {
                "id": "msg_1",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello"}],
            }
        ],
        completed_at=timezone.now() - timedelta(seconds=1),
    )
    alice = signed_in(people.alice.user)
    listing = alice.get("/console/o/acme/responses/?status=failed")
    assert b"resp_bad" in listing.content and b"The engine went away." in listing.content
    detail = alice.get("/console/o/acme/responses/resp_bad/")
    assert b"The engine went away." in detail.content and b"req_resp_bad" in detail.content
    assert b"Hello" in detail.content
    assert (
        signed_in(people.charlie.user).get("/console/o/globex/responses/resp_bad/").status_code
        == 404
    )
    assert UsageRecord.objects.get(response_id="resp_bad").latency_ms == 42
