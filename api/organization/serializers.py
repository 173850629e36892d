"""Wire shapes of the Administration API (OpenAI's objects; extensions are marked)."""

from __future__ import annotations

from datetime import datetime
from typing import overload

from rest_framework import serializers

from tenants.models import ApiKey, Invite, Membership, Project
from tenants.services.api_keys import ENDPOINT_GROUPS


@overload
def unix(moment: datetime) -> int: ...
@overload
def unix(moment: datetime | None) -> int | None: ...
def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def user_public_id(user_id: int) -> str:
    return f"user-{user_id}"


def user_pk_from_public_id(value: str) -> int | None:
    prefix, _, number = value.partition("-")
    if prefix != "user" or not number.isdigit():
        return None
    return int(number)


def role_to_wire(role: str) -> str:
    """OpenAI calls the read-only organization role ``reader``; owner and admin keep their
    names (OpenAI has no admin role)."""
    return "reader" if role == Membership.Role.MEMBER else role


def display_name(user) -> str:
    return user.get_full_name() or user.get_username()


# --- keys: OpenAI's scope strings ↔ our scope and permissions --------------------------------


def scopes_of(api_key: ApiKey) -> list[str]:
    if api_key.scope == ApiKey.Scope.ALL:
        return []
    if api_key.scope == ApiKey.Scope.READ_ONLY:
        return ["api.all.read"]
    return [
        f"api.{group}.{level}"
        for group, level in sorted(api_key.permissions.items())
        if level != "none"
    ]


def scope_from_wire(scopes: list[str]) -> tuple[str, dict[str, str]]:
    """``[]`` → all, ``["api.all.read"]`` → read only, ``["api.responses.write", …]`` →
    restricted to those groups (models, responses)."""
    if not scopes:
        return ApiKey.Scope.ALL, {}
    if scopes == ["api.all.read"]:
        return ApiKey.Scope.READ_ONLY, {}
    permissions: dict[str, str] = {}
    for item in scopes:
        parts = item.split(".")
        if (
            len(parts) != 3
            or parts[0] != "api"
            or parts[1] not in ENDPOINT_GROUPS
            or parts[2] not in ("read", "write")
        ):
            raise serializers.ValidationError(
                f"Unknown scope {item!r}: use api.all.read or api.<group>.<read|write> with "
                f"group one of {', '.join(ENDPOINT_GROUPS)}."
            )
        if permissions.get(parts[1]) != "write":
            permissions[parts[1]] = parts[2]
    return ApiKey.Scope.RESTRICTED, permissions


class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField would turn 5 into "5")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProjectSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    object = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    archived_at = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ("id", "object", "name", "created_at", "archived_at", "status")

    def get_object(self, project) -> str:
        return "organization.project"

    def get_created_at(self, project) -> int:
        return unix(project.created_at)

    def get_archived_at(self, project) -> int | None:
        return unix(project.archived_at)

    def get_status(self, project) -> str:
        return "archived" if project.archived_at else "active"


class ProjectWriteSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)


def _owner(api_key: ApiKey) -> dict:
    user = api_key.created_by
    if user is None:
        # Keys issued by a command or the Administration API have no person behind them:
        # shown as OpenAI shows a service account's key.
        return {
            "type": "service_account",
            "service_account": {
                "id": f"svc_{api_key.public_id}",
                "name": api_key.name,
                "role": "member",
                "created_at": unix(api_key.created_at),
            },
        }
    membership = Membership.objects.filter(
        user=user, organization_id=api_key.organization_id
    ).first()
    return {
        "type": "user",
        "user": {
            "id": user_public_id(user.pk),
            "name": display_name(user),
            "email": user.email,
            "role": membership.role if membership else "member",
            "created_at": unix(user.date_joined),
        },
    }


class _ApiKeySerializerBase(serializers.ModelSerializer):
    """What project keys and admin keys show alike: id, redacted value, timestamps (Unix
    seconds) and owner. A subclass names its ``object`` and says who the owner is."""

    id = serializers.CharField(source="public_id")
    object = serializers.SerializerMethodField()
    redacted_value = serializers.CharField()
    created_at = serializers.SerializerMethodField()
    last_used_at = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()

    FIELDS = (
        "id",
        "object",
        "name",
        "redacted_value",
        "created_at",
        "last_used_at",
        "expires_at",
        "owner",
    )

    def get_created_at(self, key) -> int:
        return unix(key.created_at)

    def get_last_used_at(self, key) -> int | None:
        return unix(key.last_used_at)

    def get_expires_at(self, key) -> int | None:
        return unix(key.expires_at)


