"""Views of the Administration API. Every object is looked up through an accessor that takes
the admin key's organization: another organization's id is simply not found (404)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from rest_framework import viewsets
from rest_framework.response import Response

from api.organization.pagination import CursorPagination, int_param
from api.organization.permissions import IsAdminKey
from api.organization.serializers import (
    AdminApiKeySerializer,
    ApiKeyCreateSerializer,
    ApiKeyUpdateSerializer,
    InviteCreateSerializer,
    InviteSerializer,
    ProjectApiKeySerializer,
    ProjectSerializer,
    ProjectWriteSerializer,
    RateLimitUpdateSerializer,
    RoleSerializer,
    UserSerializer,
    scope_from_wire,
    user_pk_from_public_id,
)
from api.request import ApiDrfRequest
from core.errors import InvalidRequest, NotFound
from quotas.models import QuotaLimit
from quotas.reports import BUCKET_WIDTHS, GROUP_FIELDS, align, usage_buckets
from quotas.services.limits import limits_set
from tenants.models import ApiKey, Organization
from tenants.selectors import (
    api_key_list,
    invite_get,
    invite_list,
    membership_get,
    membership_list,
    project_get_any,
    project_list,
)
from tenants.services.api_keys import api_key_issue, api_key_revoke
from tenants.services.members import (
    MembershipError,
    invite_create,
    invite_delete,
    membership_remove,
    membership_role_set,
)
from tenants.services.organizations import project_archive, project_create, project_update


class AdminViewSet(viewsets.ViewSet):
    permission_classes = [IsAdminKey]
    pagination_class = CursorPagination
    request: ApiDrfRequest

    @property
    def organization(self) -> Organization:
        return self.request.principal.organization

    def initial(self, request: ApiDrfRequest, *args, **kwargs):  # type: ignore[override]
        super().initial(request, *args, **kwargs)
        # PostgreSQL text cannot hold NUL: an id or a query value with one names nothing, and
        # handing it to a lookup would fail the request with a database error (a 500).
        for name, value in kwargs.items():
            if "\x00" in str(value):
                raise NotFound(f"No object found for '{name}'.", param=name)
        for name, values in request.query_params.lists():
            if any("\x00" in value for value in values):
                raise InvalidRequest(
                    f"Invalid '{name}': the value contains a NUL character.", param=name
                )

    def paginated(self, queryset, serializer_class, pagination=None) -> Response:
        paginator = (pagination or self.pagination_class)()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    def valid(self, serializer_class, **kwargs) -> dict:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def project_or_404(self, project_id: str):
        project = project_get_any(organization=self.organization, ref=project_id)
        if project is None:
            raise NotFound(f"No project found with id '{project_id}'.", param="project_id")
        return project


# --- projects ---------------------------------------------------------------------------------


class ProjectViewSet(AdminViewSet):
    def list(self, request: ApiDrfRequest):
        include_archived = request.query_params.get("include_archived") in ("true", "1")
        projects = project_list(organization=self.organization, include_archived=include_archived)
        return self.paginated(projects, ProjectSerializer)

    def create(self, request: ApiDrfRequest):
        data = self.valid(ProjectWriteSerializer)
        if (
            project_list(organization=self.organization, include_archived=True)
            .filter(name=data["name"])
            .exists()
        ):
            raise InvalidRequest(f"A project named {data['name']!r} already exists.", param="name")
        project = project_create(organization=self.organization, name=data["name"])
        return Response(ProjectSerializer(project).data)

    def retrieve(self, request: ApiDrfRequest, project_id: str):
        return Response(ProjectSerializer(self.project_or_404(project_id)).data)

    def update(self, request: ApiDrfRequest, project_id: str):
        project = self.project_or_404(project_id)
        data = self.valid(ProjectWriteSerializer)
        clash = (
            project_list(organization=self.organization, include_archived=True)
            .filter(name=data["name"])
            .exclude(pk=project.pk)
        )
        if clash.exists():
            raise InvalidRequest(f"A project named {data['name']!r} already exists.", param="name")
        return Response(ProjectSerializer(project_update(project=project, name=data["name"])).data)

    def archive(self, request: ApiDrfRequest, project_id: str):
        project = project_archive(project=self.project_or_404(project_id))
        return Response(ProjectSerializer(project).data)


# --- project API keys -------------------------------------------------------------------------


class ProjectApiKeyViewSet(AdminViewSet):
    def keys(self, project):
        return (
            api_key_list(organization=self.organization)
            .filter(project=project, kind=ApiKey.Kind.PROJECT)
            .select_related("created_by")
        )

    def key_or_404(self, project, api_key_id: str) -> ApiKey:
        key = self.keys(project).filter(public_id=api_key_id).first()
        if key is None:
            raise NotFound(f"No API key found with id '{api_key_id}'.", param="api_key_id")
        return key

    def list(self, request: ApiDrfRequest, project_id: str):
        project = self.project_or_404(project_id)
        return self.paginated(self.keys(project), ProjectApiKeySerializer)

    def create(self, request: ApiDrfRequest, project_id: str):
        """Not in OpenAI's API (keys are made in its dashboard): the secret is in ``value``,
        in this answer only."""
        project = self.project_or_404(project_id)
        if project.archived_at is not None:
            raise InvalidRequest("The project is archived.", param="project_id")
        data = self.valid(ApiKeyCreateSerializer)
        scope, permissions = scope_from_wire(data.get("scopes") or [])
        expires = data.get("expires_in_seconds")
        issued = api_key_issue(
            organization=self.organization,
            project=project,
            name=data["name"],
            scope=scope,
            permissions=permissions,
            expires_at=timezone.now() + timedelta(seconds=expires) if expires else None,
        )
        return Response({**ProjectApiKeySerializer(issued.api_key).data, "value": issued.secret})

    def retrieve(self, request: ApiDrfRequest, project_id: str, api_key_id: str):
        key = self.key_or_404(self.project_or_404(project_id), api_key_id)
        return Response(ProjectApiKeySerializer(key).data)

    def update(self, request: ApiDrfRequest, project_id: str, api_key_id: str):
        key = self.key_or_404(self.project_or_404(project_id), api_key_id)
        if key.status != "active":
            raise InvalidRequest(f"The API key is {key.status} and cannot be updated.")
        data = self.valid(ApiKeyUpdateSerializer)
        fields = []
        if "scopes" in data:
            key.scope, key.permissions = scope_from_wire(data["scopes"])
            fields += ["scope", "permissions"]
        if "expires_in_seconds" in data:
            key.expires_at = timezone.now() + timedelta(seconds=data["expires_in_seconds"])
            fields.append("expires_at")
        key.save(update_fields=fields)
        return Response(ProjectApiKeySerializer(key).data)

    def destroy(self, request: ApiDrfRequest, project_id: str, api_key_id: str):
        key = self.key_or_404(self.project_or_404(project_id), api_key_id)
        api_key_revoke(api_key=key)
        return Response(
            {"object": "organization.project.api_key.deleted", "id": key.public_id, "deleted": True}
        )


# --- rate limits ------------------------------------------------------------------------------

RATE_LIMIT_ID = "rl-all-models"


def _rate_limit(project, row: QuotaLimit | None) -> dict:
    return {
        "object": "project.rate_limit",
        "id": RATE_LIMIT_ID,
        # The platform's limits apply to a project across all its models.
        "model": "*",
        # 0 = unlimited: OpenAI's types make these integers, never null.
        "max_requests_per_1_minute": (row.requests_per_minute if row else None) or 0,
        "max_tokens_per_1_minute": (row.tokens_per_minute if row else None) or 0,
        "max_concurrent": (row.max_concurrent if row else None) or 0,
        "monthly_token_budget": (row.monthly_token_budget if row else None) or 0,
        "budget_is_hard": row.budget_is_hard if row else True,
    }


class RateLimitViewSet(AdminViewSet):
    def row(self, project) -> QuotaLimit | None:
        return QuotaLimit.objects.filter(
            organization=self.organization, project=project, api_key__isnull=True
        ).first()

    def list(self, request: ApiDrfRequest, project_id: str):
        project = self.project_or_404(project_id)
        item = _rate_limit(project, self.row(project))
        return Response(
            {
                "object": "list",
                "data": [item],
                "first_id": item["id"],
                "last_id": item["id"],
                "has_more": False,
            }
        )

    def update(self, request: ApiDrfRequest, project_id: str, rate_limit_id: str):
        project = self.project_or_404(project_id)
        if rate_limit_id != RATE_LIMIT_ID:
            raise NotFound(f"No rate limit found with id '{rate_limit_id}'.", param="rate_limit_id")
        data = self.valid(RateLimitUpdateSerializer)
        names = {
            "max_requests_per_1_minute": "requests_per_minute",
            "max_tokens_per_1_minute": "tokens_per_minute",
            "max_concurrent": "max_concurrent",
            "monthly_token_budget": "monthly_token_budget",
        }
        # 0 clears a limit, as null does: OpenAI's types make these integers.
        changes = {ours: (data[wire] or None) for wire, ours in names.items() if wire in data}
        if "budget_is_hard" in data:
            changes["budget_is_hard"] = data["budget_is_hard"]
        row = limits_set(organization=self.organization, project=project, **changes)
        return Response(_rate_limit(project, row))


# --- users and invites ------------------------------------------------------------------------


class UserPagination(CursorPagination):
    def anchor_lookup(self, after: str) -> dict:
        return {"user_id": user_pk_from_public_id(after) or 0}


class UserViewSet(AdminViewSet):
    def member_or_404(self, user_id: str):
        pk = user_pk_from_public_id(user_id)
        membership = membership_get(organization=self.organization, user_id=pk) if pk else None
        if membership is None:
            raise NotFound(f"No user found with id '{user_id}'.", param="user_id")
        return membership

    def list(self, request: ApiDrfRequest):
        members = membership_list(organization=self.organization)
        emails = request.query_params.getlist("emails") or request.query_params.getlist("emails[]")
        if emails:
            members = members.filter(user__email__in=emails)
        return self.paginated(members, UserSerializer, pagination=UserPagination)

    def retrieve(self, request: ApiDrfRequest, user_id: str):
        return Response(UserSerializer(self.member_or_404(user_id)).data)

    def update(self, request: ApiDrfRequest, user_id: str):
        membership = self.member_or_404(user_id)
        data = self.valid(RoleSerializer)
        try:
            # An admin key acts for the organization as its owners would.
            membership_role_set(membership=membership, role=data["role"], acting_role=None)
        except MembershipError as error:
            raise InvalidRequest(str(error), param="role") from error
        return Response(UserSerializer(membership).data)

    def destroy(self, request: ApiDrfRequest, user_id: str):
        membership = self.member_or_404(user_id)
        try:
            membership_remove(membership=membership, acting_role=None)
        except MembershipError as error:
            raise InvalidRequest(str(error)) from error
        return Response({"object": "organization.user.deleted", "id": user_id, "deleted": True})


class InviteViewSet(AdminViewSet):
    def invite_or_404(self, invite_id: str):
        invite = invite_get(organization=self.organization, ref=invite_id)
        if invite is None:
            raise NotFound(f"No invite found with id '{invite_id}'.", param="invite_id")
        return invite

    def list(self, request: ApiDrfRequest):
        return self.paginated(invite_list(organization=self.organization), InviteSerializer)

    def create(self, request: ApiDrfRequest):
        data = self.valid(InviteCreateSerializer)
        try:
            invite = invite_create(
                organization=self.organization, email=data["email"], role=data["role"]
            )
        except MembershipError as error:
            raise InvalidRequest(str(error)) from error
        return Response(InviteSerializer(invite).data)

    def retrieve(self, request: ApiDrfRequest, invite_id: str):
        return Response(InviteSerializer(self.invite_or_404(invite_id)).data)

    def destroy(self, request: ApiDrfRequest, invite_id: str):
        invite = self.invite_or_404(invite_id)
        if invite.accepted_at is not None:
            raise InvalidRequest("An accepted invite cannot be deleted.")
        invite_delete(invite=invite)
        return Response({"object": "organization.invite.deleted", "id": invite_id, "deleted": True})


# --- admin keys -------------------------------------------------------------------------------


class AdminApiKeyViewSet(AdminViewSet):
    def keys(self):
        return (
            api_key_list(organization=self.organization)
            .filter(kind=ApiKey.Kind.ADMIN, revoked_at__isnull=True)
            .select_related("created_by")
        )

    def key_or_404(self, key_id: str) -> ApiKey:
        key = self.keys().filter(public_id=key_id).first()
        if key is None:
            raise NotFound(f"No admin API key found with id '{key_id}'.", param="key_id")
        return key

    def list(self, request: ApiDrfRequest):
        return self.paginated(self.keys(), AdminApiKeySerializer)

    def create(self, request: ApiDrfRequest):
        data = self.valid(ApiKeyCreateSerializer)
        expires = data.get("expires_in_seconds")
        issued = api_key_issue(
            organization=self.organization,
            name=data["name"],
            kind=ApiKey.Kind.ADMIN,
            expires_at=timezone.now() + timedelta(seconds=expires) if expires else None,
        )
        return Response({**AdminApiKeySerializer(issued.api_key).data, "value": issued.secret})

    def retrieve(self, request: ApiDrfRequest, key_id: str):
        return Response(AdminApiKeySerializer(self.key_or_404(key_id)).data)

    def destroy(self, request: ApiDrfRequest, key_id: str):
        key = self.key_or_404(key_id)
        api_key_revoke(api_key=key)
        return Response(
            {"object": "organization.admin_api_key.deleted", "id": key.public_id, "deleted": True}
        )


# --- usage and costs --------------------------------------------------------------------------

_DEFAULT_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def _list_param(request: ApiDrfRequest, name: str) -> list[str]:
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    out: list[str] = []
    for value in values:
        out.extend(part for part in value.split(",") if part)
    return out


def _time_param(request: ApiDrfRequest, name: str, *, required: bool) -> datetime | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        if required:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
        return None
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest(f"Invalid '{name}': expected Unix seconds.", param=name) from None


class UsageViewSet(AdminViewSet):
    def window(self, *, widths: tuple[str, ...], max_limit: int | None = None):
        request = self.request
        width = request.query_params.get("bucket_width") or "1d"
        if width not in widths:
            raise InvalidRequest(
                f"Invalid 'bucket_width': use one of {', '.join(widths)}.", param="bucket_width"
            )
        default, high = _DEFAULT_LIMITS[width]
        limit = int_param(request, "limit", default, low=1, high=max_limit or high)
        start = _time_param(request, "start_time", required=True)
        assert start is not None  # required=True raised if it was missing
        end = _time_param(request, "end_time", required=False) or timezone.now()
        page = request.query_params.get("page")
        if page:
            # The cursor is the start of the next bucket, as Unix seconds.
            try:
                if not page.startswith("page_") or not page[5:].isdigit():
                    raise ValueError(page)
                start = datetime.fromtimestamp(int(page[5:]), tz=UTC)
            except (ValueError, OverflowError, OSError):
                raise InvalidRequest("Invalid 'page' cursor.", param="page") from None
        start = align(start, width)
        step = timedelta(seconds=BUCKET_WIDTHS[width])
        page_end = min(end, start + step * limit)
        has_more = page_end < end
        return width, start, page_end, has_more

    def group_by(self, allowed: tuple[str, ...]) -> tuple[str, ...]:
        group_by = _list_param(self.request, "group_by")
        for name in group_by:
            if name not in allowed:
                raise InvalidRequest(
                    f"Invalid 'group_by' value {name!r}: use any of {', '.join(allowed)}.",
                    param="group_by",
                )
        return tuple(group_by)

    def page(self, buckets, *, has_more: bool, result) -> Response:
        return Response(
            {
                "object": "page",
                "data": [
                    {
                        "object": "bucket",
                        "start_time": int(bucket.start.timestamp()),
                        "end_time": int(bucket.end.timestamp()),
                        "results": [result(row) for row in bucket.results],
                    }
                    for bucket in buckets
                ],
                "has_more": has_more,
                "next_page": f"page_{int(buckets[-1].end.timestamp())}"
                if has_more and buckets
                else None,
            }
        )

    def completions(self, request: ApiDrfRequest):
        width, start, end, has_more = self.window(widths=("1m", "1h", "1d"))
        group_by = self.group_by(tuple(GROUP_FIELDS))
        buckets = usage_buckets(
            organization=self.organization,
            start=start,
            end=end,
            width=width,
            group_by=group_by,
            project_ids=tuple(_list_param(request, "project_ids")),
            api_key_ids=tuple(_list_param(request, "api_key_ids")),
            models=tuple(_list_param(request, "models")),
        )

        def result(row: dict) -> dict:
            return {
                "object": "organization.usage.completions.result",
                "input_tokens": row["input_tokens"],
                "output_tokens": row["output_tokens"],
                "input_cached_tokens": row["cached_tokens"],
                "input_uncached_tokens": row["input_tokens"] - row["cached_tokens"],
                "output_reasoning_tokens": row["reasoning_tokens"],
                "num_model_requests": row["requests"],
                "project_id": row.get("project_id"),
                "api_key_id": row.get("api_key_id"),
                "model": row.get("model"),
                "service_tier": row.get("service_tier"),
                "user_id": None,
                "batch": None,
            }

        return self.page(buckets, has_more=has_more, result=result)

    def costs(self, request: ApiDrfRequest):
        width, start, end, has_more = self.window(widths=("1d",), max_limit=180)
        group_by = self.group_by(("project_id", "api_key_id", "line_item"))
        # A line item is a model: the platform prices a turn as a whole per model.
        columns = tuple("model" if name == "line_item" else name for name in group_by)
        buckets = usage_buckets(
            organization=self.organization,
            start=start,
            end=end,
            width=width,
            group_by=columns,
            project_ids=tuple(_list_param(request, "project_ids")),
            api_key_ids=tuple(_list_param(request, "api_key_ids")),
            models=tuple(_list_param(request, "line_items")),
        )

        def result(row: dict) -> dict:
            return {
                "object": "organization.costs.result",
                "amount": {"value": float(row["cost"]), "currency": "usd"},
                "line_item": row.get("model"),
                "project_id": row.get("project_id"),
                "api_key_id": row.get("api_key_id"),
            }

        return self.page(buckets, has_more=has_more, result=result)
