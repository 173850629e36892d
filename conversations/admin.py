"""Staff view of conversations: read-only (clients own their content through the API)."""

from __future__ import annotations

from django.contrib import admin

from conversations.models import Conversation, ConversationItem


class ConversationItemInline(admin.TabularInline):
    model = ConversationItem
    extra = 0
    fields = ("position", "public_id", "response_id", "stored_bytes", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("public_id", "organization", "project", "last_position", "updated_at")
    list_filter = ("organization",)
    search_fields = ("public_id",)
    readonly_fields = ("public_id", "organization", "project", "last_position", "created_at",
                       "updated_at")  # fmt: skip
    inlines = [ConversationItemInline]
