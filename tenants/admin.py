"""Staff-only admin for tenants. API keys are issued through the service (never a model form
that could store a secret) and their secret is shown exactly once, on the page after "Save"."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone

from tenants.models import ApiKey, Membership, Organization, Project
from tenants.services.api_keys import api_key_issue, api_key_revoke


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ("name", "public_id", "created_at", "archived_at")
    readonly_fields = ("public_id", "created_at")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "public_id", "created_at")
    search_fields = ("name", "slug", "public_id")
    readonly_fields = ("public_id", "created_at")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [ProjectInline, MembershipInline]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "public_id", "created_at", "archived_at")
    list_filter = ("organization",)
    search_fields = ("name", "public_id", "organization__name")
    readonly_fields = ("public_id", "created_at")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", "organization")
    search_fields = ("user__username", "user__email", "organization__name")
    autocomplete_fields = ("user", "organization")


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("organization", "project", "name", "scope", "permissions", "expires_at")

    def clean(self):
        cleaned = super().clean()
        project = cleaned.get("project")
        organization = cleaned.get("organization")
        if project is not None and organization is not None and project.organization_id != organization.pk:
            raise forms.ValidationError("The project belongs to another organization.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "organization",
        "project",
        "redacted",
        "scope",
        "key_status",
        "last_used_at",
        "created_at",
    )
    list_filter = ("scope", "organization", "revoked_at")
    search_fields = ("name", "prefix", "public_id", "organization__name")
    actions = ["revoke_selected"]
    readonly_fields = (
        "public_id",
        "organization",
        "project",
        "prefix",
        "last_four",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    fields = (
        "public_id",
        "name",
        "organization",
        "project",
        "scope",
        "permissions",
        "expires_at",
        "prefix",
        "last_four",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    @admin.display(description="Key")
    def redacted(self, obj: ApiKey) -> str:
        return obj.redacted_value

    @admin.display(description="Status")
    def key_status(self, obj: ApiKey) -> str:
        return obj.status_at(timezone.now())

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ApiKeyCreateForm.Meta.fields
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_issue(
            organization=form.cleaned_data["organization"],
            project=form.cleaned_data.get("project"),
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            permissions=form.cleaned_data.get("permissions") or {},
            expires_at=form.cleaned_data.get("expires_at"),
            created_by=request.user,
        )
        # The admin continues with `obj` (log entry, redirect); point it at the issued row.
        obj.pk = issued.api_key.pk
        obj.public_id = issued.api_key.public_id
        request._issued_secret = issued.secret

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_issued_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered straight into this one response: not flashed through the session, which
        # would put the plaintext key into the session store.
        return TemplateResponse(
            request,
            "admin/tenants/apikey/secret_once.html",
            {
                **self.admin_site.each_context(request),
                "title": "Save your key",
                "api_key": ApiKey.objects.get(pk=obj.pk),
                "secret": secret,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        revoked = sum(api_key_revoke(api_key=key) for key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
