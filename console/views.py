"""The tenant console: server-rendered pages for an organization's owners, admins and
members. Thin views: reads through the organization-scoped selectors, writes through the same
services as the Administration API and the commands."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from console.access import Tenant, tenant_view
from console.forms import (
    AdminKeyForm,
    ApiKeyForm,
    InviteForm,
    LimitForm,
    ProjectForm,
    RoleForm,
    SignUpForm,
)
from console.throttle import login_failed, login_locked, login_succeeded
from quotas import charts
from quotas.models import MonthlyUsage, QuotaLimit, UsageRecord
from quotas.reports import usage_buckets
from quotas.selectors import budget_status_list
from quotas.services.ledger import month_start
from quotas.services.limits import limits_set
from responses.models import StoredResponse
from responses.selectors import response_events
from tenants.models import ApiKey, Invite
from tenants.selectors import (
    api_key_list,
    invite_list,
    membership_get,
    membership_list,
    organizations_of_user,
    project_get,
    project_list,
)
from tenants.services.api_keys import api_key_issue, api_key_revoke
from tenants.services.members import (
    MembershipError,
    invite_accept,
    invite_create,
    invite_delete,
    membership_remove,
    membership_role_set,
)
from tenants.services.organizations import project_archive, project_create

NEW_KEY_SESSION = "console-new-key"
PERIODS = (7, 30, 90)
GROUPS = {"model": "model", "project": "project_id", "key": "api_key_id"}


def _url(name: str, tenant: Tenant, *args) -> str:
    return reverse(f"console:{name}", args=(tenant.organization.slug, *args))


def _or_404(found, what: str):
    """``found``, the object a request names (looked up within the tenant's organization), or
    a 404 when there is none."""
    if found is None:
        raise Http404(f"No such {what}.")
    return found


def _done(request, tenant: Tenant, page: str, message: str):
    """After a change: say what was done and go back to the tenant's ``page``
    (POST-redirect-GET)."""
    messages.success(request, message)
    return redirect(_url(page, tenant))


# --- signing in ----------------------------------------------------------------------------


def _address(request) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


class ConsoleLoginView(LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if login_locked(username=username, address=_address(request)):
            form = self.get_form()
            form.errors.clear()
            context = self.get_context_data(form=form, locked=True)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_failed(username=self.request.POST.get("username", ""), address=_address(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_succeeded(username=form.get_user().get_username(), address=_address(self.request))
        return super().form_valid(form)

    def get_default_redirect_url(self):
        return reverse("console:home")


def home(request):
    if not request.user.is_authenticated:
        return redirect(f"{reverse('console:login')}?next={request.path}")
    organizations = list(organizations_of_user(user=request.user))
    if len(organizations) == 1:
        return redirect("console:usage", organizations[0].slug)
    return render(request, "console/home.html", {"organizations": organizations})


# --- usage and cost ------------------------------------------------------------------------


def _usage_selection(request, tenant: Tenant):
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    days = days if days in PERIODS else 30
    group = request.GET.get("group", "model")
    group = group if group in GROUPS else "model"
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    buckets = usage_buckets(
        organization=tenant.organization,
        start=start,
        end=today + timedelta(days=1),
        width="1d",
        group_by=(GROUPS[group],),
    )
    return days, group, buckets


def _group_labels(tenant: Tenant, group: str) -> dict[str | None, str]:
    if group == "project":
        labels: dict[str | None, str] = {
            p.public_id: p.name
            for p in project_list(organization=tenant.organization, include_archived=True)
        }
        labels[None] = "(no project)"
        return labels
    if group == "key":
        labels = {
            k.public_id: f"{k.name} ({k.redacted_value})"
            for k in api_key_list(organization=tenant.organization)
        }
        labels[None] = "(deleted key)"
        return labels
    return {}


@tenant_view()
def usage(request, tenant: Tenant):
    days, group, buckets = _usage_selection(request, tenant)
    labels = _group_labels(tenant, group)
    column = GROUPS[group]
    names: list[str] = []
    for bucket in buckets:
        for row in bucket.results:
            name = labels.get(row[column], row[column]) if labels else row[column]
            if name not in names:
                names.append(name)
    tokens = {name: [0] * len(buckets) for name in names}
    cost = {name: [0.0] * len(buckets) for name in names}
    requests = [0] * len(buckets)
    for index, bucket in enumerate(buckets):
        for row in bucket.results:
            name = labels.get(row[column], row[column]) if labels else row[column]
            tokens[name][index] += row["input_tokens"] + row["output_tokens"]
            cost[name][index] += float(row["cost"])
            requests[index] += row["requests"]
    day_list = [bucket.start.date() for bucket in buckets]
    totals = {
        "requests": sum(requests),
        "tokens": sum(sum(values) for values in tokens.values()),
        "cost": sum(sum(values) for values in cost.values()),
    }
    context = {
        "tenant": tenant,
        "days": days,
        "group": group,
        "periods": PERIODS,
        "groups": list(GROUPS),
        "totals": totals,
        "charts": [
            charts.line_chart(title=f"Tokens per day by {group}", days=day_list, series=tokens),
            charts.bar_chart(
                title="Requests per day",
                labels=[f"{day:%m-%d}" for day in day_list],
                series={"requests": requests},
            ),
            charts.bar_chart(
                title=f"Cost per day by {group} (USD)",
                labels=[f"{day:%m-%d}" for day in day_list],
                series=cost,
                whole=False,
            ),
        ],
        "budgets": budget_status_list(organization=tenant.organization),
    }
    return render(request, "console/usage.html", context)


@tenant_view()
def usage_csv(request, tenant: Tenant):
    days, group, buckets = _usage_selection(request, tenant)
    labels = _group_labels(tenant, group)
    column = GROUPS[group]
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = (
        f'attachment; filename="usage-{tenant.organization.slug}-{days}d-by-{group}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(
        [
            "day",
            group,
            "requests",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
        ]
    )
    for bucket in buckets:
        for row in bucket.results:
            key = row[column]
            writer.writerow(
                [
                    f"{bucket.start:%Y-%m-%d}",
                    labels.get(key, key) if labels else key,
                    row["requests"],
                    row["input_tokens"],
                    row["cached_tokens"],
                    row["output_tokens"],
                    row["reasoning_tokens"],
                    f"{row['cost']:.8f}",
                ]
            )
    return response


# --- projects ------------------------------------------------------------------------------


@tenant_view()
def projects(request, tenant: Tenant):
    form = ProjectForm(request.POST or None)
    if request.method == "POST":
        if not tenant.manages:
            raise PermissionDenied("Only owners and admins can create projects.")
        if form.is_valid():
            name = form.cleaned_data["name"]
            if (
                project_list(organization=tenant.organization, include_archived=True)
                .filter(name=name)
                .exists()
            ):
                form.add_error("name", "A project with this name already exists.")
            else:
                project_create(organization=tenant.organization, name=name)
                return _done(request, tenant, "projects", f"Project {name} created.")
    return render(
        request,
        "console/projects.html",
        {
            "tenant": tenant,
            "form": form,
            "projects": project_list(organization=tenant.organization, include_archived=True),
        },
    )


@require_POST
@tenant_view(manage=True)
def project_archive_view(request, tenant: Tenant, project_id: str):
    project = _or_404(project_get(organization=tenant.organization, ref=project_id), "project")
    project_archive(project=project)
    return _done(
        request, tenant, "projects", f"Project {project.name} archived; its keys were revoked."
    )


# --- keys ----------------------------------------------------------------------------------


@tenant_view()
def keys(request, tenant: Tenant):
    organization = tenant.organization
    form = ApiKeyForm(organization=organization)
    admin_form = AdminKeyForm()
    if request.method == "POST":
        if not tenant.manages:
            raise PermissionDenied("Only owners and admins can create keys.")
        kind = request.POST.get("kind", ApiKey.Kind.PROJECT)
        if kind == ApiKey.Kind.ADMIN:
            if not tenant.is_owner:
                raise PermissionDenied("Only owners can create admin keys.")
            admin_form = AdminKeyForm(request.POST)
            if admin_form.is_valid():
                issued = api_key_issue(
                    organization=organization,
                    name=admin_form.cleaned_data["name"],
                    kind=ApiKey.Kind.ADMIN,
                    created_by=request.user,
                )
                return _show_new_key(request, tenant, issued)
        else:
            form = ApiKeyForm(request.POST, organization=organization)
            if form.is_valid():
                days = form.cleaned_data.get("expires_in_days")
                issued = api_key_issue(
                    organization=organization,
                    project=form.cleaned_data.get("project"),
                    name=form.cleaned_data["name"],
                    scope=form.cleaned_data["scope"],
                    permissions=form.permissions(),
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                    created_by=request.user,
                )
                return _show_new_key(request, tenant, issued)
    all_keys = api_key_list(organization=organization).select_related("created_by")
    return render(
        request,
        "console/keys.html",
        {
            "tenant": tenant,
            "form": form,
            "admin_form": admin_form,
            "keys": [k for k in all_keys if k.kind == ApiKey.Kind.PROJECT],
            "admin_keys": [k for k in all_keys if k.kind == ApiKey.Kind.ADMIN]
            if tenant.manages
            else [],
        },
    )


def _show_new_key(request, tenant: Tenant, issued):
    """POST-redirect-GET: the secret waits in the session for exactly one GET of the page
    that shows it, so reloading that page neither shows it again nor issues another key."""
    request.session[NEW_KEY_SESSION] = {"id": issued.api_key.public_id, "secret": issued.secret}
    return redirect(_url("key_created", tenant, issued.api_key.public_id))


def _key_or_404(tenant: Tenant, key_id: str) -> ApiKey:
    key = api_key_list(organization=tenant.organization).filter(public_id=key_id).first()
    return _or_404(key, "key")


@tenant_view(manage=True)
def key_created(request, tenant: Tenant, key_id: str):
    key = _key_or_404(tenant, key_id)
    pending = request.session.get(NEW_KEY_SESSION)
    secret = None
    if pending and pending.get("id") == key_id:
        secret = pending["secret"]
        del request.session[NEW_KEY_SESSION]
    response = render(
        request, "console/key_created.html", {"tenant": tenant, "key": key, "secret": secret}
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@tenant_view(manage=True)
def key_revoke(request, tenant: Tenant, key_id: str):
    key = _key_or_404(tenant, key_id)
    if key.kind == ApiKey.Kind.ADMIN and not tenant.is_owner:
        raise PermissionDenied("Only owners can revoke admin keys.")
    api_key_revoke(api_key=key)
    return _done(request, tenant, "keys", f"Key {key.name} ({key.redacted_value}) revoked.")


# --- members and invitations ----------------------------------------------------------------


@tenant_view()
def members(request, tenant: Tenant):
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        if not tenant.manages:
            raise PermissionDenied("Only owners and admins can invite.")
        if form.is_valid():
            try:
                invite = invite_create(
                    organization=tenant.organization,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    created_by=request.user,
                    acting_role=tenant.role,
                )
            except MembershipError as error:
                form.add_error(None, str(error))
            else:
                return _done(request, tenant, "members", f"Invitation for {invite.email} created.")
    invites = (
        [
            (invite, request.build_absolute_uri(reverse("console:invite", args=(invite.token,))))
            for invite in invite_list(organization=tenant.organization)
            if invite.status == Invite.Status.PENDING
        ]
        if tenant.manages
        else []
    )
    return render(
        request,
        "console/members.html",
        {
            "tenant": tenant,
            "form": form,
            "members": membership_list(organization=tenant.organization),
            "invites": invites,
            # A ChoiceField; base_fields is typed with the Field base class.
            "roles": RoleForm.base_fields["role"].choices,  # type: ignore[attr-defined]
        },
    )


def _member_or_404(tenant: Tenant, user_id: int):
    return _or_404(membership_get(organization=tenant.organization, user_id=user_id), "member")


@require_POST
@tenant_view(manage=True)
def member_role(request, tenant: Tenant, user_id: int):
    membership = _member_or_404(tenant, user_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            membership_role_set(
                membership=membership, role=form.cleaned_data["role"], acting_role=tenant.role
            )
            messages.success(request, f"{membership.user} is now {membership.role}.")
        except MembershipError as error:
            messages.error(request, str(error))
    return redirect(_url("members", tenant))


@require_POST
@tenant_view(manage=True)
def member_remove(request, tenant: Tenant, user_id: int):
    membership = _member_or_404(tenant, user_id)
    try:
        membership_remove(membership=membership, acting_role=tenant.role)
        messages.success(request, f"{membership.user} was removed.")
    except MembershipError as error:
        messages.error(request, str(error))
    return redirect(_url("members", tenant))


@require_POST
@tenant_view(manage=True)
def invite_revoke(request, tenant: Tenant, invite_id: str):
    invite = invite_list(organization=tenant.organization).filter(public_id=invite_id).first()
    invite = _or_404(invite, "invitation")
    invite_delete(invite=invite)
    return _done(request, tenant, "members", f"Invitation for {invite.email} withdrawn.")


def invite(request, token: str):
    invitation = Invite.objects.select_related("organization").filter(token=token).first()
    if invitation is None or invitation.status != Invite.Status.PENDING:
        return render(request, "console/invite.html", {"invite": None}, status=404)
    form = (
        SignUpForm(request.POST or None, initial={"email": invitation.email})
        if not request.user.is_authenticated
        else None
    )
    if request.method == "POST":
        if form is not None:
            if not form.is_valid():
                return render(request, "console/invite.html", {"invite": invitation, "form": form})
            user = get_user_model().objects.create_user(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
            )
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        try:
            invite_accept(invite=invitation, user=request.user)
        except MembershipError as error:
            messages.error(request, str(error))
            return redirect("console:home")
        messages.success(request, f"Welcome to {invitation.organization.name}.")
        return redirect("console:usage", invitation.organization.slug)
    return render(request, "console/invite.html", {"invite": invitation, "form": form})


# --- limits ----------------------------------------------------------------------------------


@tenant_view()
def limits(request, tenant: Tenant):
    organization = tenant.organization
    if request.method == "POST":
        if not tenant.edits_limits:
            raise PermissionDenied("Limits are managed by the platform's staff.")
        project = None
        if request.POST.get("project"):
            project = _or_404(
                project_get(organization=organization, ref=request.POST["project"]), "project"
            )
        form = LimitForm(request.POST)
        if form.is_valid():
            limits_set(organization=organization, project=project, **form.cleaned_data)
            return _done(request, tenant, "limits", "Limits saved.")
        messages.error(
            request,
            "Limits not saved: "
            # An ErrorList iterates over rendered messages (str); the stubs say ValidationError too.
            + "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()),  # type: ignore[arg-type]
        )
    rows = {
        (row.project_id, row.api_key_id): row
        for row in QuotaLimit.objects.filter(organization=organization)
    }
    scopes = [("Organization", "", rows.get((None, None)))]
    for project in project_list(organization=organization):
        scopes.append((f"Project {project.name}", project.public_id, rows.get((project.pk, None))))
    key_rows = [row for (project_pk, key_pk), row in rows.items() if key_pk is not None]
    editable = [
        (
            label,
            ref,
            row,
            LimitForm(
                initial={
                    "requests_per_minute": row.requests_per_minute if row else None,
                    "tokens_per_minute": row.tokens_per_minute if row else None,
                    "max_concurrent": row.max_concurrent if row else None,
                    "monthly_token_budget": row.monthly_token_budget if row else None,
                    "monthly_cost_budget": row.monthly_cost_budget if row else None,
                }
            ),
        )
        for label, ref, row in scopes
    ]
    spent = {
        project_ref or "": cost
        for project_ref, cost in MonthlyUsage.objects.filter(
            organization=organization, month=month_start(timezone.now())
        ).values_list("project__public_id", "cost")
    }
    editable = [(label, ref, row, form, spent.get(ref)) for label, ref, row, form in editable]
    return render(
        request,
        "console/limits.html",
        {
            "tenant": tenant,
            "scopes": editable,
            "key_rows": key_rows,
            "budgets": budget_status_list(organization=organization),
        },
    )


# --- responses -------------------------------------------------------------------------------


@tenant_view()
def responses(request, tenant: Tenant):
    records = (
        UsageRecord.objects.filter(organization=tenant.organization)
        .select_related("project", "api_key")
        .order_by("-created_at")
    )
    status = request.GET.get("status", "")
    if status in UsageRecord.Status.values:
        records = records.filter(status=status)
    records = list(records[:100])
    errors = dict(
        StoredResponse.objects.filter(
            organization=tenant.organization,
            public_id__in=[record.response_id for record in records],
        ).values_list("public_id", "body__error")
    )
    rows = [(record, errors.get(record.response_id)) for record in records]
    return render(
        request,
        "console/responses.html",
        {
            "tenant": tenant,
            "rows": rows,
            "status": status,
            "statuses": UsageRecord.Status.values,
        },
    )


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@tenant_view()
def response_detail(request, tenant: Tenant, response_id: str):
    record = (
        UsageRecord.objects.filter(organization=tenant.organization, response_id=response_id)
        .select_related("project", "api_key")
        .first()
    )
    stored = StoredResponse.objects.filter(
        organization=tenant.organization, public_id=response_id
    ).first()
    if record is None and stored is None:
        raise Http404("No such response.")
    context = {"tenant": tenant, "response_id": response_id, "record": record, "stored": stored}
    if stored is not None:
        body = stored.body or {}
        events = response_events(response=stored, starting_after=None)
        context.update(
            error=body.get("error"),
            incomplete=body.get("incomplete_details"),
            usage_json=_pretty(body.get("usage")) if body.get("usage") else None,
            input_json=_pretty(stored.input_items),
            output_json=_pretty(body.get("output") or []),
            output_text="".join(
                part.get("text", "")
                for item in body.get("output") or []
                if item.get("type") == "message"
                for part in item.get("content") or []
                if part.get("type") == "output_text"
            ),
            events=[
                (event.get("sequence_number"), event.get("type"), _pretty(event))
                for event in events
            ],
            created=datetime.fromtimestamp(body["created_at"], tz=UTC)
            if body.get("created_at")
            else stored.created_at,
        )
    return render(request, "console/response_detail.html", context)
