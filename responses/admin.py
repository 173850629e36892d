"""Staff admin for stored responses and their sessions: find one by id, request id or
organization, filter by status, and read it whole (input, output, the stored event stream and
the error). Read only: responses change through the API and the workers, never by hand.

The quotas ledger's page gets its "Error" column here: the error lives on the stored response,
and quotas knows nothing of those."""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from quotas.admin import UsageRecordAdmin
from quotas.models import UsageRecord
from responses.models import ResponseSession, StoredResponse
from responses.selectors import response_events


def _pretty(value) -> str:
    return format_html(
        '<pre style="max-height:420px;overflow:auto;white-space:pre-wrap">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False),
    )


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StoredResponse)
class StoredResponseAdmin(ReadOnly):
    list_display = (
        "public_id",
        "organization",
        "model",
        "status",
        "background",
        "error_code",
        "request_id",
        "created_at",
    )
    list_filter = ("status", "background", "model")
    search_fields = (
        "=public_id",
        "=request_id",
        "organization__name",
        "organization__slug",
        "=organization__public_id",
    )
    date_hierarchy = "created_at"
    list_select_related = ("organization",)
    show_full_result_count = False
    fields = (
        "public_id",
        "organization",
        "project",
        "api_key",
        "model",
        "status",
        "background",
        "request_id",
        "previous_response",
        "created_at",
        "completed_at",
        "chain_length",
        "stored_bytes",
        "error",
        "output_text",
        "input_view",
        "output_view",
        "usage_view",
        "events_view",
    )
    readonly_fields = fields

    @admin.display(description="Error")
    def error_code(self, obj: StoredResponse) -> str:
        error = (obj.body or {}).get("error") or {}
        return error.get("code") or ""

    @admin.display(description="Error")
    def error(self, obj: StoredResponse):
        error = (obj.body or {}).get("error")
        if not error:
            incomplete = (obj.body or {}).get("incomplete_details")
            return f"incomplete: {incomplete.get('reason')}" if incomplete else "—"
        return format_html("<strong>{}</strong>: {}", error.get("code"), error.get("message"))

    @admin.display(description="Output text")
    def output_text(self, obj: StoredResponse) -> str:
        return (
            "".join(
                part.get("text", "")
                for item in obj.output_items
                if item.get("type") == "message"
                for part in item.get("content") or []
                if part.get("type") == "output_text"
            )
            or "—"
        )

    @admin.display(description="Input items")
    def input_view(self, obj: StoredResponse):
        return _pretty(obj.input_items)

    @admin.display(description="Output items")
    def output_view(self, obj: StoredResponse):
        return _pretty(obj.output_items)

    @admin.display(description="Usage")
    def usage_view(self, obj: StoredResponse):
        return _pretty((obj.body or {}).get("usage"))

    @admin.display(description="Stored event stream")
    def events_view(self, obj: StoredResponse):
        events = response_events(response=obj, starting_after=None)
        if not events:
            return "— (only streamed and background responses keep their events)"
        return format_html(
            "<ol start=0>{}</ol>",
            format_html_join(
                "",
                "<li><details><summary>{}</summary>{}</details></li>",
                ((event.get("type"), _pretty(event)) for event in events),
            ),
        )


@admin.register(ResponseSession)
class ResponseSessionAdmin(ReadOnly):
    list_display = (
        "root_response",
        "head_response",
        "organization",
        "status",
        "deadline",
        "updated_at",
    )
    list_filter = ("status",)
    search_fields = (
        "=root_response__public_id",
        "=head_response__public_id",
        "organization__name",
        "organization__slug",
    )
    list_select_related = ("organization", "root_response", "head_response")
    readonly_fields = (
        "organization",
        "root_response",
        "head_response",
        "status",
        "pending_call_ids",
        "submitted_outputs",
        "deadline",
        "continuation",
        "token_footprint",
        "version",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields


admin.site.unregister(UsageRecord)


@admin.register(UsageRecord)
class UsageRecordWithErrorAdmin(UsageRecordAdmin):
    """The ledger with each turn's error, linked to its stored response (store=false turns
    have none to show)."""

    list_display = (
        *(name for name in UsageRecordAdmin.list_display if name != "created_at"),
        "error",
        "created_at",
    )

    def get_queryset(self, request):
        errors = StoredResponse.objects.filter(public_id=OuterRef("response_id")).values(
            "body__error__code"
        )[:1]
        return super().get_queryset(request).annotate(error_code=Subquery(errors))

    @admin.display(description="Error", ordering="error_code")
    def error(self, obj: UsageRecord) -> str:
        code = getattr(obj, "error_code", None)
        if not code:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:responses_storedresponse_changelist") + f"?q={obj.response_id}",
            code,
        )