class ProjectApiKeySerializer(_ApiKeySerializerBase):
    owner_project_access = serializers.SerializerMethodField()
    scopes = serializers.SerializerMethodField()
    status = serializers.CharField()

    class Meta:
        model = ApiKey
        fields = (*_ApiKeySerializerBase.FIELDS, "owner_project_access", "scopes", "status")

    def get_object(self, key) -> str:
        return "organization.project.api_key"

    def get_owner(self, key) -> dict:
        return _owner(key)

    def get_owner_project_access(self, key) -> str:
        return "active" if key.status == "active" else "inactive"

    def get_scopes(self, key) -> list[str]:
        return scopes_of(key)


# A key's lifetime is added to the current time: past about 8,000 years that is no date at all
# (an OverflowError, a 500), so the wire bound is a century.
MAX_EXPIRES_IN_SECONDS = 100 * 365 * 24 * 3600


class ApiKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    expires_in_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_EXPIRES_IN_SECONDS, required=False
    )
    scopes = serializers.ListField(child=StrictCharField(), required=False)


class ApiKeyUpdateSerializer(serializers.Serializer):
    expires_in_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_EXPIRES_IN_SECONDS, required=False
    )
    scopes = serializers.ListField(child=StrictCharField(), required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                "Provide at least one of scopes or expires_in_seconds."
            )
        return attrs


class AdminApiKeySerializer(_ApiKeySerializerBase):
    class Meta:
        model = ApiKey
        fields = _ApiKeySerializerBase.FIELDS

    def get_object(self, key) -> str:
        return "organization.admin_api_key"

    def get_owner(self, key) -> dict:
        user = key.created_by
        if user is None:
            return {"type": "service_account", "name": key.name, "role": "owner"}
        return {
            "type": "user",
            "object": "organization.user",
            "id": user_public_id(user.pk),
            "name": display_name(user),
            "created_at": unix(user.date_joined),
            "role": "owner",
        }


class UserSerializer(serializers.ModelSerializer):
    id = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField()
    object = serializers.SerializerMethodField()
    name = serializers.SerializerMethodField()
    email = serializers.EmailField(source="user.email")
    added_at = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ("id", "object", "name", "email", "role", "added_at", "created")

    def get_id(self, membership) -> str:
        return user_public_id(membership.user_id)

    def get_object(self, membership) -> str:
        return "organization.user"

    def get_role(self, membership) -> str:
        return role_to_wire(membership.role)

    def get_name(self, membership) -> str:
        return display_name(membership.user)

    def get_added_at(self, membership) -> int:
        return unix(membership.created_at)

    def get_created(self, membership) -> int:
        return unix(membership.user.date_joined)


class RoleSerializer(serializers.Serializer):
    role = StrictCharField()


class InviteSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    role = serializers.SerializerMethodField()
    object = serializers.SerializerMethodField()
    status = serializers.CharField()
    created_at = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField()
    accepted_at = serializers.SerializerMethodField()
    projects = serializers.SerializerMethodField()

    class Meta:
        model = Invite
        fields = (
            "id",
            "object",
            "email",
            "role",
            "status",
            "created_at",
            "expires_at",
            "accepted_at",
            "projects",
        )

    def get_object(self, invite) -> str:
        return "organization.invite"

    def get_role(self, invite) -> str:
        return role_to_wire(invite.role)

    def get_created_at(self, invite) -> int:
        return unix(invite.created_at)

    def get_expires_at(self, invite) -> int:
        return unix(invite.expires_at)

    def get_accepted_at(self, invite) -> int | None:
        return unix(invite.accepted_at)

    def get_projects(self, invite) -> list:
        return []


class InviteCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = StrictCharField()
    projects = serializers.ListField(child=serializers.DictField(), required=False)


class RateLimitUpdateSerializer(serializers.Serializer):
    max_requests_per_1_minute = serializers.IntegerField(
        min_value=0, required=False, allow_null=True
    )
    max_tokens_per_1_minute = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    # Extensions: the platform's other per-project limits.
    max_concurrent = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    monthly_token_budget = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    budget_is_hard = serializers.BooleanField(required=False)
