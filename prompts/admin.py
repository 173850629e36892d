"""Prompt templates in the admin. Versions are immutable: editing a prompt means adding a
version (the inline's empty row); existing versions are read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from core.errors import ApiError
from prompts.models import Prompt, PromptVersion
from prompts.services import prompt_input_check, prompt_version_create


class PromptVersionForm(forms.ModelForm):
    class Meta:
        model = PromptVersion
        fields = ("instructions", "input")

    def clean_input(self):
        value = self.cleaned_data.get("input")
        try:
            prompt_input_check(value)
        except ApiError as error:
            raise forms.ValidationError(f"{error.param}: {error.message}") from error
        return value


class PromptVersionInline(admin.StackedInline):
    model = PromptVersion
    form = PromptVersionForm
    extra = 1
    fields = ("version", "instructions", "input", "created_at")
    readonly_fields = ("version", "created_at")
    can_delete = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("name", "public_id", "project", "organization", "latest_version")
    list_filter = ("organization",)
    search_fields = ("name", "public_id")
    readonly_fields = ("public_id", "latest_version", "created_at")
    fields = ("name", "public_id", "project", "latest_version", "created_at")
    inlines = [PromptVersionInline]

    def save_model(self, request, obj, form, change) -> None:
        obj.organization = obj.project.organization
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change) -> None:
        # New versions get the next number through the service (never typed in by hand).
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for version_form in formset.forms:
            if version_form.instance.pk or not version_form.has_changed():
                continue
            data = version_form.cleaned_data
            formset.new_objects.append(
                prompt_version_create(
                    prompt=form.instance,
                    instructions=data.get("instructions") or "",
                    input=data.get("input") or None,
                )
            )
