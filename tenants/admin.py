"""Staff-only admin for tenants. API keys are issued through the service (never a model form
that could store a secret) and their secret is shown exactly once, on the page "Save" redirects
to (POST-redirect-GET: reloading that page neither shows the secret again nor issues a key)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from tenants.models import SERVICE_TIERS, ApiKey, Invite, Membership, Organization, Project
from tenants.services.api_keys import ENDPOINT_GROUPS, api_key_issue, api_key_revoke

NEW_KEY_SESSION = "admin-new-key"

# A mixin for ModelAdmins: the type checker sees the base its super() calls reach.
if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class PublicIdOnChangeOnly(_AdminBase):
    """The public id is generated when the row is saved: showing a default on the add form
    would show an id that is not the one saved."""

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return tuple(f for f in fields if f != "public_id") if obj is None else fields

    def get_exclude(self, request, obj=None):
        return ("public_id",) if obj is None else super().get_exclude(request, obj)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return [f for f in fields if f != "public_id"] if obj is None else fields


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ("name", "public_id", "created_at", "archived_at")
    readonly_fields = ("public_id", "created_at")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


class OrganizationForm(forms.ModelForm):
    allowed_service_tiers = forms.MultipleChoiceField(
        choices=[(tier, tier) for tier in SERVICE_TIERS],
        widget=forms.CheckboxSelectMultiple,
        initial=list(SERVICE_TIERS),
        help_text="Service tiers this organization may request.",
    )

    class Meta:
        model = Organization
        fields = (
            "name",
            "slug",
            "allowed_service_tiers",
            "tool_output_timeout_seconds",
            "response_retention_days",
            "max_stored_bytes",
            "max_chain_length",
            "console_edits_limits",
            "created_at",
        )


@admin.register(Organization)
class OrganizationAdmin(PublicIdOnChangeOnly, admin.ModelAdmin):
    form = OrganizationForm
    list_display = ("name", "slug", "public_id", "created_at")
    search_fields = ("name", "slug", "public_id")
    readonly_fields = ("public_id", "created_at")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [ProjectInline, MembershipInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Like `createorg`: every organization starts with a project to bind keys to.
        if not change and not form.instance.projects.exists():
            Project.objects.create(organization=form.instance, name="Default project")


@admin.register(Project)
class ProjectAdmin(PublicIdOnChangeOnly, admin.ModelAdmin):
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


def _permission_field(group: str) -> forms.ChoiceField:
    return forms.ChoiceField(
        label=f"Restricted: {group}",
        choices=[("none", "none"), ("read", "read"), ("write", "write")],
        initial="none",
        required=False,
        help_text="Used only when the scope is restricted.",
    )


class ProjectSelect(forms.Select):
    """Each option names its organization, so the form's script can offer only the chosen
    organization's projects."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-organization"] = str(instance.organization_id)
        return option


class ProjectChoiceField(forms.ModelChoiceField):
    widget = ProjectSelect

    def label_from_instance(self, obj: Project) -> str:
        return f"{obj.organization.name} / {obj.name}"


class ApiKeyCreateForm(forms.ModelForm):
    project = ProjectChoiceField(
        queryset=Project.objects.filter(archived_at__isnull=True).select_related("organization"),
        required=False,
        help_text="Only projects of the chosen organization are accepted; empty = all projects.",
    )

    class Meta:
        model = ApiKey
        fields = ("organization", "project", "name", "kind", "scope", "expires_at")

    class Media:
        js = ("tenants/project_filter.js",)

    # One drop-down per endpoint group (ENDPOINT_GROUPS) instead of raw JSON.
    permission_models = _permission_field("models")
    permission_responses = _permission_field("responses")

    def permissions(self) -> dict[str, str]:
        if self.cleaned_data.get("scope") != ApiKey.Scope.RESTRICTED:
            return {}
        return {g: self.cleaned_data.get(f"permission_{g}") or "none" for g in ENDPOINT_GROUPS}

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("kind") == ApiKey.Kind.ADMIN and cleaned.get("project") is not None:
            raise forms.ValidationError("Admin keys belong to the organization, not a project.")
        project = cleaned.get("project")
        organization = cleaned.get("organization")
        if (
            project is not None
            and organization is not None
            and project.organization_id != organization.pk
        ):
            raise forms.ValidationError("The project belongs to another organization.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "organization_name",
        "project_name",
        "redacted",
        "kind",
        "scope",
        "key_status",
        "last_used_at",
        "created_at",
    )
    list_filter = ("kind", "scope", "organization", "revoked_at")
    search_fields = ("name", "prefix", "public_id", "organization__name")
    actions = ["revoke_selected"]
    readonly_fields = (
        "public_id",
        "organization",
        "project",
        "kind",
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
        "kind",
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

    list_select_related = ("organization", "project")

    @admin.display(description="Organization", ordering="organization__name")
    def organization_name(self, obj: ApiKey) -> str:
        return obj.organization.name

    @admin.display(description="Project", ordering="project__name")
    def project_name(self, obj: ApiKey) -> str:
        return obj.project.name if obj.project else "all"

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
            return ApiKeyCreateForm.Meta.fields + tuple(
                f"permission_{group}" for group in ENDPOINT_GROUPS
            )
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
            permissions=form.permissions(),
            expires_at=form.cleaned_data.get("expires_at"),
            kind=form.cleaned_data.get("kind") or ApiKey.Kind.PROJECT,
            created_by=request.user,
        )
        # The admin continues with `obj` (log entry, redirect); point it at the issued row.
        obj.pk = issued.api_key.pk
        obj.public_id = issued.api_key.public_id
        request._issued_secret = issued.secret  # noqa: SLF001 - our own attribute, for response_add

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_issued_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        # The secret waits in the session for exactly one GET of the page that shows it (it is
        # removed from the session as that page renders).
        request.session[NEW_KEY_SESSION] = {"pk": obj.pk, "secret": secret}
        return redirect(reverse("admin:tenants_apikey_secret", args=(obj.pk,)))

    def get_urls(self):
        return [
            path(
                "<int:pk>/secret/",
                self.admin_site.admin_view(self.secret_view),
                name="tenants_apikey_secret",
            ),
            *super().get_urls(),
        ]

    def secret_view(self, request, pk: int):
        api_key = ApiKey.objects.filter(pk=pk).select_related("organization", "project").first()
        if api_key is None or not self.has_view_permission(request, api_key):
            raise Http404("No such key.")
        pending = request.session.get(NEW_KEY_SESSION)
        secret = None
        if pending and pending.get("pk") == pk:
            secret = pending["secret"]
            del request.session[NEW_KEY_SESSION]
        response = TemplateResponse(
            request,
            "admin/tenants/apikey/secret_once.html",
            {
                **self.admin_site.each_context(request),
                "title": "Save your key",
                "api_key": api_key,
                "secret": secret,
                "opts": self.model._meta,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        revoked = sum(api_key_revoke(api_key=key) for key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("email", "organization", "role", "invite_status", "created_at", "expires_at")
    list_filter = ("role", "organization")
    search_fields = ("email", "organization__name", "public_id")
    readonly_fields = ("public_id", "token", "created_by", "created_at", "accepted_at")

    @admin.display(description="Status")
    def invite_status(self, obj: Invite) -> str:
        return obj.status
