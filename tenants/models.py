"""Tenancy: organizations, their projects, who belongs to them, and their API keys."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.versions import VersionedQuerySet, VersionedRow
from tenants.ids import (
    invite_expiry,
    new_api_key_id,
    new_invite_id,
    new_invite_token,
    new_organization_id,
    new_project_id,
)

SERVICE_TIERS = ["auto", "default", "flex", "priority"]


def _all_service_tiers() -> list[str]:
    return list(SERVICE_TIERS)


VERSION = "tenants"
"""The shared version (core.versions) of what authentication caches per process: keys, their
organizations and projects. Every ORM change of those rows bumps it, so a revoked key fails on
its very next request in every process."""


class _TenantQuerySet(VersionedQuerySet):
    version_name = VERSION
    # Written once a minute per key in use (api_key_mark_used); authentication never reads it.
    unversioned_fields = frozenset({"last_used_at"})


class _TenantRow(VersionedRow):
    version_name = VERSION
    unversioned_fields = frozenset({"last_used_at"})


STREAM_DIALECTS = ["openai", "open-responses", "legacy"]
"""The stream dialects; ``responses.streaming.encoder`` defines them, a test keeps the two
lists equal (tenants sits below responses and cannot import it)."""


class Organization(_TenantRow, models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_organization_id)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    allowed_service_tiers = models.JSONField(
        default=_all_service_tiers,
        help_text="Service tiers this organization may request (auto, default, flex, priority).",
    )
    # Response sessions (tool-output deadlines) and stored-response limits.
    tool_output_timeout_seconds = models.PositiveIntegerField(
        default=600, help_text="How long a response waits for its tool outputs."
    )
    response_retention_days = models.PositiveIntegerField(
        default=30, help_text="Stored responses older than this are purged."
    )
    max_stored_bytes = models.PositiveBigIntegerField(
        default=1024**3, help_text="Cap on stored response data (bodies and input items); 0 = none."
    )
    max_chain_length = models.PositiveIntegerField(
        default=200, help_text="Cap on turns in one previous_response_id chain; 0 = none."
    )
    console_edits_limits = models.BooleanField(
        default=False,
        verbose_name="owners may edit limits",
        help_text="Let the organization's owners and admins change their rate limits and "
        "budgets in the console (otherwise only staff can).",
    )
    stream_dialect = models.CharField(
        max_length=20,
        blank=True,
        default="",
        choices=[(name, name) for name in STREAM_DIALECTS],
        help_text="Default stream dialect of this organization's requests (an "
        "X-Responses-Dialect header overrides it); blank = the server's RESPONSES_DIALECT.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = _TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class Project(_TenantRow, models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_project_id)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = _TenantQuerySet.as_manager()

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="project_name_unique_in_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization.slug} ({self.role})"


class ApiKey(_TenantRow, models.Model):
    """An API key. The secret itself is never stored: only a lookup prefix, its last four
    characters and an HMAC-SHA256 digest under the server-side pepper (see services/api_keys)."""

    class Kind(models.TextChoices):
        PROJECT = "project", "API key"
        ADMIN = "admin", "Admin key (Administration API only)"

    class Scope(models.TextChoices):
        ALL = "all", "All"
        READ_ONLY = "read_only", "Read only"
        RESTRICTED = "restricted", "Restricted (per endpoint group)"

    public_id = models.CharField(max_length=40, unique=True, default=new_api_key_id)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, null=True, blank=True, related_name="api_keys"
    )
    name = models.CharField(max_length=200)
    # Admin keys manage an organization through /v1/organization/ and are refused everywhere
    # else; ordinary keys are refused there. One table, so one lookup path for both.
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PROJECT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="created_api_keys",
    )
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    permissions = models.JSONField(
        default=dict,
        blank=True,
        help_text="For restricted keys: endpoint group → none, read or write.",
    )
    prefix = models.CharField(max_length=32, db_index=True, editable=False)
    last_four = models.CharField(max_length=4, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = _TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.redacted_value})"

    @property
    def redacted_value(self) -> str:
        return f"{self.prefix}…{self.last_four}"

    def status_at(self, now) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())

    @property
    def is_admin(self) -> bool:
        return self.kind == self.Kind.ADMIN


class Invite(models.Model):
    """An invitation to join an organization (Administration API ``/organization/invites`` and
    the console). Accepting it, signed in, creates the membership."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        EXPIRED = "expired"

    public_id = models.CharField(max_length=40, unique=True, default=new_invite_id)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invites")
    email = models.EmailField()
    role = models.CharField(
        max_length=16, choices=Membership.Role.choices, default=Membership.Role.MEMBER
    )
    token = models.CharField(max_length=64, unique=True, default=new_invite_token)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=invite_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.organization.slug} ({self.role})"

    def status_at(self, now) -> str:
        if self.accepted_at is not None:
            return self.Status.ACCEPTED
        if self.expires_at <= now:
            return self.Status.EXPIRED
        return self.Status.PENDING

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())
